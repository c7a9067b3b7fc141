"""Operations per sample, counted from ONNX graphs: float32, QDQ int8, integer ops, and a whole AlexNet."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.opcount import count_graph, count_ops


def _conv_gemm_model(quantized: bool = False):
    """x [n,3,10,10] -> Conv 8x3x3x3 stride 1 (8x8 out) -> Flatten -> Gemm 512x5 (transB: weight 5x512)."""
    weight, fc = np.ones((8, 3, 3, 3), np.float32), np.ones((5, 512), np.float32)
    nodes, constants = [], {"w": weight, "fc": fc}
    x, w = "x", "w"
    if quantized:
        constants.update(s=np.float32(0.1), z=np.uint8(0), wz=np.int8(0), wq=weight.astype(np.int8))
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
                  helper.make_node("DequantizeLinear", ["wq", "s", "wz"], ["wd"])]
        x, w = "xd", "wd"
    nodes += [helper.make_node("Conv", [x, w], ["c"], kernel_shape=[3, 3]),
              helper.make_node("Flatten", ["c"], ["f"]),
              helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


CONV = 2 * 8 * 8 * 8 * 3 * 3 * 3          # 2 x output elements x (input channels x kernel)
GEMM = 2 * 5 * 512


def test_conv_and_gemm_are_two_operations_per_multiply_add():
    count = count_graph(_conv_gemm_model(), {"x": (4, 3, 10, 10)})
    assert (count.float_ops, count.int8_ops) == (4 * (CONV + GEMM), 0)
    assert count.per_sample(4) == CONV + GEMM and count.precision == "float32"


def test_qdq_conv_counts_as_int8_and_float_gemm_as_float():
    count = count_graph(_conv_gemm_model(quantized=True), {"x": (1, 3, 10, 10)})
    assert (count.int8_ops, count.float_ops) == (CONV, GEMM) and count.precision == "int8"


def test_integer_matmul_counts_as_int8():
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "g",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, ["n", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, ["n", 4])],
                              initializer=[numpy_helper.from_array(np.ones((16, 4), np.int8), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    assert count_graph(model, {"a": (3, 16)}) == type(count_graph(model, {"a": (3, 16)}))(0, 3 * 2 * 16 * 4)


def test_exported_alexnet_counts_its_architecture(small_alexnet):
    """The 67 px AlexNet of conftest.py (exported with every rewrite: conv1 sees the one grey channel, and the
    28 -> 67 px resize is two matrix products, rows (67x28) @ image (28x28) @ columns^T (28x67))."""
    resize = 2 * 67 * 28 * 28 + 2 * 67 * 28 * 67
    conv = [(15, 96, 1 * 11 * 11), (7, 256, 96 * 25), (3, 384, 256 * 9), (3, 384, 384 * 9), (3, 256, 384 * 9)]
    dense = [(256, 4096), (4096, 4096), (4096, 10)]
    expected = (sum(2 * size * size * out * fan_in for size, out, fan_in in conv) + sum(2 * a * b for a, b in dense)
                + resize)
    count = count_ops(small_alexnet, {"images": (2, 28, 28, 1)})
    assert count.per_sample(2) == expected and count.int8_ops == 0


@pytest.mark.parametrize("batch", [1, 5])
def test_per_sample_does_not_depend_on_the_batch(small_alexnet, batch):
    assert count_ops(small_alexnet, {"images": (batch, 28, 28, 1)}).per_sample(batch) == \
        count_ops(small_alexnet, {"images": (3, 28, 28, 1)}).per_sample(3)


def test_a_model_without_convolutions_counts_nothing(helper_models):
    assert count_ops(helper_models["fixed"], {"x": (2, 5), "t": ()}).total == 0
    assert onnx.load(str(helper_models["fixed"])).graph.node[0].op_type == "Mul"
