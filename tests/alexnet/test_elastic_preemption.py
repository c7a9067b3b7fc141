"""--elastic keeps preemption's contract: SIGUSR1 to the launcher -> a checkpoint, exit 75; --resume
continues it exactly, here in a world of another size (2 ranks stopped, 1 rank goes on), and a
resume with another batch size is refused by both ranks. Every process logs what it trained
(`--log-samples`): the images of both runs' logs, counted against the dataset's own, are each
epoch's images, each once.

Real horovodrun elastic on this machine through `python -m slurm.launch --elastic`, with a stand-in
`scontrol` for the allocation: hosts `localhost` and `127.0.0.1`, two names of this machine, so the
two ranks are on two "hosts" without ssh. Synthetic images at 67 px, 512 per epoch, 2 epochs.

    .venv/bin/pytest tests/alexnet/test_elastic_preemption.py
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alexnet import checkpoint, data
from tests.alexnet.training_runs import dataset_digests, trained_digests
from tests.conftest import ROOT, cli_env
from toolkit.runs import RunDir

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

SAMPLES, BATCH, STOP_AFTER = 512, 16, 6       # steps of 2 x 16 before the stop; 16 such steps an epoch
TRAIN = ["--elastic", "--dataset", "synthetic", "--train-samples", str(SAMPLES), "--validation-samples", "32",
         "--test-samples", "32", "--image-size", "67", "--batch-size", str(BATCH), "--epochs", "2",
         "--commit-every", "4", "--log-every", "2", "--no-progress"]
TIMEOUT_S = 900


def launch(tmp_path: Path, hosts: str, tasks: str, *train: str) -> subprocess.Popen:
    (tmp_path / "scontrol").write_text(f"#!/bin/sh\necho {hosts}\n")
    (tmp_path / "scontrol").chmod(0o755)
    # The venv's bin on PATH, as a job script's `source .venv/bin/activate` puts it: slurm.launch runs horovodrun.
    path = f"{tmp_path}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = cli_env(PATH=path, SLURM_JOB_NODELIST="x", SLURM_TASKS_PER_NODE=tasks,
                  SLURMD_NODENAME="localhost")
    return subprocess.Popen([sys.executable, "-m", "slurm.launch", "--elastic", "--", sys.executable, "-m",
                             "alexnet.train", *TRAIN, "--output-dir", str(tmp_path / "run"),
                             "--log-samples", str(tmp_path / "samples"), *train],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)


def test_elastic_run_stops_on_a_signal_and_resumes_in_a_smaller_world(tmp_path):
    run = RunDir(tmp_path / "run")
    proc = launch(tmp_path, "localhost 127.0.0.1", "1(x2)")
    deadline = time.monotonic() + TIMEOUT_S
    while not (run.progress.exists() and run.read_progress().step >= STOP_AFTER):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    out = proc.communicate(timeout=TIMEOUT_S)[0]
    assert proc.returncode == 75, out[-3000:]
    meta, _ = checkpoint.read_meta(run.checkpoint)
    stopped = meta["state"]
    assert stopped["epoch"] == 0 and stopped["step"] >= STOP_AFTER
    assert stopped["position"] == stopped["step"] * 2 * BATCH and stopped["segments"] == [[0, stopped["position"], 2]]

    # Another batch size would skip and repeat images: rank 0 refuses, and shares its refusal through
    # the elastic sync, so rank 1 stops with the same line instead of training on without it.
    written = run.checkpoint.read_bytes()
    proc = launch(tmp_path, "localhost 127.0.0.1", "1(x2)", "--resume", "--batch-size", str(BATCH // 2))
    out = proc.communicate(timeout=TIMEOUT_S)[0]
    refusals = [line for line in out.splitlines()
                if "alexnet.train: error:" in line and f"resume with --batch-size {BATCH} as" in line]
    assert proc.returncode != 0 and sorted(line[:3] for line in refusals) == ["[0]", "[1]"], out[-3000:]
    assert run.checkpoint.read_bytes() == written

    proc = launch(tmp_path, "localhost", "1", "--resume")
    out = proc.communicate(timeout=TIMEOUT_S)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "--network-interface lo" in out.splitlines()[0]
    summary = run.read_summary()
    assert summary.world_size == 1 and summary.resets == ()
    # One rank took up the epoch at the image where the two stopped: every image of both epochs once.
    assert summary.images_trained == 2 * SAMPLES
    assert [e.resumed_at_step for e in summary.epochs] == [stopped["step"], None]
    # Counted apart from the loop's records: what the three processes were fed, against the dataset.
    images = dataset_digests(data.split(data.synthetic_arrays(SAMPLES, 67), 32, SAMPLES).x_train)
    assert trained_digests(tmp_path / "samples") == {0: images, 1: images}
    assert len(list((tmp_path / "samples").iterdir())) == 3
