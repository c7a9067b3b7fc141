"""A re-export killed at any point: a reader sees the old set whole, the new set whole, or refuses in one line.

Two exports of the same small model with different weights go to the same -o, each with a
float16 variant. The reader is what bench and bench report run: `ExportRecord.read` (every file
against the sha256 its record names) and `check_model_file` on each model file. The files on
disk are compared with both sets independently of that reader.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env
from toolkit.cli import UsageError
from toolkit.files import sha256_file

from .conftest import other_layers_model

FINAL = ("alexnet.onnx", "alexnet.float16.onnx", "alexnet.onnx.json")


def _job(model: Path, output: Path, variants=("float16",)):
    from export.job import ExportJob

    return ExportJob(model=str(model), output=str(output), samples=8, variants=variants)


def _export(model: Path, output: Path, variants=("float16",)):
    from rich.console import Console

    from export.pipeline import run

    return run(_job(model, output, variants), Console(file=io.StringIO(), width=160))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    """The same small model twice, with different weights."""
    directory = tmp_path_factory.mktemp("models")
    model = other_layers_model()
    model.save(directory / "old.keras")
    for weight in model.weights:
        weight.assign(weight * 1.5)
    model.save(directory / "new.keras")
    return directory / "old.keras", directory / "new.keras"


@pytest.fixture(scope="module")
def old_set(models, tmp_path_factory) -> Path:
    """The first export's directory, as a re-export finds it."""
    directory = tmp_path_factory.mktemp("old")
    _export(models[0], directory / "alexnet.onnx")
    return directory


def _seen(directory: Path) -> dict[str, str]:
    """The export's files under their final names, by sha256."""
    return {name: sha256_file(directory / name) for name in FINAL if (directory / name).is_file()}


def _read(directory: Path) -> str | None:
    """What bench and bench report do before they trust the files: None when accepted, else the refusal."""
    from toolkit.onnxfile import check_model_file
    from toolkit.runs import ExportRecord

    try:
        ExportRecord.read(directory / "alexnet.onnx.json")
        for name in FINAL[:2]:
            check_model_file(directory / name)
    except UsageError as exc:
        return str(exc)
    return None


def _judge(state: Path, old: dict[str, str]) -> str:
    """"old", "new" (every file replaced) or "refused"; a mix the reader accepts fails the test."""
    refusal = _read(state)
    if refusal is None:
        seen = _seen(state)
        if seen == old:
            return "old"
        kept = {name for name, digest in seen.items() if old.get(name) == digest}
        assert set(seen) == set(FINAL) and not kept, f"the reader accepted a mix of two exports: {sorted(kept)} old"
        return "new"
    assert "\n" not in refusal and "re-export" in refusal, refusal
    return "refused"


def test_a_reader_sees_one_whole_export_at_every_step_of_a_reexport(models, old_set, tmp_path, monkeypatch):
    """The directory as a kill -9 would leave it before each rename and removal a re-export makes."""
    out = tmp_path / "run" / "alexnet.onnx"
    shutil.copytree(old_set, out.parent)
    old = _seen(out.parent)
    states: list[Path] = []

    def snapshot():
        state = tmp_path / f"state{len(states)}"
        state.mkdir()
        for name in _seen(out.parent):
            shutil.copy2(out.parent / name, state / name)
        states.append(state)

    def before(call):
        def step(*args, **kwargs):
            if out.parent in Path(args[-1] if call is os.replace else args[0]).parents:
                snapshot()
            return call(*args, **kwargs)
        return step

    monkeypatch.setattr(os, "replace", before(os.replace))
    monkeypatch.setattr(os, "unlink", before(os.unlink))
    _export(models[1], out)
    monkeypatch.undo()
    snapshot()
    new = _seen(out.parent)
    assert set(old) == set(new) == set(FINAL) and not set(old.values()) & set(new.values())
    outcomes = [_judge(state, old) for state in states]
    assert outcomes[0] == "old" and outcomes[-1] == "new" and len(outcomes) >= 4, outcomes
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(FINAL)   # no staging directory left


KILLER = """
import os, signal, sys
from pathlib import Path
from tests.export.test_reexport import _export
model, out, at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
replace, calls = os.replace, []
def kill_after(src, dst, *args, **kwargs):
    replace(src, dst, *args, **kwargs)
    if out.parent in Path(dst).parents:
        calls.append(dst)
        if len(calls) == at:
            os.kill(os.getpid(), signal.SIGKILL)
os.replace = kill_after
_export(model, out)
"""


@pytest.mark.slow
@pytest.mark.parametrize("at, outcome", [(1, "old"), (2, "old"), (3, "refused"), (4, "refused"), (5, "new")])
def test_kill_9_after_a_file_write_leaves_one_whole_export_or_a_refusal(models, old_set, tmp_path, at, outcome):
    """SIGKILL right after the at-th rename: the float32 and float16 files into the staged set, then the record
    into place, then the two files over the old ones."""
    out = tmp_path / "run" / "alexnet.onnx"
    shutil.copytree(old_set, out.parent)
    old = _seen(out.parent)
    done = subprocess.run([sys.executable, "-c", KILLER, models[1], out, str(at)], capture_output=True, text=True,
                          env=cli_env(), cwd=Path(__file__).parents[2], timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert _judge(out.parent, old) == outcome


def test_a_reexport_without_a_variant_removes_the_old_one(models, old_set, tmp_path):
    """An old alexnet.float16.onnx left beside a new export without variants would be measured as its variant."""
    out = tmp_path / "run" / "alexnet.onnx"
    shutil.copytree(old_set, out.parent)
    record = _export(models[1], out, variants=())
    assert [f.name for f in record.files] == ["alexnet.onnx"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["alexnet.onnx", "alexnet.onnx.json"]


def test_the_next_export_removes_what_killed_exports_left_on_this_host(tmp_path):
    """Each kill leaves a staging directory (hundreds of MB for AlexNet); a live export's is kept."""
    import socket

    from export.writing import staged

    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    owners = {"killed here": f"{host}.{dead}", "alive here": f"{host}.{os.getpid()}", "elsewhere": f"other.{dead}"}
    leftovers = {why: tmp_path / f".alexnet.onnx.{owner}.abc123.export" for why, owner in owners.items()}
    for directory in leftovers.values():
        directory.mkdir()
        (directory / "alexnet.onnx").write_bytes(b"half an export")
    with staged(tmp_path / "alexnet.onnx") as stage:
        assert stage.directory.name.startswith(f".alexnet.onnx.{host}.{os.getpid()}.")
    assert sorted(tmp_path.iterdir()) == sorted([leftovers["alive here"], leftovers["elsewhere"]])
