"""Two Horovod ranks over Gloo, looked inside: what their checkpoints hold, and exact resume.

The ranks train on shards that really differ (rank 0 gets blocky images, rank 1 noise), so
their BatchNorm statistics differ too. tests/alexnet/hvd_worker.py runs the real training
loop on each rank and records each rank's own statistics at the step a checkpoint is taken,
before the loop averages them; a checkpoint must hold their mean, never rank 0's own. The
same worker stops the run at a known step (it raises SIGUSR1 on rank 1 after N steps), so
nothing here waits on the clock.
"""
from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alexnet import checkpoint, data
from tests.alexnet.hvd_worker import read_probe
from tests.alexnet.test_data import idx_bytes
from tests.alexnet.training_runs import HOROVODRUN, RESUME_RTOL, SMALL, assert_same_epochs, summary
from tests.conftest import ROOT, cli_env

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

STEPS = 16                      # per epoch: 1024 training images / 2 ranks / batch 32
STOP_AFTER = STEPS + 4          # the stop comes mid-way through epoch 2
BATCHNORM_LAYERS = 5


@pytest.fixture(scope="module")
def shards_that_differ(tmp_path_factory) -> Path:
    """Fashion-MNIST-format files whose even training images are blocky and odd ones noise: with
    2 ranks, each rank's shard is every other image, so rank 0 sees only blocks, rank 1 only noise."""
    path = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    n = 256 + 1024  # --validation-samples (even, so shard parity is image parity) + --train-samples
    blocky = np.kron(rng.integers(0, 256, (n, 7, 7)), np.ones((4, 4), np.int64))
    noise = rng.integers(0, 256, (n, 28, 28))
    parts = {"x_train": np.where((np.arange(n) % 2 == 0)[:, None, None], blocky, noise),
             "y_train": rng.integers(0, 10, n), "x_test": noise[:512], "y_test": rng.integers(0, 10, 512)}
    for key, stem in data.FASHION_MNIST_FILES.items():
        (path / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(parts[key])))
    return path


def two_ranks(shards: Path, run: Path, *args) -> subprocess.CompletedProcess:
    """The worker on 2 ranks: outputs in run/out, each rank's statistics in run/probe."""
    (run / "probe").mkdir(parents=True)
    return subprocess.run(
        [HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, "-m", "tests.alexnet.hvd_worker",
         "--probe-dir", str(run / "probe"), *SMALL, "--data-dir", str(shards), "--epochs", "2",
         "--output-dir", str(run / "out"), *args],
        capture_output=True, text=True, timeout=1200, env=cli_env(), cwd=ROOT)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, shards_that_differ) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted")
    result = two_ranks(shards_that_differ, run)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return run


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, shards_that_differ) -> Path:
    run = tmp_path_factory.mktemp("stopped")
    result = two_ranks(shards_that_differ, run, "--signal-after-steps", str(STOP_AFTER), "--signal-rank", "1")
    # horovodrun itself exits 1 and names the first rank's own status.
    assert result.returncode == 1 and "Exit code: 75" in result.stdout + result.stderr, \
        result.stdout[-4000:] + result.stderr[-4000:]
    return run


def saved_statistics(out: Path) -> tuple[dict[str, np.ndarray], dict]:
    meta, arrays = checkpoint.read_meta(out / checkpoint.FILENAME)
    saved = {path: arrays[f"model_{i}"] for i, (path, _, _) in enumerate(meta["model"])
             if path.endswith(("/moving_mean", "/moving_variance"))}
    return saved, meta["state"]


def assert_holds_the_mean_of_the_ranks(saved: dict[str, np.ndarray], probe: Path, epoch: int, step: int):
    (rank0, at0), (rank1, at1) = (read_probe(probe / f"rank{r}.npz") for r in (0, 1))
    assert at0 == at1 == (epoch, step)
    assert sorted(saved) == sorted(rank0) == sorted(rank1) and len(saved) == 2 * BATCHNORM_LAYERS
    for name, value in saved.items():
        mean = (rank0[name].astype(np.float64) + rank1[name]) / 2
        np.testing.assert_allclose(value, mean, rtol=1e-6, err_msg=name)
        # The shards differ enough that rank 0's own values fail the same check 100x looser.
        assert not np.allclose(rank0[name], mean, rtol=1e-4), name


def test_epoch_end_checkpoint_holds_the_mean_of_the_ranks_batchnorm_statistics(uninterrupted):
    saved, state = saved_statistics(uninterrupted / "out")
    assert (state["epoch"], state["step"]) == (2, 0)
    assert_holds_the_mean_of_the_ranks(saved, uninterrupted / "probe", epoch=2, step=STEPS)


def test_mid_epoch_stop_checkpoint_holds_the_mean_of_the_ranks_batchnorm_statistics(stopped):
    saved, state = saved_statistics(stopped / "out")
    assert (state["epoch"], state["step"]) == (1, STOP_AFTER - STEPS)
    assert_holds_the_mean_of_the_ranks(saved, stopped / "probe", epoch=2, step=STOP_AFTER - STEPS)
    assert not (stopped / "out" / "summary.json").exists()


def test_stopped_mid_epoch_and_resumed_matches_uninterrupted(tmp_path, stopped, uninterrupted, shards_that_differ):
    shutil.copytree(stopped / "out", tmp_path / "out")  # the stopped run stays as it was for the test above
    result = two_ranks(shards_that_differ, tmp_path, "--resume")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    s, u = summary(tmp_path / "out"), summary(uninterrupted / "out")
    assert [e.resumed_at_step for e in s.epochs] == [None, STOP_AFTER - STEPS]
    assert_same_epochs(u.epochs, s.epochs)
    assert s.test_accuracy == pytest.approx(u.test_accuracy, rel=RESUME_RTOL)
    assert s.test_loss == pytest.approx(u.test_loss, rel=RESUME_RTOL)
    assert s.images_trained == u.images_trained
    assert len({r.weights_sha256_63 for r in s.ranks}) == 1
