"""AlexNet as in the tutorial (and, with `norm="lrn"`, as in Krizhevsky et al. 2012).

A pure function of its arguments: no I/O, no Horovod, no global precision policy.
Under a mixed-precision policy set by the caller, every layer computes in 16 bits
except the ones pinned here to float32 for numerical reasons: per-image
standardisation (pixel variance reaches 255**2 = 65025, float16's max is 65504) and
the final softmax (Keras' mixed-precision guidance: the output must be float32).

Two input modes:
  * `input_shape=None`: the tutorial's way. Input is (image_size, image_size, 3)
    float32, already standardised and resized on the host.
  * `input_shape=(H, W, C)`: raw uint8 images at native resolution. Standardisation,
    grey->RGB and the resize to `image_size` run inside the model, on the device:
    the host ships 28x28x1 bytes instead of 227x227x3 floats (~200x less).

At 10 classes and 227 px the model has 58,327,818 parameters with BatchNorm
(the tutorial's code; its printed summary's 56,361,738 matches 1x1 kernels in
conv4/5, which the code does not use) and 58,322,314 with LRN.

    python -c "from alexnet.model import build_alexnet; build_alexnet().summary()"
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from toolkit.constants import MIN_IMAGE_SIZE, NORMS

PACKAGE = "alexnet"


def feature_map_size(image_size: int) -> int:
    """Spatial size of the last pooling layer's output for a square input."""
    size = (image_size - 11) // 4 + 1
    for _ in range(3):
        size = (size - 3) // 2 + 1
    return size


@keras.saving.register_keras_serializable(package=PACKAGE)
class PerImageStandardization(layers.Layer):
    """`tf.image.per_image_standardization` as a layer: zero mean, unit variance per image."""

    def call(self, images):
        return tf.image.per_image_standardization(tf.cast(images, self.compute_dtype))


@keras.saving.register_keras_serializable(package=PACKAGE)
class GrayscaleToRGB(layers.Layer):
    """Repeat a single channel three times, so grey datasets fit the RGB architecture."""

    def call(self, images):
        return tf.repeat(images, 3, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalResponseNormalization(layers.Layer):
    """LRN across channels as in the 2012 paper (k=2, n=5, alpha=1e-4, beta=0.75).

    TF's alpha multiplies the plain sum of squares, as in the paper's formula.
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    def call(self, x):
        # LRN has no float16/bfloat16 kernel on CPU; computing it in float32 costs little.
        y = tf.nn.local_response_normalization(
            tf.cast(x, tf.float32), self.depth_radius, self.bias, self.alpha, self.beta)
        return tf.cast(y, x.dtype)

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


def _conv_block(x, filters, kernel, strides, padding, norm, pool, name):
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu", name=name)(x)
    if norm == "batch":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    elif norm == "lrn":
        x = LocalResponseNormalization(name=f"{name}_lrn")(x)
    if pool:
        x = layers.MaxPooling2D(pool_size=3, strides=2, name=f"{name}_pool")(x)
    return x


def build_alexnet(
    num_classes: int = 10,
    image_size: int = 227,
    norm: str = "batch",
    input_shape: tuple[int, int, int] | None = None,
    dropout: float = 0.5,
    name: str = "alexnet",
) -> keras.Model:
    """Build AlexNet. See the module docstring for the two input modes."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image size {image_size} is too small for AlexNet: "
                         f"use at least {MIN_IMAGE_SIZE} (its three max-pools need it)")
    if norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r}: use one of {', '.join(NORMS)}")
    if input_shape is None:
        inputs = keras.Input((image_size, image_size, 3), name="images")
        x = inputs
    else:
        height, width, channels = input_shape
        if channels not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got {channels}")
        inputs = keras.Input((height, width, channels), dtype="uint8", name="images")
        x = PerImageStandardization(dtype="float32", name="standardize")(inputs)
        if channels == 1:
            x = GrayscaleToRGB(name="grey_to_rgb")(x)
        if (height, width) != (image_size, image_size):
            x = layers.Resizing(image_size, image_size, name="resize")(x)

    # Paper: LRN follows conv1 and conv2 only; the tutorial puts BatchNorm after all five.
    conv_norm = {i: norm if (norm == "batch" or i <= 2) else None for i in range(1, 6)}
    x = _conv_block(x, 96, 11, 4, "valid", conv_norm[1], True, "conv1")
    x = _conv_block(x, 256, 5, 1, "same", conv_norm[2], True, "conv2")
    x = _conv_block(x, 384, 3, 1, "same", conv_norm[3], False, "conv3")
    x = _conv_block(x, 384, 3, 1, "same", conv_norm[4], False, "conv4")
    x = _conv_block(x, 256, 3, 1, "same", conv_norm[5], True, "conv5")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(4096, activation="relu", name="fc6")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Dense(4096, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)
