"""Elastic training across the 3 nodes of the local cluster: a node's ranks are killed mid-epoch and
the other two go on from their last commit (`python -m slurm.launch --elastic`, `alexnet.train --elastic`).

    .venv/bin/pytest tests/cluster/test_elastic_training.py -m multinode

The job is the batch script `slurm-submit train --elastic` renders, cut to what this test needs
(no requeue): `python -m slurm.launch --elastic ... -- python -m alexnet.train --elastic ...`.
Real Fashion-MNIST at 67 px, 1,536 training images, one epoch: 32 steps of 3 x 16 before the loss,
a commit every 4 steps. node3 stays up (its ranks are killed, not the node), and --rejoin-after 0
keeps it out, so the run must end on node1 and node2.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.cluster.test_multinode_training import TRAIN, rank_processes
from toolkit.runs import RunDir

pytestmark = [pytest.mark.multinode, pytest.mark.slurm, pytest.mark.slow]

BATCH, COMMIT_EVERY, TRAIN_SAMPLES = 16, 4, 1536
ELASTIC_TRAIN = (*TRAIN, "--epochs", "1", "--elastic", "--commit-every", str(COMMIT_EVERY), "--log-every", "2")
KILL_AT_STEP = 10          # of 32: past two commits, well before the epoch's end
JOB_TIMEOUT_S = 900


def batch_script(workdir: Path) -> Path:
    script = workdir / "elastic.sbatch"
    script.write_text("\n".join([
        "#!/bin/bash",
        "#SBATCH --job-name=elastic --nodes=3 --ntasks-per-node=1 --cpus-per-task=1 --time=20:00",
        f"#SBATCH --output={workdir}/elastic-%j.out --error={workdir}/elastic-%j.err",
        f"source {sys.prefix}/bin/activate",
        "export TF_CPP_MIN_LOG_LEVEL=2",
        "exec python -m slurm.launch --launcher horovodrun --elastic --min-np 1 --rejoin-after 0 -- "
        f"python -m alexnet.train {' '.join(ELASTIC_TRAIN)}",
    ]) + "\n")
    return script


def wait_for_step(cluster, job_id: str, run: RunDir, step: int) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        assert cluster.job(job_id)["job_state"] in {"PENDING", "RUNNING"}, "the job ended before the kill"
        assert time.monotonic() < deadline, f"no step {step} in {JOB_TIMEOUT_S} s"
        if run.progress.exists() and run.read_progress().step >= step:
            return
        time.sleep(0.2)


def wait_for_end(cluster, job_id: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (job := cluster.job(job_id))["job_state"] in {"PENDING", "RUNNING", "COMPLETING"}:
        assert time.monotonic() < deadline, f"job {job_id} still running after {JOB_TIMEOUT_S} s"
        time.sleep(1)
    return job


def test_killed_ranks_leave_the_others_training_from_their_last_commit(cluster, tmp_path):
    workdir = tmp_path / "job"
    workdir.mkdir()
    proc = cluster.login("sbatch", "--parsable", batch_script(workdir), cwd=workdir, check=False)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    run = RunDir(workdir / "run")
    wait_for_step(cluster, job_id, run, KILL_AT_STEP)
    victims = rank_processes(cluster, "node3")
    assert len(victims) == 1
    for process in victims:
        process.kill()
    job = wait_for_end(cluster, job_id)
    out, err = ((workdir / f"elastic-{job_id}.{kind}").read_text() for kind in ("out", "err"))
    assert job["job_state"] == "COMPLETED", f"{job['job_state']}\n{out[-3000:]}\n{err[-3000:]}"
    assert "horovodrun -np 3 --min-np 1 --host-discovery-script" in out

    summary = run.read_summary()
    # It finished on the survivors, each with the same weights, bit for bit.
    assert [(r.rank, r.hostname) for r in summary.ranks] == [(0, "node1"), (1, "node2")]
    assert len({r.weights_sha256_63 for r in summary.ranks}) == 1
    [reset] = summary.resets
    assert (reset.epoch, reset.reason, reset.ranks_before, reset.ranks_after, reset.hosts) == (
        1, "rank lost", 3, 2, ("node1", "node2"))
    # Rolled back to the last commit: at most one commit interval of work is trained again, and
    # every image of the epoch up to the commit was trained by exactly one kept step.
    assert KILL_AT_STEP * 3 * BATCH <= reset.failed_at
    assert 0 < reset.rolled_back_images == reset.failed_at - reset.resumed_at <= COMMIT_EVERY * 3 * BATCH
    assert reset.resumed_at % (COMMIT_EVERY * 3 * BATCH) == 0
    assert (reset.lost_images, reset.repeated_images) == (0, 0)
    assert reset.seconds > 0
    # The two went on from the commit's image to the epoch's end (less than one 2-rank step left over).
    assert TRAIN_SAMPLES - 2 * BATCH < summary.images_trained <= TRAIN_SAMPLES
    assert summary.epochs[0].resumed_at_step == reset.resumed_at // (3 * BATCH)
    assert not any(rank_processes(cluster, node) for node in cluster.compute_nodes)
