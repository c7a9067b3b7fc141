"""Keras -> an in-memory ONNX model with tf2onnx, two ways: fast (the default) and stock.

    from export.conversion import convert
    converted = convert(source.model, "images", "probabilities", opset=18, nchw=False, method="fast")
    converted.proto, converted.method, converted.fallback_reason

Why not stock tf2onnx: `tf2onnx.convert.from_keras` fails on Keras 3, and
`from_function` on a function that captures the model's variables takes 47-59 s for
the full 58M-parameter AlexNet on 2 Xeon cores (this path: ~1 s; the whole export with
checks and verification 3.3-4.5 s vs 50-63 s, `python -m export.benchmark`):
TensorFlow freezes 233 MB of weights into a GraphDef, grappler rewrites it, and
tf2onnx's optimiser deep-copies the graph, constants included, before every pass (its
`large_model` path would avoid that, but it calls `np.product`, gone in numpy 2).

The fast path converts `model.stateless_call(weights, x)` instead: the weights are
graph inputs of fixed shape, so freezing and optimising only move a few kilobytes.
`export.graph.attach_weights` then makes them initializers and folds, in onnxruntime,
the nodes fed by weights alone (kernel transposes, BatchNorm arithmetic). The result
is an ordinary self-contained ONNX model; its outputs differ from the stock path's by
float32 rounding only (2.2e-8 max on AlexNet's probabilities: the BatchNorm constants
are folded by onnxruntime instead of grappler). Should any step of the fast path fail
for some model, the stock path runs instead and the result says why (`fallback_reason`).
Both paths get `graph.fix_resize_scales` (tf2onnx sizes a 28->227 resize to 226) and
`graph.name_io`. Nothing here touches the disk: export.writing writes the result.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx
from onnx import helper

from export import graph
from toolkit.cli import UsageError

WEIGHT_PREFIX = "export_weight_"


@dataclass(frozen=True)
class Converted:
    """An ONNX model in memory, and how it was made."""

    proto: onnx.ModelProto
    method: str                       # the path that produced it: "fast" or "stock"
    fallback_reason: str | None       # why the fast path was asked for but the stock path ran


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
    graph.fix_resize_scales(proto, _sample_feed(proto))
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


def convert(model: keras.Model, input_name: str, output_name: str, *, opset: int, nchw: bool,
            method: str) -> Converted:
    """`model` as an ONNX model whose one input and output carry these names (NCHW input if `nchw`)."""
    spec = _input_spec(model, input_name)
    fallback_reason = None
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
    graph.name_io(proto, input_name, output_name)
    return Converted(proto, method, fallback_reason)
