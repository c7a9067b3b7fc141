"""Operations per sample, counted from an ONNX graph: the numerator of every row's GFLOP/s.

    from bench.opcount import count_ops
    ops = count_ops("alexnet.onnx", {"images": (32, 28, 28, 1)})    # at the shapes a row was fed
    ops.total, ops.per_sample(32), ops.precision                       # 2 x multiply-adds; "float32" or "int8"

What counts: the multiply-adds of convolutions and matrix products, 2 operations each (the
convention of FLOP counts and of the peak `bench peak` measures), from the shapes onnx infers at
the fed input shapes: Conv = 2 x output elements x (input channels / group) x kernel size;
MatMul/Gemm = 2 x output elements x K. Their integer and quantized forms (ConvInteger, QLinearConv,
MatMulInteger, QLinearMatMul) count as int8, as do QDQ Conv/MatMul/Gemm whose inputs all come
from DequantizeLinear of 8-bit tensors (onnxruntime runs those as QLinearConv/QLinearMatMul).
Everything else (activations, pooling, normalisation, the preprocessing) is left out: it is a
few percent of AlexNet's arithmetic and none of the matrix unit's. A row's precision is int8
where most of its operations are; float16 graphs count as float32 (this CPU has no float16
arithmetic; onnxruntime computes them in float32 or casts).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx

from toolkit.onnxfile import read_graph
from toolkit.onnxgraph import infer_shapes, static_sizes

CONV_OPS = {"Conv": 1, "FusedConv": 1, "ConvInteger": 1, "QLinearConv": 3}         # op -> weight input index
MATMUL_OPS = {"MatMul": 1, "Gemm": 1, "FusedMatMul": 1, "FusedGemm": 1, "MatMulInteger": 1, "QLinearMatMul": 3}
INTEGER_OPS = frozenset({"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul"})
EIGHT_BIT = frozenset({onnx.TensorProto.INT8, onnx.TensorProto.UINT8})


@dataclasses.dataclass(frozen=True)
class OpCount:
    """Operations (2 x multiply-adds) of one run of a graph, by the precision they run in."""

    float_ops: int
    int8_ops: int

    @property
    def total(self) -> int:
        return self.float_ops + self.int8_ops

    @property
    def precision(self) -> str:
        return "int8" if self.int8_ops > self.float_ops else "float32"

    def per_sample(self, samples: int) -> float:
        return self.total / samples


def _eight_bit_dequantized(node_input: str, producers: Mapping[str, onnx.NodeProto],
                           types: Mapping[str, int]) -> bool:
    producer = producers.get(node_input)
    return producer is not None and producer.op_type == "DequantizeLinear" and types.get(producer.input[0]) in EIGHT_BIT


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    """ONNX element types of the initializers, graph inputs and QuantizeLinear outputs (enough for QDQ)."""
    types = {t.name: t.data_type for t in model.graph.initializer}
    types.update({i.name: i.type.tensor_type.elem_type for i in model.graph.input})
    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            zero_point = initializers.get(node.input[2]) if len(node.input) > 2 else None
            # No zero point: uint8 (the operator's default); else the zero point's type.
            types[node.output[0]] = onnx.TensorProto.UINT8 if zero_point is None else zero_point.data_type
    return types


def count_graph(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]) -> OpCount:
    """Operations of one run of `model` fed inputs of these shapes (see the module docstring)."""
    shapes = infer_shapes(model.graph.node, model, input_shapes)
    producers = {out: n for n in model.graph.node for out in n.output}
    types = _element_types(model)
    counts = {"float32": 0, "int8": 0}
    for node in model.graph.node:
        if node.op_type in CONV_OPS:
            weight = static_sizes(shapes.get(node.input[CONV_OPS[node.op_type]]) or [])
            out = static_sizes(shapes.get(node.output[0]) or [])
            if not weight or not out:
                continue
            ops = 2 * int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in MATMUL_OPS:
            b = static_sizes(shapes.get(node.input[MATMUL_OPS[node.op_type]]) or [])
            out = static_sizes(shapes.get(node.output[0]) or [])
            if not b or not out or len(b) < 2:
                continue
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            ops = 2 * int(np.prod(out)) * (b[-1] if trans_b else b[-2])
        else:
            continue
        quantized = node.op_type in INTEGER_OPS or all(
            _eight_bit_dequantized(name, producers, types) for name in node.input[:2])
        counts["int8" if quantized else "float32"] += ops
    return OpCount(float_ops=counts["float32"], int8_ops=counts["int8"])


@functools.lru_cache(maxsize=4)
def _graph(path: str, mtime: float) -> onnx.ModelProto:
    # Read once per file and version: a compare counts each model at every batch size.
    return read_graph(path)


def count_ops(path: str | os.PathLike, input_shapes: Mapping[str, Sequence[int]]) -> OpCount:
    """`count_graph` of an ONNX file (read without external data: shapes and types are all it needs)."""
    path = Path(path)
    return count_graph(_graph(str(path), path.stat().st_mtime), input_shapes)
