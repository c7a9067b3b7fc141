"""ONNX files: the one safe way to open them and the one way to write them.

Opening. An ONNX file may keep tensors in "external data" files named by a relative or
absolute path inside the model. A model that points outside its own directory
(`../../etc/shadow`, `/dev/zero`, a symlink out of the directory) would make a loader
read arbitrary files, so it is refused here, before onnx or onnxruntime opens it. A file
of an export whose record is beside it (alexnet.onnx, alexnet.int8.onnx with
alexnet.onnx.json) must have the sha256 the record names (`check_model_file`).

Writing. `write_checked` writes under a temporary name, runs `onnx.checker` (full check)
and loads the file in onnxruntime's CPU provider, then runs the caller's own `check` on it
(e.g. its outputs against a reference), and only then renames it into place: a failed
export or variant never leaves a plausible-looking broken file behind. `checked_path` is
the same for writers that only write to a path (onnxruntime's quantizer).

    from toolkit.onnxfile import load_session, load_model, write_checked
    session = load_session("runs/alexnet/alexnet.onnx", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    write_checked(model_proto, "runs/alexnet/alexnet.float16.onnx", check=outputs_within_tolerance)
    with checked_path("runs/alexnet/alexnet.int8.onnx", check=outputs_within_tolerance) as tmp:
        quantize_static(..., tmp, ...)

Imports onnx and onnxruntime, never TensorFlow (bench/ runs on GPU machines without it).
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import onnx
import onnxruntime as ort
from onnx import external_data_helper

from toolkit.cli import CheckFailed, UsageError, short_error
from toolkit.constants import PROVIDERS
from toolkit.environment import preload_cuda
from toolkit.files import atomic_path
from toolkit.runs import check_exported_file

# onnxruntime's log severity while probing providers that are expected to fail: 4 = FATAL only.
_SILENT = 4
_DEFAULT_SEVERITY = 2


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise UsageError(f"ONNX file {path} does not exist: export one with `python -m export MODEL -o {path.name}`")


def read_graph(path: str | os.PathLike) -> onnx.ModelProto:
    """The model without its external data: enough to read its graph, opset and metadata."""
    path = Path(path)
    _require_file(path)
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, onnx raises others
        raise UsageError(f"{path} is not an ONNX model ({type(exc).__name__}): pass a .onnx file") from None


def check_external_data(path: str | os.PathLike) -> list[Path]:
    """Refuse (UsageError) a model whose external data lies outside its own directory.

    Returns the external data files it references (empty for a self-contained model).
    """
    path = Path(path)
    model = read_graph(path)
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


def check_model_file(path: str | os.PathLike) -> Path:
    """A readable ONNX model whose external data stays beside it and that holds a graph; a file of an export
    must also be the one its record names (`toolkit.runs.check_exported_file`: no set mixed by a killed export)."""
    path = Path(path)
    check_external_data(path)
    check_exported_file(path)
    graph = read_graph(path).graph
    if not graph.node and not graph.output:
        raise UsageError(f"model {path} holds no graph: pass an .onnx model (re-export it if it was truncated)")
    return path


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """onnx.load, with its external data, after `check_external_data`."""
    check_external_data(path)
    return onnx.load(str(path))


def load_session(path: str | os.PathLike, providers: Sequence[str] | None = None,
                 sess_options: ort.SessionOptions | None = None, provider_options=None) -> ort.InferenceSession:
    """An onnxruntime session for `path` after `check_external_data`; CPU if no providers are named."""
    check_external_data(path)
    return ort.InferenceSession(str(path), sess_options, providers=list(providers or [PROVIDERS["cpu"]]),
                                provider_options=provider_options)


def verify_file(path: str | os.PathLike) -> None:
    """onnx.checker with full_check, then a load in onnxruntime's CPU provider; CheckFailed if either fails."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise CheckFailed(f"the model fails onnx.checker: {str(exc).strip().splitlines()[0]}") from exc
    try:
        load_session(path)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's pybind exceptions share no public base class
        raise CheckFailed(f"the model does not load in onnxruntime's CPU provider ({short_error(exc)})") from exc


@contextlib.contextmanager
def checked_path(path: str | os.PathLike, check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary name beside `path` for the block to write an ONNX file to; then `verify_file`,
    `check(temporary path)`, and the rename onto `path` only if all of them passed."""
    with atomic_path(path, suffix=".onnx") as tmp:
        yield tmp
        verify_file(tmp)
        if check is not None:
            check(tmp)


def write_checked(model: onnx.ModelProto, path: str | os.PathLike,
                  check: Callable[[Path], None] | None = None) -> None:
    """Write `model` to `path` through `checked_path` (see the module docstring)."""
    with checked_path(path, check) as tmp:
        onnx.save(model, str(tmp))


def loadable_providers(path: str | os.PathLike) -> list[str]:
    """The available onnxruntime providers that actually run this model (not just fall back to CPU).

    A TensorRT session is not created here: building its engine takes minutes per model, and a
    file's loadability does not depend on it. TensorRT is listed where CUDA loads the model and
    the TensorRT provider is available; `bench --provider tensorrt` reports what really ran.
    """
    check_external_data(path)
    # A GPU provider without its GPU or libraries logs errors while failing over: expected here, so silenced
    # (onnxruntime has no getter for the old level; 2, warnings, is its default).
    ort.set_default_logger_severity(_SILENT)
    loaded = []
    available = ort.get_available_providers()
    if PROVIDERS["cuda"] in available:
        preload_cuda()
    try:
        for provider in (p for p in available if p != PROVIDERS["tensorrt"]):
            try:
                # onnxruntime print()s its fail-over banner to stdout.
                with contextlib.redirect_stdout(io.StringIO()):
                    session = ort.InferenceSession(str(path), providers=[provider])
            except Exception:  # noqa: BLE001 - a provider that cannot load the model is the answer, not an error
                continue
            if session.get_providers()[0] == provider:
                loaded.append(provider)
    finally:
        ort.set_default_logger_severity(_DEFAULT_SEVERITY)
    if PROVIDERS["tensorrt"] in available and PROVIDERS["cuda"] in loaded:
        loaded.insert(0, PROVIDERS["tensorrt"])
    return loaded
