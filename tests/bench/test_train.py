"""`bench train`: the config's pure logic, and -np 1,2 for real under Horovod."""
import json
import os

import pytest

from bench import results
from bench.train import TrainBenchConfig, allocation_nodes, placement
from toolkit.cli import UsageError


def test_command_keeps_steps_per_rank_constant():
    config = TrainBenchConfig(nps=(1, 2), batch_size=8, steps=10, warmup_steps=2, log_every=5)
    one, two = config.command(1, "out/np1"), config.command(2, "out/np2")
    assert one[:6] == ["horovodrun", "-np", "1", "-H", "localhost:1", "--gloo"]
    assert one[one.index("--train-samples") + 1] == str(12 * 8)
    assert two[two.index("--train-samples") + 1] == str(12 * 8 * 2)
    assert two[two.index("--output-dir") + 1] == "out/np2" and "synthetic" in two


def test_ranks_go_here_or_over_the_allocations_nodes_one_each_first():
    assert placement(2, []) == "localhost:2"
    nodes = ["node1", "node2", "node3"]
    assert [placement(n, nodes) for n in (1, 2, 3, 4)] == [
        "node1:1", "node1:1,node2:1", "node1:1,node2:1,node3:1", "node1:2,node2:1,node3:1"]
    # Outside SLURM, or in a one-node allocation, everything runs here.
    assert allocation_nodes({}) == [] and allocation_nodes({"SLURM_JOB_NUM_NODES": "1"}) == []


def stand_in_scontrol(tmp_path, monkeypatch, script: str) -> None:
    """An `scontrol` on PATH that runs `script` (sh), in place of SLURM's."""
    (tmp_path / "scontrol").write_text(f"#!/bin/sh\n{script}\n")
    (tmp_path / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


def test_a_multi_node_allocation_spreads_the_ranks_over_its_nodes(tmp_path, monkeypatch):
    # Answers only the call SLURM's own scontrol would expand: `show hostnames LIST`.
    stand_in_scontrol(tmp_path, monkeypatch, '[ "$1 $2 $3" = "show hostnames node[1-2]" ] && printf "node1\\nnode2\\n"')
    nodes = allocation_nodes({"SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "node[1-2]"})
    assert nodes == ["node1", "node2"]
    assert placement(2, nodes) == "node1:1,node2:1"


def test_a_multi_node_allocation_slurm_cannot_expand_is_one_line(tmp_path, monkeypatch):
    stand_in_scontrol(tmp_path, monkeypatch, "echo 'scontrol: fatal: Could not establish a configuration source' >&2; "
                      "exit 1")
    with pytest.raises(UsageError) as raised:
        allocation_nodes({"SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "node[1-2]"})
    assert str(raised.value) == (
        "scontrol cannot expand SLURM_JOB_NODELIST 'node[1-2]' (scontrol: fatal: Could not establish a "
        "configuration source): run bench train inside a SLURM job of a working cluster (sbatch/salloc), "
        "or outside SLURM")
    with pytest.raises(UsageError, match="SLURM_JOB_NODELIST is not set: run bench train inside"):
        allocation_nodes({"SLURM_JOB_NUM_NODES": "2"})


@pytest.mark.parametrize("kwargs, message", [
    ({"nps": (0,)}, "world sizes >= 1"), ({"nps": (1, 1)}, "twice"), ({"steps": 3, "log_every": 5}, "raise --steps"),
    ({"image_size": 32}, "minimum of 67"), ({"batch_size": 0}, "--batch-size must be >= 1"),
])
def test_bad_train_options(kwargs, message):
    with pytest.raises(UsageError, match=message):
        TrainBenchConfig(**kwargs)


@pytest.mark.slow
@pytest.mark.distributed
def test_train_np_1_2_reports_efficiency(bench, tmp_path):
    out = tmp_path / "train.json"
    done = bench("train", "-np", "1,2", "--batch-size", 16, "--steps", 10, "--log-every", 5, "--warmup-steps", 3,
                 "--json", out, "--quiet", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results.load(out)
    doc = json.loads(out.read_text())
    one, two = doc["train"]
    assert (one["np"], two["np"]) == (1, 2) and one["efficiency"] == 1.0
    assert len(one["intervals"]) == 2 and all(v > 0 for v in one["intervals"] + two["intervals"])
    assert two["per_rank"]["mean"] == pytest.approx(two["total"]["mean"] / 2)
    assert two["efficiency"] == pytest.approx(two["per_rank"]["mean"] / one["per_rank"]["mean"])
