"""Jobs submitted with `python -m slurm.submit` to a real one-node SLURM (the slurm_cluster fixture).

Training runs are tiny (real Fashion-MNIST, 67 px, 2,000 images, 2 ranks on CPUs) but real:
horovodrun with Gloo inside the allocation, as on a cluster.

    .venv/bin/pytest tests/slurm -m slurm
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolkit.runs import RunDir

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY_TRAIN = ["--dataset", "fashion_mnist", "--image-size", "67", "--train-samples", "2000", "--batch-size", "32"]
TWO_CPU_RANKS = ["--gpus-per-node", "0", "--ranks-per-node", "2", "--cpus-per-task", "1"]
JOB_TIMEOUT_S = 300
HOSTILE = "x; touch PWNED $(touch PWNED) `touch PWNED` 'q\" *"


def submit(cluster, workdir: Path, *args: str, job_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    # The job activates this test run's virtual environment, wherever the job's working directory is.
    command = [sys.executable, "-m", "slurm.submit", *args, "--workdir", str(workdir), "--venv", sys.prefix,
               "--", *job_args]
    return subprocess.run(command, env=cluster.env, capture_output=True, text=True)


def submitted(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    assert job_id.isdigit(), proc.stdout
    return job_id


def status(cluster, job_id: str) -> subprocess.CompletedProcess:
    return cluster.status(job_id, "--wait", "--timeout", str(JOB_TIMEOUT_S))


def test_two_rank_training_job_completes_with_its_outputs(slurm_cluster, tmp_path):
    job_id = submitted(submit(slurm_cluster, tmp_path, "train", *TWO_CPU_RANKS, "--time", "10:00",
                              "--signal-seconds", "60", job_args=(*TINY_TRAIN, "--epochs", "1", "--output-dir", "run")))
    result = status(slurm_cluster, job_id)
    log = (tmp_path / "slurm-logs" / f"train-{job_id}.err").read_text()
    assert result.returncode == 0, result.stdout + log
    assert f"job {job_id}: COMPLETED, exit code 0:0" in result.stdout
    summary = RunDir(tmp_path / "run").read_summary()
    assert summary.world_size == 2
    assert [e.epoch for e in summary.epochs] == [1]
    assert (tmp_path / "run" / "checkpoint.npz").stat().st_size > 0
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "run" / "tensorboard").rglob("*"))
    assert (tmp_path / "slurm-logs" / f"train-{job_id}.sbatch").read_text().startswith("#!/bin/bash")
    assert "horovodrun -np 2 -H " in (tmp_path / "slurm-logs" / f"train-{job_id}.out").read_text()


def test_preempted_training_requeues_and_resumes_without_losing_or_repeating_epochs(slurm_cluster, tmp_path):
    job_id = submitted(submit(slurm_cluster, tmp_path, "train", *TWO_CPU_RANKS, "--time", "10:00",
                              "--signal-seconds", "60", job_args=(*TINY_TRAIN, "--epochs", "3", "--output-dir", "run")))
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    deadline = time.monotonic() + JOB_TIMEOUT_S
    # After epoch 1's checkpoint, so the signal lands mid-epoch 2, with every rank's handler installed.
    while not checkpoint.exists():
        assert time.monotonic() < deadline, "no checkpoint after epoch 1"
        assert slurm_cluster.job(job_id)["job_state"] in {"PENDING", "RUNNING"}
        time.sleep(0.5)
    slurm_cluster.run("scancel", "--signal=USR1", "--batch", job_id)
    result = status(slurm_cluster, job_id)
    out = (tmp_path / "slurm-logs" / f"train-{job_id}.out").read_text()
    err = (tmp_path / "slurm-logs" / f"train-{job_id}.err").read_text()
    assert result.returncode == 0, result.stdout + err
    assert f"job {job_id}: COMPLETED, exit code 0:0, restarts 1" in result.stdout
    assert "job script: run 0: preempted (SIGUSR1 with " in err
    assert "; checkpoint written; requeued (1 of at most 3) to resume from it" in err
    assert f"job {job_id} (restart 1)" in out
    assert "stopped by SIGUSR1 at epoch 2" in err
    epochs = RunDir(tmp_path / "run").read_summary().epochs
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert epochs[1].resumed_at_step and not epochs[2].resumed_at_step


def _tiny_onnx(path: Path) -> None:
    """A dynamic-batch MatMul+Relu model: enough for the array mechanics, quick to benchmark."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 10)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["probabilities"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_bench_array_job_writes_one_json_per_task(slurm_cluster, tmp_path):
    _tiny_onnx(tmp_path / "tiny.onnx")
    job_id = submitted(submit(slurm_cluster, tmp_path, "bench", "--model", "tiny.onnx", "--batch", "1,4,16",
                              "--results-dir", "results", "--cpus-per-task", "1", "--time", "10",
                              job_args=("--warmup", "1", "--min-time", "0.2", "--min-iterations", "5")))
    result = status(slurm_cluster, job_id)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count(": COMPLETED, exit code 0:0") == 3
    files = sorted((tmp_path / "results").glob("*.json"))
    assert [f.name for f in files] == [f"bench-{job_id}_{i}.json" for i in range(3)]
    for f, batch in zip(files, (1, 4, 16)):
        data = json.loads(f.read_text())
        assert data["kind"] == "throughput" and data["throughput"] > 0
        assert int(data["config"]["batch"]) == batch


def test_failed_job_reports_failed_with_its_exit_code_and_why(slurm_cluster, tmp_path):
    job_id = submitted(submit(slurm_cluster, tmp_path, "train", *TWO_CPU_RANKS, "--time", "10",
                              "--signal-seconds", "60", job_args=("--dataset", "no_such_dataset")))
    result = status(slurm_cluster, job_id)
    assert result.returncode == 1
    # The rank's usage error (exit 2), not horovodrun's generic 1.
    assert f"job {job_id}: FAILED, exit code 2:0" in result.stdout
    assert "alexnet.train: error: unknown dataset 'no_such_dataset'" in result.stdout.split("--- last")[1]


def test_hostile_text_in_every_field_stays_literal(slurm_cluster, tmp_path):
    workdir = tmp_path / HOSTILE
    workdir.mkdir()
    job_id = submitted(submit(slurm_cluster, workdir, "train", *TWO_CPU_RANKS, "--time", "10",
                              "--signal-seconds", "60", "--job-name", HOSTILE, "--log-dir", HOSTILE,
                              job_args=("--dataset", HOSTILE)))
    result = status(slurm_cluster, job_id)
    record = slurm_cluster.job(job_id)
    assert record["name"] == HOSTILE
    assert record["current_working_directory"] == str(workdir)
    logs = workdir / HOSTILE / f"train-{job_id}"
    # The trainer got the text as one argument and rejected it as a dataset name.
    assert result.returncode == 1
    assert result.stdout.startswith(f"job {job_id}: FAILED, exit code 2:0, restarts 0, "
                                    f"stdout {logs}.out, stderr {logs}.err\n")
    err = Path(f"{logs}.err")
    assert f"alexnet.train: error: unknown dataset {HOSTILE!r}" in err.read_text()
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
