"""The Keras side of an export: which model is converted, and how raw inputs reach it.

    from export.source import load_source
    source = load_source("runs/alexnet/model.keras")                  # the whole model, float32 compute
    source = load_source(model, preprocessing=False)                  # without its leading preprocessing
    source.model, source.input_name, source.class_names, source.to_model_input(raw_images)

Why a step of its own: what gets converted is not simply "the model in the file". A model
trained in mixed precision is converted with float32 compute (onnxruntime's CPU provider has
no bfloat16 kernels); `--no-preprocessing` cuts the leading standardise/grey->RGB/resize
layers off, and verification must then feed the cut model what those layers output. The
file is loaded with `toolkit.kerasfile.load_keras` (custom layers from trusted packages
only), hashed, and its class names come from the training run's summary.json beside it.
The conversion (export.conversion) and the metadata (export.writing) read all of it from
the `Source` built here, so the Keras model is loaded and prepared exactly once.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

import keras
import numpy as np

import alexnet.model
from toolkit.cli import UsageError
from toolkit.files import sha256_file
from toolkit.kerasfile import load_keras
from toolkit.runs import RunDir

# Layers that transform raw input without learning anything: the leading run of them is
# "the preprocessing" that --no-preprocessing leaves out of the exported graph.
PREPROCESSING_LAYERS = (
    alexnet.model.PerImageStandardization, alexnet.model.GrayscaleToRGB,
    keras.layers.Resizing, keras.layers.Rescaling, keras.layers.CenterCrop, keras.layers.Normalization,
)


def check_single_io(model: keras.Model) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UsageError(f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs: "
                         f"only single-input, single-output models are supported; export a sub-model with one of each")


def _safe_name(name: str, fallback: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name or "")
    return name if name and not name.startswith("keras_tensor") else fallback


def io_names(model: keras.Model) -> tuple[str, str]:
    """The model's own input and output names, as the exported graph's names."""
    input_name = _safe_name(model.inputs[0].name, "input")
    output_names = getattr(model, "output_names", None) or [model.layers[-1].name]
    return input_name, _safe_name(output_names[0], "output")


def as_float32(model: keras.Model) -> keras.Model:
    """The model computing in float32 throughout, weights shared by value.

    A model trained under a mixed_float16/mixed_bfloat16 policy would otherwise export
    16-bit Conv/MatMul nodes, which onnxruntime's CPU provider cannot run; 16-bit
    inference is what the float16 variant is for.
    """
    if not any(layer.dtype_policy.name.startswith("mixed_") for layer in model.layers):
        return model

    def clone(layer):
        config = layer.get_config()
        if layer.dtype_policy.name.startswith("mixed_"):
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    float32 = keras.models.clone_model(model, clone_function=clone)
    float32.set_weights(model.get_weights())
    return float32


@dataclass(frozen=True)
class Preprocessing:
    """How the exported graph's input relates to the Keras model's raw input."""

    layers: tuple[str, ...]           # leading preprocessing layers of the Keras model, "name (Class)"
    included: bool                    # are they part of the exported graph?

    def describe(self, input_dtype: str, input_shape: Sequence[Any], layout: str) -> str:
        shape = "x".join(str(d) for d in input_shape)
        if not self.layers:
            return f"{input_dtype} {layout} {shape}: fed to the model as is (the model has no preprocessing layers)"
        chain = ", ".join(self.layers)
        if self.included:
            return f"raw {input_dtype} {layout} {shape} images; the graph itself applies: {chain}"
        return f"{input_dtype} {layout} {shape}, already preprocessed by the caller as the Keras model does: {chain}"


def split_preprocessing(model: keras.Model) -> tuple[list[keras.layers.Layer], keras.Model | None, keras.Model]:
    """(leading preprocessing layers, model of just them or None, model of the rest)."""
    tensor = model.inputs[0]
    leading = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if not isinstance(layer, PREPROCESSING_LAYERS) or layer.input is not tensor:
            break
        leading.append(layer)
        tensor = layer.output
    if not leading:
        return [], None, model
    try:
        core = keras.Model(tensor, model.outputs[0], name=f"{model.name}_core")
    except ValueError as exc:
        raise UsageError(f"cannot separate the preprocessing of model {model.name!r} from the rest ({exc}): "
                         f"export with the preprocessing included") from None
    return leading, keras.Model(model.inputs[0], tensor, name=f"{model.name}_preprocessing"), core


@dataclass
class Source:
    """The Keras side of an export: what is converted, and how raw inputs reach it."""

    model: keras.Model                # converted: float32 unless keep_precision, cut if no preprocessing
    full: keras.Model                 # the whole model (same precision), taking raw inputs
    preprocess: keras.Model | None    # raw input -> `model`'s input, when the preprocessing is left out
    preprocessing: Preprocessing
    input_name: str
    output_name: str
    class_names: list[str] | None
    sha256: str | None                # of the source file, when loaded from one

    @property
    def raw_input(self) -> tuple[tuple[int | None, ...], str]:
        """Shape and dtype of the full model's input: what dataset images must fit."""
        return tuple(self.full.inputs[0].shape), str(self.full.inputs[0].dtype)

    def to_model_input(self, raw: np.ndarray) -> np.ndarray:
        if self.preprocess is None:
            return raw
        return np.asarray(self.preprocess.predict(raw, batch_size=64, verbose=0))


def load_source(model_or_path: keras.Model | str | os.PathLike, *, preprocessing: bool = True,
                keep_precision: bool = False, class_names: Sequence[str] | None = None) -> Source:
    """Load and prepare a model for export (see `export.convert.export_keras` for the options)."""
    sha256 = None
    if isinstance(model_or_path, keras.Model):
        model = model_or_path
    else:
        model = load_keras(model_or_path)
        sha256 = sha256_file(model_or_path)
        summary = RunDir.of(model_or_path).summary_if_any()
        if class_names is None and summary is not None:
            class_names = summary.class_names
    check_single_io(model)
    if not keep_precision:
        model = as_float32(model)
    input_name, output_name = io_names(model)
    leading, preprocess, core = split_preprocessing(model)
    if not preprocessing and not leading:
        raise UsageError(f"model {model.name!r} has no leading preprocessing layers to leave out: "
                         f"drop --no-preprocessing")
    num_outputs = model.outputs[0].shape[-1]
    if class_names is not None and len(class_names) != num_outputs:
        raise UsageError(f"{len(class_names)} class names given for a model with {num_outputs} outputs: "
                         f"give exactly one name per output")
    return Source(
        model=model if preprocessing else core, full=model, preprocess=None if preprocessing else preprocess,
        preprocessing=Preprocessing(tuple(f"{layer.name} ({type(layer).__name__})" for layer in leading),
                                    preprocessing),
        input_name=input_name, output_name=output_name,
        class_names=list(class_names) if class_names is not None else None, sha256=sha256)
