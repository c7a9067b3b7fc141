"""Elastic training across the 3 nodes of the local cluster: a node is lost mid-epoch (all its
processes killed and its network gone) and the other two go on from their last commit
(`python -m slurm.launch --elastic`, `alexnet.train --elastic`); a rank killed on a node that stays
up is tried again and rejoins.

    .venv/bin/pytest tests/cluster/test_elastic_training.py -m multinode

The job is the batch script `slurm-submit train --elastic` renders, cut to what this test needs
(no requeue): `python -m slurm.launch --elastic ... -- python -m alexnet.train --elastic ...`.
Real Fashion-MNIST at 67 px, 1,536 training images: 32 steps of 3 x 16 per epoch before the loss,
a commit every 4 steps. The lost node (--rejoin-after 0): Horovod keeps node3 out and the run ends
on node1 and node2, SLURM keeping the job alive (`--no-kill`, as `slurm-submit train --elastic`
renders it). The killed rank (--rejoin-after 1): node3 stays up, is tried again and its new rank
joins the others at a commit. Lost and repeated images are counted twice: by the loop (the resets it
records) and, apart from it, from what every rank logged it was fed (`--log-samples`, kept steps
only) against the dataset's own images.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from alexnet import data
from tests.alexnet.training_runs import dataset_digests, trained_digests
from tests.cluster.test_multinode_training import TRAIN, rank_processes
from tests.conftest import FASHION_MNIST
from toolkit.runs import ElasticReset, RunDir, TrainSummary

pytestmark = [pytest.mark.multinode, pytest.mark.slurm, pytest.mark.slow]

BATCH, COMMIT_EVERY, TRAIN_SAMPLES = 16, 4, 1536
STEPS = TRAIN_SAMPLES // (3 * BATCH)     # per epoch, on 3 ranks
JOB_TIMEOUT_S = 900


def batch_script(workdir: Path, epochs: int, rejoin_after: int) -> Path:
    train = (*TRAIN, "--epochs", str(epochs), "--elastic", "--commit-every", str(COMMIT_EVERY), "--log-every", "2",
             "--log-samples", str(workdir / "samples"))
    script = workdir / "elastic.sbatch"
    script.write_text("\n".join([
        "#!/bin/bash",
        "#SBATCH --job-name=elastic --nodes=3 --ntasks-per-node=1 --cpus-per-task=1 --time=20:00 --no-kill",
        f"#SBATCH --output={workdir}/elastic-%j.out --error={workdir}/elastic-%j.err",
        f"source {sys.prefix}/bin/activate",
        "export TF_CPP_MIN_LOG_LEVEL=2",
        f"exec python -m slurm.launch --launcher horovodrun --elastic --min-np 1 --rejoin-after {rejoin_after} -- "
        f"python -m alexnet.train {' '.join(train)}",
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


def lose_node3(cluster, workdir: Path, *, epochs: int, rejoin_after: int, at_step: int,
               whole_node: bool) -> TrainSummary:
    """Submit; at epoch 1's `at_step` kill node3 (`whole_node`, restarted once the job is over) or only
    its rank; the finished run's summary."""
    workdir.mkdir()
    proc = cluster.login("sbatch", "--parsable", batch_script(workdir, epochs, rejoin_after), cwd=workdir,
                         check=False)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    run = RunDir(workdir / "run")
    wait_for_step(cluster, job_id, run, at_step)
    if whole_node:
        cluster.kill_node("node3")
        try:
            job = wait_for_end(cluster, job_id)
        finally:
            cluster.restart_node("node3")
    else:
        [victim] = rank_processes(cluster, "node3")
        victim.kill()
        job = wait_for_end(cluster, job_id)
    out, err = ((workdir / f"elastic-{job_id}.{kind}").read_text() for kind in ("out", "err"))
    assert job["job_state"] == "COMPLETED", f"{job['job_state']}\n{out[-3000:]}\n{err[-3000:]}"
    assert "horovodrun -np 3 --min-np 1 --host-discovery-script" in out
    assert not any(rank_processes(cluster, node) for node in cluster.compute_nodes)
    summary = run.read_summary()
    assert_each_image_trained_at_most_once(workdir / "samples", summary)
    return summary


def assert_each_image_trained_at_most_once(log_dir: Path, summary: TrainSummary) -> None:
    """From the ranks' own logs: every image trained in an epoch is one of its images, none more often
    than the dataset holds it, and together they are all the images the run says it trained."""
    splits = data.split(data.load_fashion_mnist(FASHION_MNIST), validation_size=480, train_samples=TRAIN_SAMPLES)
    images = dataset_digests(splits.x_train)
    trained = trained_digests(log_dir)
    assert sorted(trained) == list(range(len(summary.epochs)))
    for epoch, counts in trained.items():
        assert not counts - images, f"epoch {epoch + 1}: {sum((counts - images).values())} trainings too many"
    assert sum(sum(counts.values()) for counts in trained.values()) == summary.images_trained


def assert_rolled_back_to_a_commit(reset: ElasticReset, at_step: int) -> None:
    """At most one commit interval of work trained again; every image of the epoch up to the commit
    trained by exactly one kept step."""
    assert (reset.epoch, reset.reason, reset.ranks_before, reset.ranks_after) == (1, "rank lost", 3, 2)
    assert at_step * 3 * BATCH <= reset.failed_at
    assert 0 < reset.rolled_back_images == reset.failed_at - reset.resumed_at <= COMMIT_EVERY * 3 * BATCH
    assert reset.resumed_at % (COMMIT_EVERY * 3 * BATCH) == 0
    assert (reset.lost_images, reset.repeated_images) == (0, 0)
    assert reset.seconds > 0


def test_a_lost_node_leaves_the_others_training_from_their_last_commit(cluster, tmp_path):
    at_step = 10     # of 32: past two commits, well before the epoch's end
    summary = lose_node3(cluster, tmp_path / "job", epochs=1, rejoin_after=0, at_step=at_step, whole_node=True)
    # It finished on the survivors, each with the same weights, bit for bit. (Horovod numbers the new
    # world's ranks as it likes: node2 may become rank 0, and then writes the outputs.)
    assert sorted(r.hostname for r in summary.ranks) == ["node1", "node2"]
    assert len({r.weights_sha256_63 for r in summary.ranks}) == 1
    [reset] = summary.resets
    assert_rolled_back_to_a_commit(reset, at_step)
    assert reset.hosts == tuple(r.hostname for r in summary.ranks)
    # The two went on from the commit's image to the epoch's end (less than one 2-rank step left over).
    assert TRAIN_SAMPLES - 2 * BATCH < summary.images_trained <= TRAIN_SAMPLES
    assert summary.epochs[0].resumed_at_step == reset.resumed_at // (3 * BATCH)


def test_a_lost_host_that_comes_back_rejoins_at_a_commit(cluster, tmp_path):
    # Horovod tries node3 again 2-3 s after its rank failed (--rejoin-after 1); its new rank joins the
    # two others at their next commit, long before the second epoch ends.
    at_step = 6
    summary = lose_node3(cluster, tmp_path / "job", epochs=2, rejoin_after=1, at_step=at_step, whole_node=False)
    assert sorted(r.hostname for r in summary.ranks) == ["node1", "node2", "node3"]
    assert len({r.weights_sha256_63 for r in summary.ranks}) == 1
    lost, *changes = summary.resets
    assert_rolled_back_to_a_commit(lost, at_step)
    assert sorted(lost.hosts) == ["node1", "node2"]
    back = changes[-1]
    assert (back.reason, back.ranks_before, back.ranks_after, back.hosts) == (
        "hosts changed", 2, 3, tuple(r.hostname for r in summary.ranks))
    # Joining at a commit costs no work: nothing rolled back, lost or trained twice.
    for change in changes:
        assert (change.rolled_back_images, change.lost_images, change.repeated_images) == (0, 0, 0)
        assert change.failed_at == change.resumed_at
