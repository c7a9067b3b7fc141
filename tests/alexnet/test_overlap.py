"""The overlapped all-reduce (`--allreduce overlap`): what the traced step waits for, and that it
averages to the same numbers as the grouped all-reduce on 2 Horovod ranks over Gloo.

    .venv/bin/pytest tests/alexnet/test_overlap.py -q

The 2-rank gradient check runs this file as its worker:

    horovodrun -np 2 -H localhost:2 --gloo python -m tests.alexnet.test_overlap OUT_DIR

Each rank all-reduces gradients that differ per rank, both ways, with and without fp16
compression, and writes what it got to OUT_DIR/rank<R>.npz.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alexnet import checkpoint
from alexnet.config import TrainConfig
from tests.alexnet.training_runs import HOROVODRUN, SMALL, summary
from tests.conftest import ROOT, cli_env
from toolkit.cli import UsageError

STEPS = 6
COMPRESSIONS = {"none": False, "fp16": True}
SHAPES = [(5, 5, 1, 8), (8,), (1000, 64), (64,), (64, 10), (10,)]   # conv, dense, classifier: kernels and biases


def test_an_unknown_allreduce_path_is_refused_naming_the_choices():
    with pytest.raises(UsageError, match=r"^unknown --allreduce 'ring': use one of grouped, overlap$"):
        TrainConfig(allreduce="ring")


def traced_step(overlap: bool, fp16: bool):
    """AlexNet's gradients averaged as the Learner averages them, in a traced step: the graph and,
    in layer order, each gradient's tensor and the op of the Horovod all-reduce that carries it."""
    import horovod.tensorflow as hvd
    import keras
    import tensorflow as tf

    from alexnet import distributed
    from alexnet.model import build_alexnet

    # Horovod: joined as a single rank; not distributed.init(), which also sizes TensorFlow's thread pools
    # and fails once an earlier test in this process has started TensorFlow.
    hvd.init()
    model = build_alexnet(10, 67, "batch", input_shape=(67, 67, 1))
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    seen = {}

    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        seen["grads"] = tape.gradient(loss, model.trainable_variables)
        seen["reduced"] = distributed.average_gradients(seen["grads"], fp16, overlap=overlap)
        return seen["reduced"]

    graph = tf.function(step).get_concrete_function(
        tf.TensorSpec([8, 67, 67, 1], tf.float32), tf.TensorSpec([8], tf.int32)).graph
    return graph, seen["grads"], [horovod_op(t.op) for t in seen["reduced"]]


def horovod_op(op):
    """The nearest Horovod op at or above `op` (fp16 compression casts around it)."""
    while not op.type.startswith("Horovod"):
        op = op.inputs[0].op
    return op


def ancestors(op) -> set[str]:
    """The names of every op `op` waits for (data and control inputs)."""
    seen, todo = set(), [op]
    while todo:
        current = todo.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent.name not in seen:
                seen.add(parent.name)
                todo.append(parent)
    return seen


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_overlap_reduces_each_gradient_without_waiting_for_earlier_layers(compression):
    graph, grads, reducers = traced_step(overlap=True, fp16=COMPRESSIONS[compression])
    assert all(op.type == "HorovodAllreduce" for op in reducers) and len({op.name for op in reducers}) == len(grads)
    assert not [op for op in graph.get_operations() if op.type == "HorovodGroupedAllreduce"]
    for j, reducer in enumerate(reducers):
        waits_for = ancestors(reducer)
        assert grads[j].op.name in waits_for
        # Backprop produces earlier layers' gradients later: this all-reduce must not wait for them.
        earlier = [grads[i].name for i in range(j) if grads[i].op.name in waits_for]
        assert not earlier, (grads[j].name, earlier)


def test_grouped_waits_for_every_gradient():
    """The contrast the test above relies on: the walk finds a wait where there is one."""
    _, grads, reducers = traced_step(overlap=False, fp16=False)
    assert {op.name for op in reducers} == {reducers[0].name} and reducers[0].type == "HorovodGroupedAllreduce"
    assert {g.op.name for g in grads} <= ancestors(reducers[0])


def horovodrun(*args, timeout: int) -> subprocess.CompletedProcess:
    result = subprocess.run([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, *args],
                            capture_output=True, text=True, timeout=timeout, env=cli_env(), cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.mark.slow
@pytest.mark.distributed
def test_overlap_averages_to_the_grouped_numbers_bit_for_bit_on_two_ranks(tmp_path):
    horovodrun("-m", "tests.alexnet.test_overlap", str(tmp_path), timeout=600)
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1)]
    assert sorted(ranks[0]) == sorted(ranks[1]) and len(ranks[0]) == 2 * 2 * len(SHAPES)
    for name in ranks[0]:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
        if name.startswith("overlap"):
            np.testing.assert_array_equal(ranks[0][name], ranks[0][name.replace("overlap", "grouped")], err_msg=name)
    # The ranks' inputs differ, so the check above compares averages, not copies.
    inputs = gradients_of_rank(0), gradients_of_rank(1)
    assert not np.array_equal(inputs[0][0], inputs[1][0])
    np.testing.assert_allclose(ranks[0]["grouped_none_0"], (inputs[0][0] + inputs[1][0]) / 2, rtol=1e-6)


def train(run: Path, allreduce: str) -> None:
    (run / "probe").mkdir(parents=True)
    horovodrun("-m", "tests.alexnet.hvd_worker", "--probe-dir", str(run / "probe"), *SMALL,
               "--dataset", "synthetic", "--epochs", "1", "--steps-per-epoch", str(STEPS),
               "--output-dir", str(run / "out"), "--allreduce", allreduce, timeout=1200)


@pytest.mark.slow
@pytest.mark.distributed
def test_overlap_trains_the_same_weights_as_grouped_on_two_ranks(tmp_path):
    for path in ("grouped", "overlap"):
        train(tmp_path / path, path)
    runs = {path: summary(tmp_path / path / "out") for path in ("grouped", "overlap")}
    for path, run in runs.items():
        assert run.config["allreduce"] == path
        assert len(run.ranks) == 2 and len({r.weights_sha256_63 for r in run.ranks}) == 1, path
    _, grouped = checkpoint.read_meta(tmp_path / "grouped" / "out" / checkpoint.FILENAME)
    _, overlap = checkpoint.read_meta(tmp_path / "overlap" / "out" / checkpoint.FILENAME)
    weights = [name for name in grouped if name.startswith("model_")]
    assert weights and sorted(grouped) == sorted(overlap)
    for name in weights:
        np.testing.assert_array_equal(overlap[name], grouped[name], err_msg=name)
    assert runs["overlap"].ranks[0].weights_sha256_63 == runs["grouped"].ranks[0].weights_sha256_63


def gradients_of_rank(rank: int) -> list[np.ndarray]:
    rng = np.random.default_rng(rank)
    return [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]


def worker(out: Path) -> None:
    import tensorflow as tf

    from alexnet import distributed

    world = distributed.init()
    grads = [tf.constant(g) for g in gradients_of_rank(world.rank)]
    arrays = {}
    for path in ("grouped", "overlap"):
        for compression, fp16 in COMPRESSIONS.items():
            step = tf.function(distributed.average_gradients)  # traced, as the Learner's step is
            reduced = step(grads, fp16, overlap=path == "overlap")
            arrays |= {f"{path}_{compression}_{i}": t.numpy() for i, t in enumerate(reduced)}
    np.savez(out / f"rank{world.rank}.npz", **arrays)
    distributed.wait_for_all()


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
