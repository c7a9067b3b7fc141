"""tf2onnx's two paths: the fast one gives the stock one's outputs, on AlexNet and on other layers."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export import conversion
from export.convert import export_keras
from export.verify import run_keras, run_onnx
from toolkit.cli import UsageError
from toolkit.constants import PROVIDERS
from toolkit.onnxfile import load_session

from .conftest import other_layers_model


@pytest.mark.slow
def test_fast_and_stock_paths_give_the_same_outputs(trained_alexnet, trained_export, test_images, tmp_path):
    stock = export_keras(trained_alexnet, tmp_path / "stock.onnx", method="stock")
    assert stock.method == "stock" and trained_export.method == "fast"
    np.testing.assert_allclose(run_onnx(stock.path, test_images), run_onnx(trained_export.path, test_images),
                               atol=1e-6)


def test_other_layer_types_export_and_match(tmp_path):
    model = other_layers_model()
    result = export_keras(model, tmp_path / "other.onnx")
    assert result.method == "fast", result.fallback_reason
    onnx.checker.check_model(result.path, full_check=True)
    session = load_session(result.path)
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    assert [o.name for o in session.get_outputs()] == ["scores"]
    for batch in (1, 7):
        x = np.random.default_rng(batch).uniform(0, 255, (batch, 32, 32, 3)).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"pixels": x})[0], run_keras(model, x), atol=1e-4)


def test_ops_tf2onnx_cannot_convert_are_a_usage_error(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="gelu")])
    with pytest.raises(UsageError, match="cannot convert: Erfc"):
        export_keras(model, tmp_path / "gelu.onnx")
    assert list(tmp_path.iterdir()) == []


def test_nchw_input(trained_alexnet, test_images, keras_outputs, tmp_path):
    result = export_keras(trained_alexnet, tmp_path / "nchw.onnx", nchw=True)
    session = load_session(result.path)
    assert session.get_inputs()[0].shape == ["batch", 1, 28, 28]
    out = session.run(None, {"images": np.ascontiguousarray(test_images.transpose(0, 3, 1, 2))})[0]
    np.testing.assert_allclose(out, keras_outputs, atol=1e-5)


def test_a_failing_fast_path_falls_back_to_stock_and_says_why(monkeypatch):
    import keras

    def broken(*args):
        raise RuntimeError("simulated fast-path failure")

    monkeypatch.setattr(conversion, "_convert_fast", broken)
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    converted = conversion.convert(model, "x", "y", opset=17, nchw=False, method="fast")
    assert converted.method == "stock"
    assert converted.fallback_reason == "RuntimeError: simulated fast-path failure"
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    session = ort.InferenceSession(converted.proto.SerializeToString(), providers=[PROVIDERS["cpu"]])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], run_keras(model, x), atol=1e-6)
