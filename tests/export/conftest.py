"""Models and files the export tests share: built once per session, small (67 px AlexNet)."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from tests.conftest import summary_for
from toolkit.runs import RunDir

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMALL_IMAGE = 67


def read_idx_images(path, count: int) -> np.ndarray:
    """The first `count` images of a gzipped IDX file, read without the code under test."""
    raw = gzip.decompress(path.read_bytes())
    rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
    return np.frombuffer(raw, np.uint8, count * rows * cols, offset=16).reshape(count, rows, cols, 1)


@pytest.fixture(scope="session")
def test_images(fashion_mnist_dir) -> np.ndarray:
    return read_idx_images(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz", 64)


@pytest.fixture(scope="session")
def small_alexnet_path(tmp_path_factory):
    """A 67 px AlexNet taking raw 28x28x1 uint8 images, saved as a training run would (with summary.json)."""
    import keras

    from alexnet.model import build_alexnet

    keras.utils.set_random_seed(0)
    run_dir = tmp_path_factory.mktemp("run")
    path = run_dir / "model.keras"
    build_alexnet(image_size=SMALL_IMAGE, input_shape=(28, 28, 1)).save(path)
    RunDir(run_dir).write_summary(summary_for("fashion_mnist"))
    return path


@pytest.fixture(scope="session")
def small_alexnet(small_alexnet_path):
    import keras

    import alexnet.model  # noqa: F401 - registers the custom layers

    return keras.models.load_model(small_alexnet_path, compile=False)


@pytest.fixture(scope="session")
def small_export(small_alexnet_path, tmp_path_factory):
    from export.convert import export_keras

    return export_keras(small_alexnet_path, tmp_path_factory.mktemp("onnx") / "alexnet.onnx")


def other_layers_model():
    """Not ours, not AlexNet: depthwise conv, layer norm, global average pooling, float input, logits out."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.LayerNormalization()(x)
    x = layers.SeparableConv2D(12, 3, strides=2, activation="swish")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(5, name="scores")(x)
    return keras.Model(inputs, outputs, name="other")
