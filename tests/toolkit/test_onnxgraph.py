"""toolkit.onnxgraph: node order repaired; static shapes inferred without the weights' data."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from toolkit.onnxgraph import SHAPE_ONLY_ELEMENTS, infer_shapes, topological_sort


def _model():
    """x [batch, 8] -> MatMul (a weight larger than the light copy keeps) -> Reshape to Shape(x)[0], 2, -1."""
    weight = np.zeros((8, SHAPE_ONLY_ELEMENTS), np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["batch"]),
             helper.make_node("Concat", ["batch", "rest"], ["target"], axis=0),
             helper.make_node("Reshape", ["h", "target"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.int64([0]), "zero"),
                     numpy_helper.from_array(np.int64([2, -1]), "rest")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_topological_sort_repairs_appended_nodes():
    model = _model()
    shuffled = [onnx.NodeProto.FromString(n.SerializeToString()) for n in list(model.graph.node)[::-1]]
    del model.graph.node[:]
    model.graph.node.extend(shuffled)
    topological_sort(model.graph)
    position = {out: i for i, n in enumerate(model.graph.node) for out in n.output}
    for i, node in enumerate(model.graph.node):
        assert all(position.get(name, -1) < i for name in node.input)


def test_shapes_follow_computed_sizes_symbolically_and_at_given_input_shapes():
    model = _model()
    nodes = list(model.graph.node)[::-1]            # out of order, as a rewrite leaves them
    shapes = infer_shapes(nodes, model)
    assert shapes["h"] == ["batch", SHAPE_ONLY_ELEMENTS] and shapes["w"] == [8, SHAPE_ONLY_ELEMENTS]
    assert shapes["y"][:2] == ["batch", 2]                  # the Reshape's computed target, followed
    assert infer_shapes(nodes, model, {"x": (3, 8)})["y"] == [3, 2, SHAPE_ONLY_ELEMENTS // 2]
    assert len(model.graph.node) == 5 and model.graph.node[0].op_type == "MatMul"      # the model is untouched
