"""The safe-loading rule: external data must stay inside the model's own directory."""
from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from toolkit.cli import UsageError
from toolkit.onnxfile import (
    check_external_data,
    load_model,
    load_session,
    loadable_providers,
)


def _model_with_weight(location: str | None) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    if location is not None:
        weight.data_location = onnx.TensorProto.EXTERNAL
        weight.ClearField("raw_data")
        for key, value in (("location", location), ("offset", "0"), ("length", "24")):
            weight.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3])], initializer=[weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _write(directory, location, data_path=None):
    model_path = directory / "m.onnx"
    model_path.write_bytes(_model_with_weight(location).SerializeToString())
    if data_path is not None:
        data_path.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    return model_path


def test_self_contained_model_loads(tmp_path):
    path = _write(tmp_path, None)
    assert check_external_data(path) == []
    out = load_session(path).run(None, {"x": np.ones((1, 2), np.float32)})[0]
    np.testing.assert_array_equal(out, [[3, 5, 7]])
    assert "CPUExecutionProvider" in loadable_providers(path)


def test_loadable_providers_never_builds_a_tensorrt_engine(tmp_path, monkeypatch):
    """Where CUDA loads the model and TensorRT is available, TensorRT is listed without a session of its own:
    building its engine takes minutes per model (a GPU machine, simulated: no GPU here)."""
    from toolkit import onnxfile

    path = _write(tmp_path, None)
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    created = []

    class Session:
        def __init__(self, model, providers):
            created.append(providers[0])
            self.provider = providers[0]

        def get_providers(self):
            return [self.provider, "CPUExecutionProvider"]

    monkeypatch.setattr(onnxfile.ort, "get_available_providers", lambda: gpu)
    monkeypatch.setattr(onnxfile.ort, "InferenceSession", Session)
    monkeypatch.setattr(onnxfile, "preload_cuda", lambda: None)
    assert loadable_providers(path) == gpu
    assert created == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_external_data_beside_the_model_loads(tmp_path):
    (tmp_path / "data").mkdir()
    path = _write(tmp_path, "data/w.bin", tmp_path / "data" / "w.bin")
    assert check_external_data(path) == [(tmp_path / "data" / "w.bin").resolve()]
    assert load_model(path).graph.initializer[0].name == "w"
    out = load_session(path).run(None, {"x": np.ones((1, 2), np.float32)})[0]
    np.testing.assert_array_equal(out, [[3, 5, 7]])


@pytest.mark.parametrize("loader", [check_external_data, load_model, load_session])
def test_external_data_outside_the_directory_is_refused(tmp_path, loader):
    inner = tmp_path / "model"
    inner.mkdir()
    path = _write(inner, "../w.bin", tmp_path / "w.bin")
    with pytest.raises(UsageError, match="outside its own directory"):
        loader(path)


def test_absolute_external_data_path_is_refused(tmp_path):
    path = _write(tmp_path, str(tmp_path / "w.bin"), tmp_path / "w.bin")
    with pytest.raises(UsageError, match="outside its own directory"):
        check_external_data(path)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
def test_symlink_out_of_the_directory_is_refused(tmp_path):
    inner = tmp_path / "model"
    inner.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.arange(6, dtype=np.float32).tobytes())
    os.symlink(tmp_path / "secret.bin", inner / "w.bin")
    path = _write(inner, "w.bin")
    with pytest.raises(UsageError, match="outside its own directory"):
        check_external_data(path)


def test_missing_external_data_is_refused(tmp_path):
    path = _write(tmp_path, "w.bin")
    with pytest.raises(UsageError, match="missing"):
        check_external_data(path)


def test_missing_file_and_non_onnx_file_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_session(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\x00 certainly not protobuf \x12\x99")
    with pytest.raises(UsageError, match="not an ONNX model"):
        load_session(junk)


def test_write_checked_renames_only_after_every_check(tmp_path):
    from toolkit.cli import CheckFailed
    from toolkit.onnxfile import write_checked

    target = tmp_path / "m.onnx"
    seen = []

    def refuse(tmp):
        seen.append(tmp)
        assert tmp != target and tmp.is_file()  # the caller's check runs on the temporary file
        raise CheckFailed("outputs differ")

    with pytest.raises(CheckFailed, match="outputs differ"):
        write_checked(_model_with_weight(None), target, check=refuse)
    assert seen and list(tmp_path.iterdir()) == []
    write_checked(_model_with_weight(None), target, check=lambda tmp: None)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert load_model(target).graph.node[0].op_type == "MatMul"


def test_a_model_that_onnxruntime_cannot_load_is_never_renamed(tmp_path):
    from toolkit.cli import CheckFailed
    from toolkit.onnxfile import write_checked

    broken = _model_with_weight(None)
    broken.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(CheckFailed, match="fails onnx.checker"):
        write_checked(broken, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
