"""float16 and int8 variants: real files that load in onnxruntime and keep to their limits,
checked (as the export checks them) before they get their final name."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest

from export import variants
from export.job import DEFAULT_FLOAT16_TOLERANCE
from export.verify import FileCheck
from toolkit.cli import UsageError
from toolkit.runs import variant_path

from .conftest import INT8_TEST_AGREEMENT, read_idx_images


@pytest.fixture(scope="module")
def float32_check(trained_export, test_images, keras_outputs) -> FileCheck:
    check = FileCheck("alexnet.onnx", test_images, keras_outputs)
    check(trained_export.path)
    return check


def test_variant_names():
    assert variant_path("runs/alexnet/alexnet.onnx", "int8").as_posix() == "runs/alexnet/alexnet.int8.onnx"


def test_float16_variant_is_half_the_size_and_close(trained_export, float32_check, tmp_path):
    path = tmp_path / "alexnet.float16.onnx"
    check = FileCheck(path.name, float32_check.inputs, float32_check.keras, float32=float32_check,
                      max_abs_diff=DEFAULT_FLOAT16_TOLERANCE)
    variants.to_float16(trained_export.path, path, check)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8   # I/O types kept
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in model.graph.initializer}
    assert path.stat().st_size < 0.55 * trained_export.size_bytes
    assert check.vs_keras.max_abs_diff > 0 and check.vs_float32.top1_agreement == 1.0


def test_int8_variant_calibrated_on_real_images(trained_export, fashion_mnist_dir, float32_check, tmp_path):
    calibration = read_idx_images(fashion_mnist_dir / "train-images-idx3-ubyte.gz", 64)
    path = tmp_path / "alexnet.int8.onnx"
    check = FileCheck(path.name, float32_check.inputs, float32_check.keras, float32=float32_check,
                      min_agreement=INT8_TEST_AGREEMENT)
    variants.to_int8(trained_export.path, path, calibration, check)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Per-channel: the conv weights' scales are vectors, one per output channel.
    scales = {t.name: t for t in model.graph.initializer if t.name.endswith("_scale")}
    assert any(len(t.dims) == 1 and t.dims[0] > 1 for t in scales.values())
    assert path.stat().st_size < 0.3 * trained_export.size_bytes
    assert check.vs_float32.max_abs_diff > DEFAULT_FLOAT16_TOLERANCE    # int8 is coarser than float16
    assert list(tmp_path.iterdir()) == [path]        # no calibration leftovers beside it


def test_int8_needs_opset_13(trained_alexnet, tmp_path):
    from export.convert import export_keras

    old = export_keras(trained_alexnet, tmp_path / "old.onnx", opset=12)
    with pytest.raises(UsageError, match="needs opset 13 or newer"):
        variants.to_int8(old.path, tmp_path / "old.int8.onnx", np.zeros((1, 28, 28, 1), np.uint8))
    assert not (tmp_path / "old.int8.onnx").exists()


def _int8(trained_export, fashion_mnist_dir, float32_check, tmp_path, options):
    calibration = read_idx_images(fashion_mnist_dir / "train-images-idx3-ubyte.gz", 32)
    path = tmp_path / "alexnet.int8.onnx"
    check = FileCheck(path.name, float32_check.inputs, float32_check.keras, float32=float32_check,
                      min_agreement=INT8_TEST_AGREEMENT)
    variants.to_int8(trained_export.path, path, calibration, check, options=options)
    return onnx.load(str(path)), check


def test_the_default_int8_keeps_the_logits_float_and_quantizes_the_rest(trained_export, fashion_mnist_dir,
                                                                       float32_check, tmp_path):
    model, _ = _int8(trained_export, fashion_mnist_dir, float32_check, tmp_path, variants.DEFAULT_INT8)
    producers = {out: n for n in model.graph.node for out in n.output}
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    logits = producers[softmax.input[0]]
    assert logits.op_type == "Gemm" and logits.input[1] in {t.name for t in model.graph.initializer}   # float weights
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert all(producers[n.input[1]].op_type == "DequantizeLinear" for n in convs) and len(convs) == 9


def test_int8_options_change_the_file(trained_export, fashion_mnist_dir, float32_check, tmp_path):
    options = dataclasses.replace(variants.DEFAULT_INT8, per_channel=False, quant_format="QOperator",
                                  float_logits=False)
    model, check = _int8(trained_export, fashion_mnist_dir, float32_check, tmp_path, options)
    ops = {n.op_type for n in model.graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops and "Gemm" not in ops
    weight_scales = [t for t in model.graph.initializer if t.name.endswith("_scale") and "weight" in t.name.lower()]
    assert weight_scales and all(len(t.dims) == 0 for t in weight_scales)          # one scale per tensor
    with pytest.raises(ValueError, match="unsupported int8 options"):
        variants.Int8Options(calibration="guess")
