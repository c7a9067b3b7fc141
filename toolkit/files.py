"""Atomic file output: write to a temporary name in the same directory, then rename.

A crash, a SIGTERM or a failed check never leaves a plausible-looking, half-written file
under the final name: readers see the old file or the new one, nothing between. The file is
fsync'ed before the rename and its directory after it, so a power loss or a node crash right
after a checkpoint was "written" cannot leave an empty or missing file behind either.

    require_parent_dir("out/result.json"); require_output_dir("plots", "--plot-dir")   # before any work
    with atomic_path("model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    write_json_atomic("summary.json", summary.to_json())
    schema_version(doc, "alexnet-toolkit/train-summary", 1, "summary.json", "training summary", "re-run it")
    sha256_file("runs/alexnet/alexnet.onnx")
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from toolkit.cli import UsageError


def require_parent_dir(path: str | os.PathLike) -> Path:
    """The output's directory must exist (creating a typo'd tree silently hides the mistake) and take a new
    file (writes go to a temporary name there, then a rename), and the output must not be a directory.
    Callers check every output before any work, so a refusal costs nothing and leaves nothing written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"output directory {parent} does not exist: create it or choose another path")
    if path.is_dir():
        raise UsageError(f"output {path} is a directory: give a file name, e.g. {path / 'out'}{path.suffix}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {parent} is not writable: choose another path")
    return path


def require_output_dir(path: str | os.PathLike, option: str) -> Path:
    """A directory outputs go into (`option` names it in the refusal): existing and writable."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{option} {path} is not an existing directory: create it or choose another")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path} is not writable: choose another directory")
    return path


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a directory's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; fsync it and rename it onto `path` only if the block succeeds.

    `suffix` keeps the extension for writers that dispatch on it (Keras wants `.keras`).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=directory)
    os.close(fd)
    # mkstemp makes the file 0600; outputs get the usual 0666 minus the umask.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
        fsync_path(directory)  # the rename itself is durable only once the directory is
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike, what: str, fix: str) -> Any:
    """A JSON file, or a one-line UsageError naming `what` it should have been and the `fix`."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist: {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path} ({exc}): {fix}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno}): {fix}") from None
    except (RecursionError, ValueError) as exc:  # nested too deep; an integer of more than 4300 digits
        raise UsageError(f"{what} {path} is not JSON this can read ({type(exc).__name__}): {fix}") from None


def schema_version(doc: Any, schema: str, newest: int, source: str, what: str, fix: str) -> int:
    """The version of a JSON document of `schema`, after refusing (UsageError) anything else: another
    schema, no valid version, or a version newer than `newest` (this code cannot know what it holds).
    `what` names the kind of file ("training summary"); `fix` says what to do instead."""
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        raise UsageError(f"{source} is not a{'n' if what[0] in 'aeiou' else ''} {what} "
                         f"(no \"schema\": \"{schema}\"): {fix}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UsageError(f"{source} has no valid schema version: {fix}")
    if version > newest:
        raise UsageError(f"{source} has {what} version {version}, newer than this toolkit reads ({newest}): "
                         "upgrade alexnet-toolkit to read it")
    return version


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks (ONNX models and weights are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
