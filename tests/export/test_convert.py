"""`export_keras` end to end: real files, checked by onnx and run in onnxruntime against TensorFlow."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tf2onnx

from export.convert import export_keras
from export.source import load_source
from export.verify import FileCheck, run_keras, run_onnx
from toolkit.cli import CheckFailed, UsageError
from toolkit.files import sha256_file
from toolkit.onnxfile import load_session


def test_trained_alexnet_exports_a_checked_file_with_names_and_metadata(trained_export, trained_alexnet_path):
    path = trained_export.path
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 28, 28, 1]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta == trained_export.metadata
    assert json.loads(meta["class_names"])[0] == "T-shirt/top"                # from summary.json beside
    assert meta["source_sha256"] == sha256_file(trained_alexnet_path) == trained_export.source_sha256
    assert "PerImageStandardization" in meta["preprocessing"] and meta["input_layout"] == "NHWC"
    assert json.loads(meta["versions"])["tf2onnx"] == tf2onnx.__version__
    assert json.loads(meta["versions"])["onnxruntime"] == ort.__version__
    assert trained_export.method == "fast" and trained_export.fallback_reason is None
    assert any(op.domain in ("", "ai.onnx") and op.version == trained_export.opset for op in model.opset_import)
    assert set(trained_export.timings) == {"load", "convert", "rewrite", "write_and_check"}
    assert json.loads(meta["rewrites"]) == trained_export.rewrites and trained_export.rewrites["batchnorm"] == 5


@pytest.mark.parametrize("batch", [1, 7])
def test_dynamic_batch_matches_tensorflow_on_real_images(trained_export, test_images, keras_outputs, batch):
    out = run_onnx(trained_export.path, test_images[:batch])
    assert out.shape == (batch, 10)
    np.testing.assert_allclose(out, keras_outputs[:batch], atol=1e-5)


def test_matches_tensorflow_on_random_inputs(trained_export, trained_alexnet):
    x = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_allclose(run_onnx(trained_export.path, x), run_keras(trained_alexnet, x), atol=1e-5)


def test_without_preprocessing_the_input_is_what_the_preprocessing_outputs(trained_alexnet, test_images,
                                                                           keras_outputs, tmp_path):
    source = load_source(trained_alexnet, preprocessing=False)
    result = export_keras(source, tmp_path / "core.onnx")
    session = load_session(result.path)
    assert session.get_inputs()[0].shape == ["batch", 67, 67, 3]
    assert session.get_inputs()[0].type == "tensor(float)"
    assert "already preprocessed" in result.metadata["preprocessing"]
    x = source.to_model_input(test_images)
    np.testing.assert_allclose(session.run(None, {"images": x})[0], keras_outputs, atol=1e-5)


def test_a_check_that_fails_keeps_the_file_from_its_name(tmp_path):
    import keras

    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    passing = FileCheck("dense.onnx", x, run_keras(model, x), max_abs_diff=1e-5)
    export_keras(model, tmp_path / "dense.onnx", check=passing)
    assert passing.vs_keras.max_abs_diff <= 1e-5 and (tmp_path / "dense.onnx").is_file()
    failing = FileCheck("off.onnx", x, run_keras(model, x) + 1e-3, max_abs_diff=1e-4)
    with pytest.raises(CheckFailed, match=r"off.onnx: max \|difference\| from keras is 0.001"):
        export_keras(model, tmp_path / "off.onnx", check=failing)
    assert [p.name for p in tmp_path.iterdir()] == ["dense.onnx"]


def _bfloat16_alexnet():
    """The test AlexNet built under the mixed_bfloat16 policy (bfloat16 compute, float32 weights)."""
    import keras

    from alexnet.model import build_alexnet

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        return build_alexnet(image_size=67, input_shape=(28, 28, 1))
    finally:
        keras.config.set_dtype_policy("float32")


def test_mixed_precision_models_export_float32_compute(trained_alexnet, test_images, keras_outputs, tmp_path):
    mixed = _bfloat16_alexnet()
    mixed.set_weights(trained_alexnet.get_weights())
    result = export_keras(mixed, tmp_path / "mixed.onnx")
    model = onnx.load(result.path)
    assert onnx.TensorProto.BFLOAT16 not in {t.data_type for t in model.graph.initializer}
    assert all(a.i != onnx.TensorProto.BFLOAT16 for n in model.graph.node if n.op_type == "Cast" for a in n.attribute)
    np.testing.assert_allclose(run_onnx(result.path, test_images), keras_outputs, atol=1e-5)
    # The bfloat16 model approximates what the float32 export computes.
    assert np.mean(run_keras(mixed, test_images).argmax(1) == keras_outputs.argmax(1)) >= 0.9


def test_keep_precision_bfloat16_is_a_failed_check_on_cpu_not_a_traceback(tmp_path):
    mixed = _bfloat16_alexnet()
    # tf2onnx emits mixed float/bfloat16 types here: the checker (or else onnxruntime) catches it.
    with pytest.raises(CheckFailed, match="the model (fails onnx.checker|does not load in onnxruntime)"):
        export_keras(mixed, tmp_path / "bf16.onnx", keep_precision=True)
    assert list(tmp_path.iterdir()) == []


def test_two_input_models_are_refused_and_nothing_is_written(tmp_path):
    import keras

    a, b = keras.Input((3,)), keras.Input((3,))
    with pytest.raises(UsageError, match="only single-input, single-output models are supported"):
        export_keras(keras.Model([a, b], keras.layers.Add()([a, b])), tmp_path / "two.onnx")
    assert list(tmp_path.iterdir()) == []


def test_output_in_a_missing_directory_is_a_usage_error(trained_alexnet, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        export_keras(trained_alexnet, tmp_path / "missing" / "x.onnx")


def test_an_unknown_method_is_a_usage_error(trained_alexnet, tmp_path):
    with pytest.raises(UsageError, match="unknown conversion method 'quick'"):
        export_keras(trained_alexnet, tmp_path / "x.onnx", method="quick")
    assert list(tmp_path.iterdir()) == []
