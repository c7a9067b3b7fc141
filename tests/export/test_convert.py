"""Keras -> ONNX conversion: real files, checked by onnx and run in onnxruntime against TensorFlow."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tf2onnx

from export import convert
from export.convert import export_keras
from export.verify import run_keras, run_onnx
from toolkit.cli import UsageError
from toolkit.onnxfile import load_session

from .conftest import other_layers_model


def test_default_opset_is_the_newest_both_tools_support():
    opsets = convert.supported_opsets()
    assert convert.default_opset() == opsets[-1] == max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    assert convert.resolve_opset(None) == opsets[-1]
    with pytest.raises(UsageError, match="opset 99 is not supported"):
        convert.resolve_opset(99)


def test_small_alexnet_exports_a_checked_file_with_names_and_metadata(small_export, small_alexnet_path):
    path = small_export.path
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    assert not model.graph.input[0].name.endswith(":0")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 28, 28, 1]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"])[0] == "T-shirt/top"                # from summary.json beside
    assert meta["source_sha256"] == convert.sha256_file(small_alexnet_path)
    assert "PerImageStandardization" in meta["preprocessing"] and meta["input_layout"] == "NHWC"
    assert json.loads(meta["versions"])["tf2onnx"] == tf2onnx.__version__
    assert small_export.method == "fast" and small_export.fallback_reason is None
    assert any(op.domain in ("", "ai.onnx") and op.version == small_export.opset for op in model.opset_import)


@pytest.mark.parametrize("batch", [1, 7])
def test_dynamic_batch_matches_tensorflow_on_real_images(small_export, small_alexnet, test_images, batch):
    x = test_images[:batch]
    out = run_onnx(small_export.path, x)
    assert out.shape == (batch, 10)
    np.testing.assert_allclose(out, run_keras(small_alexnet, x), atol=1e-5)


def test_matches_tensorflow_on_random_inputs(small_export, small_alexnet):
    x = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_allclose(run_onnx(small_export.path, x), run_keras(small_alexnet, x), atol=1e-5)


@pytest.mark.slow
def test_fast_and_stock_paths_give_the_same_outputs(small_alexnet, small_export, test_images, tmp_path):
    stock = export_keras(small_alexnet, tmp_path / "stock.onnx", method="stock")
    assert stock.method == "stock"
    np.testing.assert_allclose(run_onnx(stock.path, test_images), run_onnx(small_export.path, test_images),
                               atol=1e-6)


@pytest.fixture(scope="module")
def other_model():
    return other_layers_model()


def test_other_layer_types_export_and_match(other_model, tmp_path):
    result = export_keras(other_model, tmp_path / "other.onnx")
    assert result.method == "fast", result.fallback_reason
    onnx.checker.check_model(result.path, full_check=True)
    session = load_session(result.path)
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    assert [o.name for o in session.get_outputs()] == ["scores"]
    for batch in (1, 7):
        x = np.random.default_rng(batch).uniform(0, 255, (batch, 32, 32, 3)).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"pixels": x})[0], run_keras(other_model, x), atol=1e-4)
    assert json.loads({p.key: p.value for p in onnx.load(result.path).metadata_props}["class_names"]) is None


def test_ops_tf2onnx_cannot_convert_are_a_usage_error(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="gelu")])
    with pytest.raises(UsageError, match="cannot convert: Erfc"):
        export_keras(model, tmp_path / "gelu.onnx")
    assert list(tmp_path.iterdir()) == []


def test_nchw_input(small_alexnet, test_images, tmp_path):
    result = export_keras(small_alexnet, tmp_path / "nchw.onnx", nchw=True)
    session = load_session(result.path)
    assert session.get_inputs()[0].shape == ["batch", 1, 28, 28]
    out = session.run(None, {"images": np.ascontiguousarray(test_images[:7].transpose(0, 3, 1, 2))})[0]
    np.testing.assert_allclose(out, run_keras(small_alexnet, test_images[:7]), atol=1e-5)


def test_without_preprocessing_the_input_is_what_the_preprocessing_outputs(small_alexnet, test_images, tmp_path):
    source = convert.load_source(small_alexnet, preprocessing=False)
    result = export_keras(source, tmp_path / "core.onnx")
    session = load_session(result.path)
    assert session.get_inputs()[0].shape == ["batch", 67, 67, 3]
    assert session.get_inputs()[0].type == "tensor(float)"
    assert "already preprocessed" in result.metadata["preprocessing"]
    x = source.to_model_input(test_images[:4])
    np.testing.assert_allclose(session.run(None, {"images": x})[0], run_keras(small_alexnet, test_images[:4]),
                               atol=1e-5)


def test_no_preprocessing_on_a_model_without_any_is_a_usage_error(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(UsageError, match="no leading preprocessing layers"):
        export_keras(model, tmp_path / "x.onnx", preprocessing=False)
    assert list(tmp_path.iterdir()) == []


def test_mixed_precision_models_export_float32_compute(tmp_path, test_images):
    import keras

    from alexnet.model import build_alexnet

    keras.utils.set_random_seed(2)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = build_alexnet(image_size=67, input_shape=(28, 28, 1))
    finally:
        keras.config.set_dtype_policy("float32")
    result = export_keras(mixed, tmp_path / "mixed.onnx")
    model = onnx.load(result.path)
    assert onnx.TensorProto.BFLOAT16 not in {t.data_type for t in model.graph.initializer}
    assert all(a.i != onnx.TensorProto.BFLOAT16 for n in model.graph.node if n.op_type == "Cast" for a in n.attribute)
    reference = run_keras(convert.as_float32(mixed), test_images[:8])
    np.testing.assert_allclose(run_onnx(result.path, test_images[:8]), reference, atol=1e-5)
    # The float32 copy computes what the bfloat16 model approximates.
    np.testing.assert_allclose(reference, run_keras(mixed, test_images[:8]), atol=0.05)


def test_two_input_models_are_refused_and_nothing_is_written(tmp_path):
    import keras

    a, b = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(UsageError, match="only single-input, single-output models are supported"):
        export_keras(model, tmp_path / "two.onnx")
    assert list(tmp_path.iterdir()) == []


def test_output_in_a_missing_directory_is_a_usage_error(small_alexnet, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        export_keras(small_alexnet, tmp_path / "missing" / "x.onnx")


def test_loading_files_that_are_not_keras_models(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        convert.load_keras(tmp_path / "absent.keras")
    junk = tmp_path / "junk.keras"
    junk.write_text("not a zip")
    with pytest.raises(UsageError, match="is not a loadable Keras model"):
        convert.load_keras(junk)


def test_onnxruntime_version_is_recorded(small_export):
    assert json.loads(small_export.metadata["versions"])["onnxruntime"] == ort.__version__


def test_a_failing_fast_path_falls_back_to_stock_and_says_why(monkeypatch, tmp_path):
    import keras

    def broken(*args):
        raise RuntimeError("simulated fast-path failure")

    monkeypatch.setattr(convert, "_convert_fast", broken)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    result = export_keras(model, tmp_path / "fallback.onnx")
    assert result.method == "stock"
    assert result.fallback_reason == "RuntimeError: simulated fast-path failure"
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(result.path, x), run_keras(model, x), atol=1e-6)


def test_keep_precision_bfloat16_is_a_failed_check_on_cpu_not_a_traceback(tmp_path):
    import keras

    from alexnet.model import build_alexnet
    from toolkit.cli import CheckFailed

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = build_alexnet(image_size=67, input_shape=(28, 28, 1))
    finally:
        keras.config.set_dtype_policy("float32")
    # tf2onnx emits mixed float/bfloat16 types here: the checker (or else onnxruntime) catches it.
    with pytest.raises(CheckFailed, match="the model (fails onnx.checker|does not load in onnxruntime)"):
        export_keras(mixed, tmp_path / "bf16.onnx", keep_precision=True)
    assert list(tmp_path.iterdir()) == []
