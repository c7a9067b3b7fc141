"""ONNX graph surgery: weights attached and folded, Resize scales fixed, names set."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from export import graph
from toolkit.onnxgraph import infer_shapes


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _weights_as_inputs_model():
    # y = x @ transpose(w) * (scale + 1), with w and scale graph inputs, as the fast path converts them.
    f = onnx.TensorProto.FLOAT
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("Add", ["scale", "one"], ["scale1"]),
        helper.make_node("MatMul", ["x", "wt"], ["xw"]),
        helper.make_node("Mul", ["xw", "scale1"], ["y"]),
        helper.make_node("RandomNormal", [], ["noise"], shape=[1, 3]),
        helper.make_node("Add", ["y", "noise"], ["unused"]),
    ]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", f, ["batch", 2]), helper.make_tensor_value_info("w", f, [3, 2]),
         helper.make_tensor_value_info("scale", f, [3])],
        [helper.make_tensor_value_info("y", f, ["batch", 3])],
        initializer=[numpy_helper.from_array(np.float32(1.0).reshape(()), "one")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_attach_weights_folds_what_only_weights_feed():
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    scale = np.array([1, 2, 3], np.float32)
    model = graph.attach_weights(_weights_as_inputs_model(), {"w": w, "scale": scale})

    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["x"]
    ops = [n.op_type for n in model.graph.node]
    assert "Transpose" not in ops and ops.count("Add") == 1      # folded; the random Add is not
    assert "RandomNormal" in ops
    x = np.array([[1, 2], [3, 4]], np.float32)
    np.testing.assert_allclose(_session(model).run(["y"], {"x": x})[0], x @ w.T * (scale + 1), rtol=1e-6)


def _resize_model(size_in: int, size_out: int):
    scales = np.array([1, 1, size_out / size_in, size_out / size_in], np.float32)
    g = helper.make_graph(
        [helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="linear",
                          coordinate_transformation_mode="half_pixel")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 1, size_in, size_in])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array([], np.float32), "roi"),
                     numpy_helper.from_array(scales, "scales")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("size", [227, 67])
def test_fix_resize_scales_gives_the_intended_size_in_onnxruntime_and_shape_inference(size):
    x = np.zeros((2, 1, 28, 28), np.float32)
    model = _resize_model(28, size)
    # The bug this guards against: float32(227/28) * 28 rounds down to 226.
    if size == 227:
        assert _session(model).run(None, {"x": x})[0].shape == (2, 1, 226, 226)
    graph.fix_resize_scales(model, {"x": x[:1]})
    assert _session(model).run(None, {"x": x})[0].shape == (2, 1, size, size)
    assert infer_shapes(model.graph.node, model, {"x": x.shape})["y"] == [2, 1, size, size]


def test_fix_resize_scales_leaves_exact_scales_alone():
    model = _resize_model(32, 64)
    before = model.graph.initializer[1].SerializeToString()
    graph.fix_resize_scales(model, {"x": np.zeros((1, 1, 32, 32), np.float32)})
    assert model.graph.initializer[1].SerializeToString() == before


def test_name_io_renames_and_names_the_batch_dimension():
    model = _weights_as_inputs_model()
    graph.name_io(model, "images", "probabilities")
    assert model.graph.input[0].name == "images" and model.graph.output[0].name == "probabilities"
    assert model.graph.node[2].input[0] == "images" and model.graph.node[3].output[0] == "probabilities"
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
