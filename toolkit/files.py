"""Atomic file output: write to a temporary name in the same directory, then rename.

A crash, a SIGTERM or a failed check never leaves a plausible-looking, half-written file
under the final name: readers see the old file or the new one, nothing between. The file is
fsync'ed before the rename and its directory after it, so a power loss or a node crash right
after a checkpoint was "written" cannot leave an empty or missing file behind either.

    with atomic_path("model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    write_json_atomic("summary.json", summary.to_json())
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from toolkit.cli import UsageError


def require_parent_dir(path: str | os.PathLike) -> Path:
    """The output's directory must exist: creating a typo'd tree silently hides the mistake."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"output directory {parent} does not exist: create it or choose another path")
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
