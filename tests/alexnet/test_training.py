"""Real training runs: Horovod with 2 ranks over Gloo, mixed precision, resume, SIGTERM."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alexnet import checkpoint, data
from tests.conftest import ROOT, cli_env, run_module
from toolkit.runs import RunDir, TrainSummary

HOROVODRUN = str(Path(sys.executable).with_name("horovodrun"))
SMALL = ["--image-size", "67", "--train-samples", "1024", "--validation-samples", "256", "--test-samples", "512",
         "--batch-size", "32", "--no-progress", "--seed", "3"]


def summary(out: Path) -> TrainSummary:
    return RunDir(out).read_summary()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_with_gloo_on_real_fashion_mnist(tmp_path, fashion_mnist_dir):
    # Each rank runs in its own directory with a relative --output-dir: whatever rank 1
    # writes lands in rank1/, which must stay empty.
    wrapper = tmp_path / "rank-cwd.sh"
    wrapper.write_text(f'#!/bin/sh\ncd "{tmp_path}/rank$HOROVOD_RANK" && exec "{sys.executable}" -m alexnet.train "$@"\n')
    wrapper.chmod(0o755)
    for rank in (0, 1):
        (tmp_path / f"rank{rank}").mkdir()
    result = subprocess.run(
        [HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", str(wrapper), "--dataset", "fashion_mnist",
         "--image-size", "67", "--train-samples", "8000", "--epochs", "2", "--output-dir", "out", "--no-progress"],
        capture_output=True, text=True, timeout=1200, env=cli_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = tmp_path / "rank0" / "out"
    s = summary(out)
    assert s.world_size == 2 and s.allreduce == "gloo"
    assert s.test_accuracy >= 0.75, s.epochs
    assert s.test_images == 10000
    # Both ranks ended with bit-identical trainable weights.
    assert [r.rank for r in s.ranks] == [0, 1] and len({r.weights_sha256_63 for r in s.ranks}) == 1
    assert all(r.device == "CPU" and r.hostname for r in s.ranks)
    # Each rank trained on its own shard: disjoint, together the whole training set.
    for rank in (0, 1):
        expected = data.shard_indices(8000, rank, 2)
        assert s.ranks[rank].images == len(expected) == 4000
        assert s.ranks[rank].first_index == rank
    assert s.ranks[0].indices_sha256_63 != s.ranks[1].indices_sha256_63
    assert s.images_per_second > 0 and s.throughput.per_rank(2) > 0
    assert [e.epoch for e in s.epochs] == [1, 2]
    # Only rank 0 wrote files, and only rank 0 printed.
    assert list((tmp_path / "rank1").iterdir()) == []
    assert {p.name for p in out.iterdir()} == {"model.keras", "checkpoint.npz", "summary.json", "samples.png",
                                               "tensorboard"}
    runs = list((out / "tensorboard").iterdir())
    assert len(runs) == 1 and sorted(p.name for p in runs[0].iterdir()) == ["train", "validation"]
    assert all(len(list((runs[0] / k).iterdir())) == 1 for k in ("train", "validation"))
    rank1_lines = [x for x in (result.stdout + result.stderr).splitlines() if x.startswith("[1]")]
    assert not any("epoch" in x or "AlexNet" in x for x in rank1_lines)


@pytest.mark.slow
@pytest.mark.parametrize("policy,sizes", [
    # float16 has no fast CPU kernels (emulated: ~1 img/s here), so its run is tiny: 4 steps
    # per epoch over the same 32 images; the second pass must fit them better than the first.
    ("mixed_float16", ["--train-samples", "32", "--batch-size", "8", "--validation-samples", "16",
                       "--test-samples", "16"]),
    ("mixed_bfloat16", ["--train-samples", "256", "--validation-samples", "64", "--test-samples", "64"]),
])
def test_short_run_lowers_the_loss_in_each_mixed_policy(tmp_path, fashion_mnist_dir, policy, sizes):
    result = run_module("alexnet.train", *SMALL, *sizes, "--epochs", "2", "--precision", policy,
                        "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(tmp_path)
    assert s.precision == policy
    assert s.epochs[1].loss < s.epochs[0].loss
    assert np.isfinite(s.test_loss)


def test_float16_uses_loss_scaling_and_bfloat16_does_not():
    import keras

    from alexnet.config import TrainConfig
    from alexnet.training import make_optimizer

    assert isinstance(make_optimizer(TrainConfig(), 1, 10, "mixed_float16"), keras.optimizers.LossScaleOptimizer)
    assert isinstance(make_optimizer(TrainConfig(), 1, 10, "mixed_bfloat16"), keras.optimizers.SGD)


# Resumed runs repeat the same float operations in the same order (same data order, restored
# optimizer slots, BatchNorm statistics and dropout RNG), so on one CPU they match to the last
# bit in practice; the tolerance only absorbs oneDNN picking another kernel for a new process.
RESUME_RTOL = 1e-5


def assert_same_epochs(a, b):
    assert [e.epoch for e in a] == [e.epoch for e in b]
    for ea, eb in zip(a, b):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert getattr(eb, key) == pytest.approx(getattr(ea, key), rel=RESUME_RTOL), (key, ea, eb)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fashion_mnist_dir):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = run_module("alexnet.train", *SMALL, "--epochs", "2", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return summary(out)


@pytest.mark.slow
def test_stopped_after_epoch_one_and_resumed_matches_uninterrupted(tmp_path, uninterrupted):
    first = run_module("alexnet.train", *SMALL, "--epochs", "1", "--output-dir", tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_module("alexnet.train", *SMALL, "--epochs", "2", "--resume", "--output-dir", tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr
    s = summary(tmp_path)
    assert_same_epochs(uninterrupted.epochs, s.epochs)
    assert s.test_accuracy == pytest.approx(uninterrupted.test_accuracy, rel=RESUME_RTOL)


@pytest.mark.slow
def test_sigterm_mid_epoch_leaves_a_checkpoint_that_resumes_exactly(tmp_path, uninterrupted):
    proc = subprocess.Popen([sys.executable, "-m", "alexnet.train", *SMALL, "--epochs", "2", "--log-every", "1",
                             "--output-dir", str(tmp_path)], cwd=ROOT, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (tmp_path / "tensorboard").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(4)  # well into epoch 1's 32 steps
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 75, stderr[-3000:]
    assert "stopped by SIGTERM" in stderr and "run again with --resume" in stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no half-written files
    meta, _ = checkpoint.read_meta(tmp_path / checkpoint.FILENAME)
    assert meta["state"]["epoch"] == 0 and 0 < meta["state"]["step"] < 32
    assert not (tmp_path / "summary.json").exists()
    resumed = run_module("alexnet.train", *SMALL, "--epochs", "2", "--resume", "--output-dir", tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    s = summary(tmp_path)
    assert s.epochs[0].resumed_at_step == meta["state"]["step"]
    assert_same_epochs(uninterrupted.epochs, s.epochs)


def test_sigterm_handler_is_installed_for_both_signals():
    from alexnet.training import STOP_SIGNALS, StopFlag

    flag = StopFlag()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag.is_set() and flag.signal_name == "SIGUSR1"
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
