"""ONNX graph structure that export and bench share: node order, and static shapes.

    from toolkit.onnxgraph import infer_shapes, topological_sort
    topological_sort(model.graph)                                       # producers before consumers
    shapes = infer_shapes(model.graph.node, model)                      # {name: [1, 96, 55, 55] or ['batch', ...]}
    shapes = infer_shapes(model.graph.node, model, {"images": (32, 28, 28, 1)})   # at these input shapes

infer_shapes: onnx's shape inference with data propagation, so sizes that the graph computes with Shape ops
are followed too. It runs on a light copy: initializers above a few kB (the weights: 233 MB in
the full AlexNet) become graph inputs of the same type and shape, so nothing big is copied or
serialised. A size that is not static is a symbol (equal symbols: equal sizes) or None.
Used by export.rewrite (which rewrites need which shapes) and bench.opcount (operations per sample).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, shape_inference

Dim = int | str | None

# Initializers with more elements are left out of the light copy (their dims suffice); smaller ones
# are kept, since shape inference reads their values (Reshape targets, Resize scales).
SHAPE_ONLY_ELEMENTS = 1024


def static_sizes(dims: Sequence[Dim]) -> list[int] | None:
    """The sizes, where every one is known statically; None where one is a symbol or unknown."""
    sizes = [d for d in dims if isinstance(d, int)]
    return sizes if len(sizes) == len(dims) else None


def infer_shapes(nodes: Iterable[onnx.NodeProto], model: onnx.ModelProto,
                 input_shapes: Mapping[str, Sequence[int]] | None = None,
                 initializers: Iterable[onnx.TensorProto] | None = None) -> dict[str, list[Dim]]:
    """Shapes of every tensor of `nodes`, the graph of `model` (whose inputs, outputs, opsets it uses).

    `input_shapes` fixes some graph inputs' shapes; `initializers` (default: the model's) are the
    constants. The nodes need not be in order: they are sorted first (rewrites append theirs).
    """
    graph = model.graph
    tensors = list(graph.initializer if initializers is None else initializers)
    small = [t for t in tensors if int(np.prod(t.dims)) <= SHAPE_ONLY_ELEMENTS]
    as_inputs = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                 for t in tensors if int(np.prod(t.dims)) > SHAPE_ONLY_ELEMENTS]
    inputs = [helper.make_tensor_value_info(i.name, i.type.tensor_type.elem_type, list(input_shapes[i.name]))
              if input_shapes and i.name in input_shapes else i for i in graph.input]
    light = helper.make_model(helper.make_graph(list(nodes), "shapes", [*inputs, *as_inputs], list(graph.output),
                                                initializer=small),
                              opset_imports=model.opset_import, ir_version=model.ir_version)
    topological_sort(light.graph)
    inferred = shape_inference.infer_shapes(light, data_prop=True)
    shapes: dict[str, list[Dim]] = {t.name: list(t.dims) for t in tensors}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                  for d in tensor.shape.dim]
    return shapes


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after the producers of its inputs (some rewriters append out of order)."""
    producer = {out: i for i, n in enumerate(graph.node) for out in n.output}
    waiting_on = [{producer[name] for name in n.input if name in producer} for n in graph.node]
    consumers: dict[int, list[int]] = {}
    for i, deps in enumerate(waiting_on):
        for d in deps:
            consumers.setdefault(d, []).append(i)
    ready = [i for i, deps in enumerate(waiting_on) if not deps]
    order = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for c in consumers.get(i, []):
            waiting_on[c].discard(i)
            if not waiting_on[c]:
                ready.append(c)
    if len(order) != len(graph.node):
        raise ValueError(f"graph {graph.name!r} has a cycle: cannot sort its nodes")
    ordered = [graph.node[i] for i in order]
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)
