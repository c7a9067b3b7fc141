"""Atomic writes: the final name holds the old file or the whole new one, fsync'ed, never a torn one."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from toolkit import files
from toolkit.cli import UsageError


def test_written_file_appears_whole_with_the_usual_permissions(tmp_path):
    target = tmp_path / "out.json"
    files.write_json_atomic(target, {"a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2]}
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_the_file_and_its_directory_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    target = tmp_path / "ckpt.npz"
    with files.atomic_path(target, suffix=".npz") as tmp:
        tmp.write_bytes(b"x" * 10)
        temporary = str(tmp)
    # The data before the rename (under the temporary name), the directory entry after it.
    assert synced == [temporary, str(tmp_path)]


def test_output_directory_must_exist(tmp_path):
    with pytest.raises(UsageError, match="output directory .*missing does not exist: create it"):
        files.require_parent_dir(tmp_path / "missing" / "out.json")
    assert files.require_parent_dir(tmp_path / "out.json") == tmp_path / "out.json"
    assert files.require_parent_dir("relative.json") == Path("relative.json")


def test_an_output_onto_a_directory_is_refused(tmp_path):
    (tmp_path / "r.json").mkdir()
    with pytest.raises(UsageError, match=r"output .*r.json is a directory: give a file name, e.g. .*r.json/out.json"):
        files.require_parent_dir(tmp_path / "r.json")
    with pytest.raises(UsageError, match="--plot-dir .*r.json/x is not an existing directory"):
        files.require_output_dir(tmp_path / "r.json" / "x", "--plot-dir")
    assert files.require_output_dir(tmp_path, "--plot-dir") == tmp_path


REFUSALS = """
import sys
from toolkit import files
from toolkit.cli import UsageError
for check in (lambda: files.require_parent_dir(sys.argv[1] + "/out.json"),
              lambda: files.require_output_dir(sys.argv[1], "--plot-dir")):
    try:
        check()
    except UsageError as exc:
        print(exc)
"""


def test_an_output_in_a_read_only_directory_is_refused():
    """As a user who cannot write there: root writes anywhere, so as root the check runs as nobody (setpriv)."""
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    if drop and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux) to drop to an unprivileged user")
    base = Path(tempfile.mkdtemp(prefix="read-only-"))   # not under pytest's 0700 directory: nobody reads this
    try:
        base.chmod(0o755)
        (base / "ro").mkdir(mode=0o555)
        (base / "ro").chmod(0o555)
        done = subprocess.run([*drop, sys.executable, "-c", REFUSALS, str(base / "ro")], capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    finally:
        shutil.rmtree(base)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"output directory {base / 'ro'} is not writable: choose another path",
                                        f"--plot-dir {base / 'ro'} is not writable: choose another directory"]


@pytest.mark.parametrize("content,message", [
    (None, "summary .* does not exist: train first"),
    (b"{not json", "is not valid JSON .* at line 1\\): train first"),
    (b"\xff\xfe", "cannot read summary"),
])
def test_read_json_refuses_in_one_line(tmp_path, content, message):
    path = tmp_path / "s.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        files.read_json(path, "summary", "train first")
