"""Models for the bench tests: several built with onnx.helper, and one small exported AlexNet.

The helper models cover what "any ONNX model" means: several inputs, int64 and float16
inputs, dynamic (named and unnamed) and fixed dims, a rank-0 input, non-image shapes; and one
whose runs are milliseconds of kernels ("heavy"), for profiles and tuning.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save

# onnx 1.23 writes IR version 14 by default; onnxruntime 1.31 reads up to 13.
IR_VERSION = 10
OPSET = 13


def _save(graph, path: Path, ir_version: int = IR_VERSION) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=ir_version)
    save(model, str(path))
    return path


def multi_input_graph():
    """images float32 [batch,8,8,3], ids int64 [batch,seq], scale float16 [1] -> score [batch], mean [batch]."""
    t = helper.make_tensor_value_info
    inputs = [t("images", TensorProto.FLOAT, ["batch", 8, 8, 3]), t("ids", TensorProto.INT64, ["batch", "seq"]),
              t("scale", TensorProto.FLOAT16, [1])]
    outputs = [t("score", TensorProto.FLOAT, ["batch"]), t("mean", TensorProto.FLOAT, ["batch"])]
    axis1 = helper.make_tensor("axis1", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["ids_f", "axis1"], ["ids_sum"], keepdims=0),
        helper.make_node("Cast", ["scale"], ["scale_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["mean", "ids_sum"], ["total"]),
        helper.make_node("Mul", ["total", "scale_f"], ["score"]),
    ]
    return helper.make_graph(nodes, "multi_input", inputs, outputs, initializer=[axis1])


def fixed_graph():
    """x float32 [2,5] fixed and t float32 rank 0 -> y = x * t."""
    t = helper.make_tensor_value_info
    return helper.make_graph([helper.make_node("Mul", ["x", "t"], ["y"])], "fixed",
                             [t("x", TensorProto.FLOAT, [2, 5]), t("t", TensorProto.FLOAT, [])],
                             [t("y", TensorProto.FLOAT, [2, 5])])


def unnamed_graph():
    """x float32 [?, ?] (unnamed dynamic dims) -> Relu."""
    t = helper.make_tensor_value_info
    return helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "unnamed",
                             [t("x", TensorProto.FLOAT, [None, None])], [t("y", TensorProto.FLOAT, [None, None])])


def image_graph():
    """raw uint8 images [batch,28,28,1] -> float mean per image (what --images feeds)."""
    t = helper.make_tensor_value_info
    nodes = [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["mean"], axes=[1, 2, 3], keepdims=0)]
    return helper.make_graph(nodes, "image", [t("images", TensorProto.UINT8, ["batch", 28, 28, 1])],
                             [t("mean", TensorProto.FLOAT, ["batch"])])


def heavy_graph(width: int = 512, layers: int = 4):
    """x float32 [batch, width] -> `layers` x (MatMul, Relu): milliseconds of kernels per run, little else."""
    t = helper.make_tensor_value_info
    weights = numpy_helper.from_array(np.random.default_rng(0).uniform(-0.05, 0.05, (width, width)).astype(np.float32),
                                      "w")
    nodes, previous = [], "x"
    for layer in range(layers):
        nodes += [helper.make_node("MatMul", [previous, "w"], [f"m{layer}"], name=f"matmul{layer}"),
                  helper.make_node("Relu", [f"m{layer}"], [f"r{layer}"], name=f"relu{layer}")]
        previous = f"r{layer}"
    nodes.append(helper.make_node("Identity", [previous], ["y"], name="out"))
    return helper.make_graph(nodes, "heavy", [t("x", TensorProto.FLOAT, ["batch", width])],
                             [t("y", TensorProto.FLOAT, ["batch", width])], initializer=[weights])


@pytest.fixture(scope="session")
def helper_models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx_helper")
    return {"multi": _save(multi_input_graph(), d / "multi.onnx"), "fixed": _save(fixed_graph(), d / "fixed.onnx"),
            "unnamed": _save(unnamed_graph(), d / "unnamed.onnx"), "image": _save(image_graph(), d / "image.onnx"),
            "ir14": _save(fixed_graph(), d / "ir14.onnx", ir_version=14),
            "heavy": _save(heavy_graph(), d / "heavy.onnx")}


EXPORT_SCRIPT = """
import sys
from alexnet.model import build_alexnet
from export.convert import export_keras
model = build_alexnet(image_size=67, input_shape=(28, 28, 1))
model.save(sys.argv[1] + "/model.keras")
export_keras(model, sys.argv[1] + "/alexnet.onnx")
"""


@pytest.fixture(scope="session")
def small_alexnet(tmp_path_factory) -> Path:
    """A 67 px AlexNet on raw 28x28x1 uint8 input, untrained (speed does not depend on weights),
    exported once per session with the export engineer's converter; model.keras beside it."""
    d = tmp_path_factory.mktemp("alexnet67")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(d)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return d / "alexnet.onnx"


@pytest.fixture(scope="session")
def alexnet_with_variants(small_alexnet) -> Path:
    """The small AlexNet with the export's float16 and int8 variants beside it (int8 calibrated on real images)."""
    import numpy as np

    from bench.inputs import read_idx_images
    from export.variants import to_float16, to_int8
    from toolkit.constants import FASHION_MNIST_TEST_IMAGES
    from toolkit.runs import variant_path
    to_float16(small_alexnet, variant_path(small_alexnet, "float16"))
    to_int8(small_alexnet, variant_path(small_alexnet, "int8"),
            read_idx_images(FASHION_MNIST_TEST_IMAGES)[:32, :, :, np.newaxis])
    return small_alexnet


QUICK = ("--warmup", "1", "--min-time", "0.2", "--min-iterations", "5", "--quiet")


@pytest.fixture(scope="session")
def bench():
    """`bench(*args)`: run `python -m bench ARGS` as a user does; `quick=True` adds short timing options."""
    def run(*args, quick: bool = False, cwd=None, timeout=300) -> subprocess.CompletedProcess:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        argv = [sys.executable, "-m", "bench", *map(str, args), *(QUICK if quick else ())]
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    return run
