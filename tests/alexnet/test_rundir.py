"""One writer per run directory, and one that can be written, before training starts (alexnet.rundir).

    .venv/bin/pytest tests/alexnet/test_rundir.py
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from alexnet import rundir
from tests.alexnet.test_training import wait_for_step
from tests.conftest import ROOT, cli_env, run_module
from toolkit.cli import UsageError
from toolkit.runs import RunDir

TINY = ["--dataset", "synthetic", "--train-samples", "64", "--validation-samples", "32", "--test-samples", "32",
        "--image-size", "67", "--batch-size", "8", "--epochs", "1", "--no-progress"]


@pytest.fixture(autouse=True)
def outside_any_job(monkeypatch):
    for name in ("SLURM_JOB_ID", "HOROVOD_GLOO_RENDEZVOUS_ADDR", "PMIX_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def live_process():
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def write_holder(where: RunDir, **fields) -> None:
    where.root.mkdir(parents=True, exist_ok=True)
    holder = dict(host=socket.gethostname(), pid=os.getpid(), started=None, run=None, since="then") | fields
    (where.root / rundir.LOCK_NAME).write_text(json.dumps(holder))


def holder_pid(run: RunDir) -> int:
    return json.loads((run.root / rundir.LOCK_NAME).read_text())["pid"]


def test_the_lock_names_its_holder_and_is_gone_after_release(tmp_path):
    run = RunDir(tmp_path / "new" / "run")
    lock = rundir.WriterLock(run)
    lock.take()
    assert holder_pid(run) == os.getpid()
    lock.release()
    assert list(run.root.iterdir()) == []


def test_a_live_holder_of_another_run_refuses_the_next_in_one_line(tmp_path, live_process):
    run = RunDir(tmp_path)
    write_holder(run, pid=live_process.pid, started=rundir._process_start(live_process.pid))
    with pytest.raises(UsageError) as refused:
        rundir.WriterLock(run).take()
    message = str(refused.value)
    assert f"being written by another training (pid {live_process.pid} on {socket.gethostname()}" in message
    assert "choose another --output-dir" in message and "\n" not in message
    assert holder_pid(run) == live_process.pid


def test_a_holder_on_another_host_is_not_assumed_dead(tmp_path):
    write_holder(RunDir(tmp_path), host="elsewhere", pid=1)
    with pytest.raises(UsageError, match="pid 1 on elsewhere"):
        rundir.WriterLock(RunDir(tmp_path)).take()


def test_a_dead_holder_or_a_reused_pid_is_stale_and_taken_over(tmp_path, live_process):
    run = RunDir(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_holder(run, pid=gone.pid)
    rundir.WriterLock(run).take()
    assert holder_pid(run) == os.getpid()
    # A live process that started at another time than the holder did has only reused its pid.
    write_holder(run, pid=live_process.pid, started=rundir._process_start(live_process.pid) - 1)
    rundir.WriterLock(run).take()
    assert holder_pid(run) == os.getpid()


def test_the_same_run_takes_its_own_lock_over(tmp_path, live_process, monkeypatch):
    # A SLURM requeue, or the rank an elastic reset made the chief: another process of the same run.
    run = RunDir(tmp_path)
    write_holder(run, host="node1", pid=live_process.pid, run="slurm job 42")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    rundir.WriterLock(run).take()
    assert holder_pid(run) == os.getpid()
    monkeypatch.setenv("SLURM_JOB_ID", "43")
    write_holder(run, host="node1", pid=live_process.pid, run="slurm job 42")
    with pytest.raises(UsageError, match="another training"):
        rundir.WriterLock(run).take()


def one_error_line(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("alexnet.train: error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return errors[0]


@pytest.mark.slow
def test_a_second_training_into_a_run_directory_is_refused_and_a_killed_ones_lock_is_not(tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "alexnet.train", *TINY, "--train-samples", "4096",
                              "--epochs", "50", "--log-every", "1", "--output-dir", str(out)],
                             cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_step(first, RunDir(out), 1)
        line = one_error_line(run_module("alexnet.train", *TINY, "--output-dir", out))
        assert f"is being written by another training (pid {first.pid} on {socket.gethostname()}" in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert holder_pid(RunDir(out)) == first.pid   # SIGKILL left its lock behind ...
    after = run_module("alexnet.train", *TINY, "--output-dir", out)
    assert after.returncode == 0, after.stderr[-3000:]   # ... which does not block the next run
    assert not (out / rundir.LOCK_NAME).exists()


def test_an_output_dir_that_is_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "out").write_text("not a directory")
    line = one_error_line(run_module("alexnet.train", *TINY, "--output-dir", tmp_path / "out"))
    assert "--output-dir" in line and "is a file, not a directory" in line
    assert (tmp_path / "out").read_text() == "not a directory"


def in_small_tmpfs(tmp_path: Path, setup: str, *train: str) -> subprocess.CompletedProcess:
    """alexnet.train writing to a 1 MiB tmpfs at tmp_path/disk, in a mount namespace of its own
    (nothing is mounted for anyone else), after `setup` ran there."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to mount a small file system")
    disk = tmp_path / "disk"
    disk.mkdir()
    command = " ".join([sys.executable, "-m", "alexnet.train", *train, "--output-dir", str(disk / "run")])
    script = (f"mount -t tmpfs -o size=1m none {disk} && {setup} && "
              f"{{ {command}; rc=$?; echo LEFT: $(ls -A {disk}); exit $rc; }}")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("setup,problem", [
    (":", "MiB free, this run writes about"),                               # room for no checkpoint
    ("(cat /dev/zero > {disk}/filler || true)", "its disk is full"),         # room for nothing at all
    ("mount -o remount,ro {disk}", "it is on a read-only file system"),
])
def test_a_full_or_read_only_output_dir_is_refused_before_training(tmp_path, setup, problem):
    result = in_small_tmpfs(tmp_path, setup.format(disk=tmp_path / "disk"), *TINY)
    line = one_error_line(result)
    assert problem in line and "choose another --output-dir" in line, line
    left = [line for line in result.stdout.splitlines() if line.startswith("LEFT:")]
    assert left and set(left[-1].split()[1:]) <= {"filler"}, result.stdout[-2000:]   # nothing written
