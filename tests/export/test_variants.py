"""float16 and int8 variants: real files that load in onnxruntime and keep to their tolerances."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from export import variants
from export.verify import compare, run_onnx
from toolkit.cli import UsageError
from toolkit.runs import variant_path


@pytest.fixture(scope="module")
def float32_outputs(small_export, test_images):
    return run_onnx(small_export.path, test_images)


def test_variant_names():
    assert variant_path("runs/alexnet/alexnet.onnx", "int8").as_posix() == "runs/alexnet/alexnet.int8.onnx"


def test_float16_variant_is_half_the_size_and_close(small_export, test_images, float32_outputs, tmp_path):
    path = tmp_path / "alexnet.float16.onnx"
    variants.to_float16(small_export.path, path)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8   # I/O types kept
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert path.stat().st_size < 0.55 * small_export.size_bytes
    result = compare(path.name, "float32", float32_outputs, run_onnx(path, test_images))
    result.require(max_abs_diff=1e-2, min_agreement=0.98)


def test_int8_variant_calibrated_on_real_images(small_export, fashion_mnist_dir, test_images, float32_outputs,
                                                tmp_path):
    from tests.export.conftest import read_idx_images

    calibration = read_idx_images(fashion_mnist_dir / "train-images-idx3-ubyte.gz", 64)
    path = tmp_path / "alexnet.int8.onnx"
    variants.to_int8(small_export.path, path, calibration)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Per-channel: the conv weights' scales are vectors, one per output channel.
    scales = {t.name: t for t in model.graph.initializer if t.name.endswith("_scale")}
    assert any(len(t.dims) == 1 and t.dims[0] > 1 for t in scales.values())
    assert path.stat().st_size < 0.3 * small_export.size_bytes
    result = compare(path.name, "float32", float32_outputs, run_onnx(path, test_images))
    result.require(min_agreement=0.99)
    assert list(tmp_path.iterdir()) == [path]        # no calibration leftovers beside it


def test_int8_needs_opset_13(small_alexnet, tmp_path):
    from export.convert import export_keras

    old = export_keras(small_alexnet, tmp_path / "old.onnx", opset=12)
    with pytest.raises(UsageError, match="needs opset 13 or newer"):
        variants.to_int8(old.path, tmp_path / "old.int8.onnx", np.zeros((1, 28, 28, 1), np.uint8))
    assert not (tmp_path / "old.int8.onnx").exists()
