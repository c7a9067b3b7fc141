"""export.rewrite: each pass is exact where it applies and leaves alone what it must not touch.

Small graphs built with onnx.helper give every pass a case where it applies (the rewritten graph
computes the same outputs on random inputs, to float32 rounding) and cases where it must not
(negative scale before MaxPool, padding after an offset, ...): the graph is then unchanged. The
end-to-end tests apply every pass, and each alone, to the briefly trained AlexNet of conftest.py
and compare with Keras: max |diff| <= 1e-5.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import REWRITES
from export.rewrite import PASSES, rewrite

F = TensorProto.FLOAT
EXACT = 1e-5
RNG = np.random.default_rng(0)


def _model(nodes, inputs, rank, constants):
    """One input, one output "y" of the given rank."""
    outputs = [helper.make_tensor_value_info("y", F, [None] * rank)]
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def _run(model, feeds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # as written
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _rewritten(model, passes, feeds):
    """(the rewrite's counts, its graph's op types, max |diff| of its outputs from the original's)."""
    before = _run(model, feeds)
    rewritten = onnx.ModelProto.FromString(model.SerializeToString())
    applied = rewrite(rewritten, passes)
    onnx.checker.check_model(rewritten)
    after = _run(rewritten, feeds)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(before, after))
    return applied, [n.op_type for n in rewritten.graph.node], diff


def _vector(n, low=0.5, high=2.0):
    return RNG.uniform(low, high, n).astype(np.float32)


def _nhwc_batchnorm_model(scale, offset, then="MaxPool", pads=(0, 0, 0, 0)):
    """tf2onnx's shape of Keras' Conv -> ReLU -> BatchNorm: NHWC Mul/Add between two Transposes, then `then`."""
    c = len(offset)
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Mul", ["t", "s"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Transpose", ["a"], ["u"], perm=[0, 3, 1, 2])]
    constants = {"s": scale, "b": offset}
    if then == "MaxPool":
        nodes.append(helper.make_node("MaxPool", ["u"], ["y"], kernel_shape=[3, 3], strides=[2, 2]))
    else:
        nodes.append(helper.make_node("Conv", ["u", "w", "wb"], ["y"], kernel_shape=[3, 3], pads=list(pads)))
        constants.update(w=RNG.standard_normal((4, c, 3, 3)).astype(np.float32), wb=_vector(4))
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["n", c, 9, 9])], 4, constants)


def _feeds(c=6, size=9, batch=3):
    return {"x": RNG.standard_normal((batch, c, size, size)).astype(np.float32)}


def test_the_passes_are_the_names_the_options_take():
    assert tuple(PASSES) == REWRITES


def test_batchnorm_after_relu_becomes_one_batchnormalization_in_nchw():
    model = _nhwc_batchnorm_model(_vector(6), RNG.standard_normal(6).astype(np.float32))
    applied, ops, diff = _rewritten(model, ["batchnorm"], _feeds())
    assert applied == {"batchnorm": 1} and diff <= EXACT
    assert ops == ["Relu", "BatchNormalization", "MaxPool"]            # both Transposes gone


def test_a_scalar_mul_is_not_a_batchnorm():
    model = _nhwc_batchnorm_model(np.float32([2.0]), np.zeros(6, np.float32))
    applied, ops, _ = _rewritten(model, ["batchnorm"], _feeds())
    assert applied == {"batchnorm": 0} and "Mul" in ops


def test_a_positive_affine_moves_past_maxpool_bit_exactly():
    model = _nhwc_batchnorm_model(_vector(6), RNG.standard_normal(6).astype(np.float32))
    applied, ops, diff = _rewritten(model, ["batchnorm", "affine-past-maxpool"], _feeds())
    assert applied["affine-past-maxpool"] == 1 and diff == 0.0
    assert ops == ["Relu", "MaxPool", "BatchNormalization"]


def test_a_negative_scale_stays_before_maxpool():
    scale = _vector(6)
    scale[2] = -0.5                  # max(-x) = -min(x): this channel would pick another element
    model = _nhwc_batchnorm_model(scale, RNG.standard_normal(6).astype(np.float32))
    applied, ops, diff = _rewritten(model, ["batchnorm", "affine-past-maxpool"], _feeds())
    assert applied["affine-past-maxpool"] == 0 and ops == ["Relu", "BatchNormalization", "MaxPool"] and diff <= EXACT


@pytest.mark.parametrize("pads, offset, folds", [
    ((0, 0, 0, 0), "random", True),          # no padding: exact
    ((1, 1, 1, 1), "zero", True),            # padding, but the affine adds nothing the border would miss
    ((1, 1, 1, 1), "random", False),         # padding after an offset: the border would see it
])
def test_affine_into_conv_only_where_the_padding_keeps_it_exact(pads, offset, folds):
    b = RNG.standard_normal(6).astype(np.float32) if offset == "random" else np.zeros(6, np.float32)
    model = _nhwc_batchnorm_model(_vector(6), b, then="Conv", pads=pads)
    applied, ops, diff = _rewritten(model, ["batchnorm", "affine-into-conv"], _feeds())
    assert applied["affine-into-conv"] == int(folds) and diff <= EXACT
    assert ("BatchNormalization" in ops) != folds


def _flatten_gemm_model(op, trans_b=False, k_matches=True):
    """x (N,4,3,3) -> BatchNorm -> Transpose to NHWC -> Reshape (N, 36) -> MatMul+Add or Gemm."""
    k = 36 if k_matches else 12
    weight = RNG.standard_normal((5, k) if trans_b else (k, 5)).astype(np.float32)
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "mean", "var"], ["n"], epsilon=1e-3),
             helper.make_node("Transpose", ["n"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["f"])]
    if op == "MatMul":
        nodes += [helper.make_node("MatMul", ["f", "w"], ["mm"]), helper.make_node("Add", ["mm", "bias"], ["y"])]
    else:
        nodes.append(helper.make_node("Gemm", ["f", "w", "bias"], ["y"], transB=int(trans_b), alpha=0.5, beta=2.0))
    constants = {"s": _vector(4), "b": RNG.standard_normal(4).astype(np.float32), "mean": _vector(4, -1, 1),
                 "var": _vector(4), "shape": np.int64([-1, k]), "w": weight, "bias": _vector(5)}
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["n", 4, 3, 3])], 2, constants)


@pytest.mark.parametrize("op, trans_b", [("MatMul", False), ("Gemm", False), ("Gemm", True)])
def test_affine_into_gemm_through_the_flatten(op, trans_b):
    model = _flatten_gemm_model(op, trans_b)
    applied, ops, diff = _rewritten(model, ["affine-into-gemm"], _feeds(c=4, size=3, batch=5))
    assert applied == {"affine-into-gemm": 1} and diff <= EXACT
    assert "BatchNormalization" not in ops and "Transpose" in ops


def test_affine_into_gemm_leaves_a_reshape_that_is_not_a_flatten():
    model = _flatten_gemm_model("MatMul", k_matches=False)     # rows of 12: a third of a sample each
    applied, ops, _ = _rewritten(model, ["affine-into-gemm"], _feeds(c=4, size=3, batch=5))
    assert applied == {"affine-into-gemm": 0} and "BatchNormalization" in ops


def _repeat_model(channel_scale=None, groups=1):
    """Grey NHWC images repeated to 3 channels (tf2onnx's tf.repeat), to NCHW, resized, convolved."""
    nodes = [helper.make_node("Unsqueeze", ["x", "last"], ["u"]),
             helper.make_node("Tile", ["u", "reps"], ["tiled"]),
             helper.make_node("Reshape", ["tiled", "rgb"], ["rgb_images"]),
             helper.make_node("Transpose", ["rgb_images"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Resize", ["t", "", "scales"], ["r"], mode="linear"),
             helper.make_node("Mul", ["r", "gain"], ["g"]),
             helper.make_node("Conv", ["g", "w", "wb"], ["y"], kernel_shape=[3, 3], strides=[2, 2], group=groups)]
    constants = {"last": np.int64([4]), "reps": np.int64([1, 1, 1, 1, 3]), "rgb": np.int64([0, 8, 8, 3]),
                 "scales": np.float32([1, 1, 2, 2]), "gain": np.float32([[[0.5]]]) if channel_scale is None
                 else channel_scale, "w": RNG.standard_normal((6, 3 // groups, 3, 3)).astype(np.float32),
                 "wb": _vector(6)}
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["n", 8, 8, 1])], 4, constants)


def test_repeated_grey_channels_are_resized_once_and_convolved_with_the_summed_kernel():
    feeds = {"x": RNG.standard_normal((2, 8, 8, 1)).astype(np.float32)}
    applied, ops, diff = _rewritten(_repeat_model(), ["repeat-into-conv"], feeds)
    assert applied == {"repeat-into-conv": 1} and diff <= EXACT
    assert "Tile" not in ops


@pytest.mark.parametrize("model", [
    _repeat_model(channel_scale=np.float32([1, 2, 3]).reshape(3, 1, 1)),     # the copies are made to differ
    _repeat_model(groups=3),                                                  # each copy has its own kernel
], ids=["per-channel-mul", "grouped-conv"])
def test_copies_that_do_not_stay_alike_are_left_alone(model):
    feeds = {"x": RNG.standard_normal((2, 8, 8, 1)).astype(np.float32)}
    applied, ops, _ = _rewritten(model, ["repeat-into-conv"], feeds)
    assert applied == {"repeat-into-conv": 0} and "Tile" in ops


@pytest.mark.parametrize("mode, transform", [("linear", "half_pixel"), ("nearest", "asymmetric"),
                                             ("cubic", "align_corners")])
def test_a_spatial_resize_is_two_matrix_products(mode, transform):
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode,
                              coordinate_transformation_mode=transform)]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, ["n", 2, 7, 5])], 4,
                   {"scales": np.float32([1, 1, 33 / 7, 2.5])})
    feeds = {"x": RNG.standard_normal((3, 2, 7, 5)).astype(np.float32)}
    applied, ops, diff = _rewritten(model, ["resize-as-matmul"], feeds)
    assert applied == {"resize-as-matmul": 1} and ops == ["MatMul", "MatMul"] and diff <= EXACT


def test_a_resize_of_the_channels_stays_a_resize():
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, ["n", 2, 7, 5])], 4,
                   {"scales": np.float32([1, 2, 2, 2])})
    feeds = {"x": RNG.standard_normal((1, 2, 7, 5)).astype(np.float32)}
    applied, ops, _ = _rewritten(model, ["resize-as-matmul"], feeds)
    assert applied == {"resize-as-matmul": 0} and ops == ["Resize"]


def test_a_batchnormalization_is_a_depthwise_1x1_conv():
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "mean", "var"], ["y"], epsilon=1e-3)]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, ["n", 4, 3, 3])], 4,
                   {"s": RNG.standard_normal(4).astype(np.float32), "b": RNG.standard_normal(4).astype(np.float32),
                    "mean": _vector(4, -1, 1), "var": _vector(4)})
    applied, ops, diff = _rewritten(model, ["batchnorm-as-conv"], _feeds(c=4, size=3))
    assert applied == {"batchnorm-as-conv": 1} and ops == ["Conv"] and diff <= EXACT


def test_sizes_computed_from_shapes_become_constants():
    """tf2onnx's Flatten: Reshape to (Shape(x)[0], 36) -> Reshape to "copy the batch", 36; the scale of a
    per-image standardisation, 1/sqrt(prod(Shape(x)[1:])), is folded to a constant."""
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["batch"]),
             helper.make_node("Concat", ["batch", "features"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("Slice", ["shape", "one", "four"], ["sizes"]),
             helper.make_node("ReduceProd", ["sizes"], ["count"], keepdims=0),
             helper.make_node("Cast", ["count"], ["count_f"], to=F),
             helper.make_node("Sqrt", ["count_f"], ["root"]),
             helper.make_node("Div", ["flat", "root"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", F, ["n", 4, 3, 3])], 2,
                   {"zero": np.int64([0]), "features": np.int64([36]), "one": np.int64([1]), "four": np.int64([4])})
    applied, ops, diff = _rewritten(model, ["constant-folding"], _feeds(c=4, size=3, batch=2))
    assert ops == ["Reshape", "Div"] and diff == 0.0 and applied["constant-folding"] == 7
    folded = onnx.ModelProto.FromString(model.SerializeToString())
    rewrite(folded, ["constant-folding"])
    target = next(t for t in folded.graph.initializer if t.name == folded.graph.node[0].input[1])
    assert numpy_helper.to_array(target).tolist() == [0, 36]          # 0: Reshape copies the batch size


def test_unknown_pass_is_refused():
    with pytest.raises(ValueError, match="unknown rewrite"):
        rewrite(_flatten_gemm_model("MatMul"), ["fuse-everything"])


# --- end to end, on the trained AlexNet -----------------------------------------------------------------

@pytest.fixture(scope="module")
def unrewritten(trained_alexnet, tmp_path_factory):
    from export.convert import export_keras

    path = tmp_path_factory.mktemp("plain") / "alexnet.onnx"
    export_keras(trained_alexnet, path, rewrites=())
    return onnx.load(str(path))


# Which passes find something in AlexNet (its convs after BatchNorm all pad: affine-into-conv finds none).
ALEXNET_APPLIES = {"constant-folding": True, "repeat-into-conv": True, "resize-as-matmul": True, "batchnorm": True,
                   "affine-past-maxpool": True, "affine-into-gemm": True, "affine-into-conv": False,
                   "batchnorm-as-conv": True}
# The affine passes work on BatchNormalization nodes (tf2onnx's Mul/Add become those first), and in
# AlexNet the last BatchNorm meets fc6 only once it has moved past the last pool.
NEEDS = {"affine-past-maxpool": ["batchnorm"], "affine-into-gemm": ["batchnorm", "affine-past-maxpool"],
         "affine-into-conv": ["batchnorm"], "batchnorm-as-conv": ["batchnorm"]}


@pytest.mark.parametrize("passes", [[name] for name in REWRITES] + [list(REWRITES)],
                         ids=[*REWRITES, "all"])
def test_every_rewrite_is_exact_against_keras_on_trained_weights(unrewritten, test_images, keras_outputs, passes):
    model = onnx.ModelProto.FromString(unrewritten.SerializeToString())
    needed = NEEDS.get(passes[0], []) + passes
    applied = rewrite(model, needed)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"images": test_images})[0]
    assert float(np.abs(outputs - keras_outputs).max()) <= EXACT
    for name in passes:
        assert (applied[name] > 0) == ALEXNET_APPLIES[name], applied
    ops = [n.op_type for n in model.graph.node]
    if "batchnorm" in needed:
        assert "Mul" not in ops[ops.index("Conv"):] and ops.count("Transpose") < \
            [n.op_type for n in unrewritten.graph.node].count("Transpose")


def test_all_rewrites_leave_fewer_nodes_and_no_affine_before_a_pool(unrewritten):
    model = onnx.ModelProto.FromString(unrewritten.SerializeToString())
    rewrite(model)
    ops = [n.op_type for n in model.graph.node]
    assert len(ops) < len(unrewritten.graph.node) / 1.5
    depthwise = [n for n in model.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1
                                                                            for a in n.attribute)]
    assert len(depthwise) == 4 and "BatchNormalization" not in ops            # 5 BatchNorms, one folded into fc6
    consumers = {name: n.op_type for n in model.graph.node for name in n.input}
    assert all(consumers[n.output[0]] != "MaxPool" for n in depthwise)
    assert {"Shape", "Tile", "Resize"}.isdisjoint(ops) and {"Mul", "Transpose"}.isdisjoint(ops[ops.index("Conv"):])
