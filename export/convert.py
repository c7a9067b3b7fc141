"""Keras 3 -> ONNX, fast: the one place that converts.

    from export.convert import export_keras
    result = export_keras("runs/alexnet/model.keras", "runs/alexnet/alexnet.onnx")   # opset: newest both support
    result = export_keras(model, "alexnet_nchw.onnx", nchw=True, preprocessing=False)

Why not stock tf2onnx: `tf2onnx.convert.from_keras` fails on Keras 3, and
`from_function` on a function that captures the model's variables takes 47-59 s for
the full 58M-parameter AlexNet on 2 Xeon cores (this path: ~1 s; the whole export with
checks and verification 3.3-4.5 s vs 50-63 s, `python -m export.benchmark`):
TensorFlow freezes 233 MB of weights into a GraphDef,
grappler rewrites it, and tf2onnx's optimiser deep-copies the graph, constants
included, before every pass (its `large_model` path would avoid that, but it calls
`np.product`, gone in numpy 2).

The fast path converts `model.stateless_call(weights, x)` instead: the weights are
graph inputs of fixed shape, so freezing and optimising only move a few kilobytes.
`export.graph.attach_weights` then makes them initializers and folds, in onnxruntime,
the nodes fed by weights alone (kernel transposes, BatchNorm arithmetic). The result
is an ordinary self-contained ONNX file; its outputs differ from the stock path's by
float32 rounding only (2.2e-8 max on AlexNet's probabilities: the BatchNorm constants
are folded by onnxruntime instead of grappler). Should any step of the fast path fail
for some model, the stock path runs instead and the result says why (`fallback_reason`).
Both paths get `graph.fix_resize_scales` (tf2onnx sizes a 28->227 resize to 226).

The file is written under a temporary name, checked with
`onnx.checker.check_model(full_check=True)` and loaded in onnxruntime before it is
renamed into place: a failed export never leaves a plausible-looking broken file.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
from onnx import helper

import alexnet.model
from export import METHODS, graph
from toolkit.cli import UsageError
from toolkit.environment import package_versions
from toolkit.files import require_parent_dir, sha256_file
from toolkit.onnxfile import write_checked
from toolkit.runs import RunDir

# Layers that transform raw input without learning anything: the leading run of them is
# "the preprocessing" that --no-preprocessing leaves out of the exported graph.
PREPROCESSING_LAYERS = (
    alexnet.model.PerImageStandardization, alexnet.model.GrayscaleToRGB,
    keras.layers.Resizing, keras.layers.Rescaling, keras.layers.CenterCrop, keras.layers.Normalization,
)
WEIGHT_PREFIX = "export_weight_"
# onnxruntime loads older opsets but only guarantees 7 and newer ("legacy support" below).
ORT_MIN_OPSET = 7


# ---------------------------------------------------------------- opsets

def _ort_loads_opset(opset: int) -> bool:
    ir_version = tf2onnx.constants.OPSET_TO_IR_VERSION[opset]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    probe = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y]),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - onnxruntime raises several types for "opset not supported"
        return False
    return True


def supported_opsets() -> list[int]:
    """Opsets that tf2onnx can convert to and the installed onnxruntime can load, ascending."""
    return [o for o in sorted(tf2onnx.constants.OPSET_TO_IR_VERSION) if o >= ORT_MIN_OPSET and _ort_loads_opset(o)]


def default_opset() -> int:
    """The newest opset both tf2onnx and onnxruntime support (computed, not assumed)."""
    return supported_opsets()[-1]


def resolve_opset(opset: int | None) -> int:
    supported = supported_opsets()
    if opset is None:
        return supported[-1]
    if opset not in supported:
        raise UsageError(
            f"opset {opset} is not supported by the installed tools (tf2onnx {tf2onnx.__version__} and "
            f"onnxruntime {ort.__version__} share opsets {supported[0]}..{supported[-1]}): choose one of those")
    return opset


# ---------------------------------------------------------------- the Keras side

def load_keras(path: str | os.PathLike) -> keras.Model:
    """Load a Keras 3 model file (ours or anyone's); bad input is a one-line UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file {path} does not exist: pass the .keras file a training run wrote")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises ValueError, OSError, zipfile errors, ...
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(f"{path} is not a loadable Keras model ({first_line}): "
                         f"pass a .keras (or .h5) file saved by Keras 3") from None
    if not isinstance(model, keras.Model):
        raise UsageError(f"{path} holds a {type(model).__name__}, not a Keras model: pass a saved keras.Model")
    return model


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


# ---------------------------------------------------------------- conversion

def _input_spec(model: keras.Model, name: str) -> tf.TensorSpec:
    shape = (None, *model.inputs[0].shape[1:])
    return tf.TensorSpec(shape, tf.as_dtype(model.inputs[0].dtype), name=name)


def _require_onnx_ops(model: onnx.ModelProto) -> None:
    """tf2onnx leaves TensorFlow ops it cannot map in the graph (and logs them): refuse those models."""
    unknown = sorted({f"{n.op_type}" for n in model.graph.node if not onnx.defs.has(n.op_type, n.domain)})
    if unknown:
        raise UsageError(f"the model uses TensorFlow ops that tf2onnx {tf2onnx.__version__} cannot convert: "
                         f"{', '.join(unknown)}; replace the layers that use them (e.g. gelu uses Erfc)")


def _sample_feed(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """One all-zeros sample for the image input (the first graph input): batch 1, the declared sizes."""
    value = model.graph.input[0]
    dims = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
    dims[0] = 1
    return {value.name: np.zeros(dims, helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))}


def _convert_stock(model: keras.Model, spec: tf.TensorSpec, opset: int, nchw: bool) -> onnx.ModelProto:
    """tf2onnx as documented: a tf.function capturing the model's variables."""
    function = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    proto, _ = tf2onnx.convert.from_function(function, input_signature=[spec], opset=opset,
                                             inputs_as_nchw=[spec.name] if nchw else None)
    _require_onnx_ops(proto)
    return proto


def _convert_fast(model: keras.Model, spec: tf.TensorSpec, opset: int, nchw: bool) -> onnx.ModelProto:
    """Convert with the weights as graph inputs, then attach and fold them (see the module docstring)."""
    trainable, non_trainable = list(model.trainable_variables), list(model.non_trainable_variables)
    variables = trainable + non_trainable
    weight_specs = [tf.TensorSpec(v.shape, v.dtype, name=f"{WEIGHT_PREFIX}{i}") for i, v in enumerate(variables)]
    split = len(trainable)

    def stateless(x, weights):
        outputs, _ = model.stateless_call(weights[:split], weights[split:], x, training=False)
        return outputs

    signature = [spec, weight_specs]
    function = tf.function(stateless, input_signature=signature)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset,
                                             inputs_as_nchw=[spec.name] if nchw else None)
    _require_onnx_ops(proto)
    weights = {s.name: v.numpy() for s, v in zip(weight_specs, variables)}
    graph.fix_resize_scales(proto, {**_sample_feed(proto), **weights})
    return graph.attach_weights(proto, weights)


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
    """Load and prepare a model for export (see `export_keras` for the options)."""
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


@dataclass
class ExportResult:
    """What was written, and how: enough to verify it and to reproduce it."""

    path: str
    opset: int
    method: str                       # "fast" or "stock"
    input_name: str
    output_name: str
    input_dtype: str
    input_shape: list[Any]            # as the ONNX input declares it ("batch" first)
    layout: str                       # "NHWC" or "NCHW" (of the ONNX input)
    preprocessing: str                # what the input must be
    size_bytes: int
    seconds: float
    metadata: dict[str, str]
    fallback_reason: str | None = None
    source_sha256: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def nchw(self) -> bool:
        return self.layout == "NCHW"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_keras(
    model_or_path: Source | keras.Model | str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    opset: int | None = None,
    nchw: bool = False,
    method: str = "fast",
    preprocessing: bool = True,
    keep_precision: bool = False,
    class_names: Sequence[str] | None = None,
) -> ExportResult:
    """Export a single-input, single-output Keras model to a checked, loadable ONNX file.

    opset: default the newest that tf2onnx and onnxruntime both support.
    nchw: the ONNX input takes NCHW images (GPU providers' layout); default NHWC, as Keras.
    method: "fast" (weights kept out of conversion) or "stock" (plain tf2onnx from_function).
    preprocessing=False leaves the model's leading preprocessing layers out of the
    graph (see `split_preprocessing`); the input is then what those layers output.
    keep_precision=True exports a mixed-precision model's 16-bit compute as is
    (default: float32, see `as_float32`).
    class_names: recorded in the metadata; default from the training run's summary.json.
    The last three are ignored when a prepared `Source` is passed.
    """
    if method not in METHODS:
        raise UsageError(f"unknown conversion method {method!r}: use one of {', '.join(METHODS)}")
    output_path = require_parent_dir(output_path)
    opset = resolve_opset(opset)
    started = time.perf_counter()
    source = model_or_path if isinstance(model_or_path, Source) else load_source(
        model_or_path, preprocessing=preprocessing, keep_precision=keep_precision, class_names=class_names)
    model, input_name, output_name = source.model, source.input_name, source.output_name
    timings = {"load": time.perf_counter() - started}
    spec = _input_spec(model, input_name)
    fallback_reason = None
    tick = time.perf_counter()
    if method == "fast":
        try:
            proto = _convert_fast(model, spec, opset, nchw)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any fast-path failure: the stock path is the reference
            fallback_reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc) else ''}"
            method = "stock"
    if method == "stock":
        proto = _convert_stock(model, spec, opset, nchw)
        graph.fix_resize_scales(proto, _sample_feed(proto))
    graph.name_io(proto, input_name, output_name)
    timings["convert"] = time.perf_counter() - tick

    layout = "NCHW" if nchw else "NHWC"
    onnx_input = proto.graph.input[0].type.tensor_type
    input_dtype = np.dtype(helper.tensor_dtype_to_np_dtype(onnx_input.elem_type)).name
    input_shape = [d.dim_param or d.dim_value for d in onnx_input.shape.dim]
    description = source.preprocessing.describe(input_dtype, input_shape[1:], layout)
    versions = package_versions()
    metadata = {
        "preprocessing": description,
        "input_layout": layout,
        "class_names": json.dumps(source.class_names),
        "source_sha256": source.sha256 or "",
        "source_model": model.name,
        "converter": f"export.convert ({method} path), tf2onnx {tf2onnx.__version__}",
        "versions": json.dumps({k: versions[k] for k in ("tensorflow", "keras", "tf2onnx", "onnx") if k in versions}
                               | {"onnxruntime": ort.__version__}),
    }
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = f"{model.name} exported by alexnet-toolkit export.convert; input: {description}"

    tick = time.perf_counter()
    write_checked(proto, output_path)
    timings["write_and_check"] = time.perf_counter() - tick
    return ExportResult(
        path=str(output_path), opset=opset, method=method, input_name=input_name, output_name=output_name,
        input_dtype=input_dtype, input_shape=input_shape, layout=layout, preprocessing=description,
        size_bytes=os.path.getsize(output_path), seconds=time.perf_counter() - started, metadata=metadata,
        fallback_reason=fallback_reason, source_sha256=source.sha256, timings=timings)
