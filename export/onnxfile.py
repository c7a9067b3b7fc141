"""Loading ONNX files safely: the one rule every loader in the project goes through.

An ONNX file may keep tensors in "external data" files named by a relative or
absolute path inside the model. A model that points outside its own directory
(`../../etc/shadow`, `/dev/zero`, a symlink out of the directory) would make a loader
read arbitrary files, so it is refused here, before onnx or onnxruntime opens it:

    from export.onnxfile import load_session, load_model, check_external_data
    session = load_session("runs/alexnet/alexnet.onnx", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    model = load_model("runs/alexnet/alexnet.onnx")

Imports neither TensorFlow nor tf2onnx (bench/ uses it on GPU machines without them).
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Sequence

import onnx
import onnxruntime as ort
from onnx import external_data_helper

from alexnet.cli import UsageError


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise UsageError(f"ONNX file {path} does not exist: export one with `python -m export MODEL -o {path.name}`")


def _parse(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, onnx raises others
        raise UsageError(f"{path} is not an ONNX model ({type(exc).__name__}): pass a .onnx file") from None


def check_external_data(path: str | os.PathLike) -> list[Path]:
    """Refuse (UsageError) a model whose external data lies outside its own directory.

    Returns the external data files it references (empty for a self-contained model).
    """
    path = Path(path)
    _require_file(path)
    model = _parse(path)
    base = path.resolve().parent
    files = []
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(base):
            raise UsageError(f"{path} refers to external data {location!r} outside its own directory "
                             f"(tensor {tensor.name!r}): refused; keep the data files beside the model")
        if not target.is_file():
            raise UsageError(f"{path} refers to external data {location!r}, which is missing: "
                             f"copy it beside the model")
        files.append(target)
    return files


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """onnx.load, with its external data, after `check_external_data`."""
    check_external_data(path)
    return onnx.load(str(path))


def load_session(path: str | os.PathLike, providers: Sequence[str] | None = None,
                 sess_options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """An onnxruntime session for `path` after `check_external_data`; CPU if no providers are named."""
    check_external_data(path)
    return ort.InferenceSession(str(path), sess_options, providers=list(providers or ["CPUExecutionProvider"]))


def loadable_providers(path: str | os.PathLike) -> list[str]:
    """The available onnxruntime providers that actually run this model (not just fall back to CPU)."""
    check_external_data(path)
    # A GPU provider without its GPU or libraries logs errors while failing over: expected here, so silenced
    # (onnxruntime has no getter for the old level; 2, warnings, is its default).
    ort.set_default_logger_severity(4)
    loaded = []
    try:
        for provider in ort.get_available_providers():
            try:
                # onnxruntime print()s its fail-over banner to stdout.
                with contextlib.redirect_stdout(io.StringIO()):
                    session = ort.InferenceSession(str(path), providers=[provider])
            except Exception:  # noqa: BLE001 - a provider that cannot load the model is the answer, not an error
                continue
            if session.get_providers()[0] == provider:
                loaded.append(provider)
    finally:
        ort.set_default_logger_severity(2)
    return loaded
