"""`bench train` inside a 2-node allocation of the local cluster: the README's scaling recipe
(`sbatch -N 3 --ntasks-per-node=1 --wrap 'bench train -np 1,2,3'`) on two of its three nodes.

    flock /tmp/alexnet-cluster.lock .venv/bin/pytest tests/cluster/test_bench_train.py

Synthetic data at 67 px, 8 images per rank and step, 2 warm-up and 5 measured steps per world size.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from bench import results
from tests.cluster.localcluster import ROOT
from toolkit.runs import RunDir

pytestmark = [pytest.mark.multinode, pytest.mark.slurm, pytest.mark.slow]

JOB_TIMEOUT_S = 900
BENCH = ("-np", "1,2", "--image-size", "67", "--batch-size", "8", "--warmup-steps", "2", "--steps", "5",
         "--log-every", "5")


def test_bench_train_in_a_two_node_allocation_spreads_the_ranks_over_its_nodes(cluster, tmp_path: Path):
    result, keep = tmp_path / "train.json", tmp_path / "runs"
    keep.mkdir()
    command = shlex.join([sys.executable, "-m", "bench", "train", *BENCH, "--keep-dir", str(keep),
                          "--json", str(result), "--quiet"])
    # PYTHONPATH: this checkout's code, in the job and (horovodrun passes the environment on) in its remote ranks.
    job_id = cluster.login("sbatch", "--parsable", "--nodes", "2", "--ntasks-per-node", "1", "--cpus-per-task", "1",
                           "--time", "20:00", f"--export=ALL,PYTHONPATH={ROOT}", "--chdir", tmp_path,
                           "--output", tmp_path / "job.out", "--error", tmp_path / "job.err",
                           "--wrap", command).stdout.strip()
    done = cluster.login(sys.executable, "-m", "slurm.submit", "status", job_id, "--wait", "--timeout",
                         str(JOB_TIMEOUT_S), check=False)
    assert f"job {job_id}: COMPLETED, exit code 0:0" in done.stdout, done.stdout
    # The allocation's nodes, as the controller recorded them (a host list such as node[1-2]), in SLURM's order.
    hosts = cluster.login("scontrol", "show", "hostnames", cluster.job(job_id)["nodes"]).stdout.split()
    assert len(hosts) == 2
    doc = results.load(result)
    assert [row.np for row in doc.train] == [1, 2]
    assert all(row.intervals and all(v > 0 for v in row.intervals) for row in doc.train)
    # Where the ranks ran, as each rank recorded it: one per node of the allocation, not both on the batch host.
    placed = {np: [r.hostname for r in RunDir(keep / f"np{np}").read_summary().ranks] for np in (1, 2)}
    assert placed == {1: hosts[:1], 2: hosts}
    assert any(note.startswith(f"ranks spread over the allocation's nodes {', '.join(hosts)}") for note in doc.notes)
