"""Real training runs: Horovod with 2 ranks over Gloo, mixed precision, resume, SIGTERM."""
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from alexnet import checkpoint, data
from tests.alexnet.training_runs import (
    HOROVODRUN,
    RESUME_RTOL,
    SMALL,
    assert_same_epochs,
    dataset_digests,
    summary,
    trained_digests,
)
from tests.conftest import ROOT, cli_env, run_module
from toolkit.runs import RunDir, TrainProgress


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_with_gloo_on_real_fashion_mnist(tmp_path, fashion_mnist_dir):
    # Each rank runs in its own directory with a relative --output-dir: whatever rank 1
    # writes lands in rank1/, which must stay empty.
    wrapper = tmp_path / "rank-cwd.sh"
    wrapper.write_text(f'#!/bin/sh\ncd "{tmp_path}/rank$HOROVOD_RANK" && '
                       f'exec "{sys.executable}" -m alexnet.train "$@"\n')
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
    assert {p.name for p in out.iterdir()} == {"model.keras", "checkpoint.npz", "summary.json", "progress.json",
                                               "samples.png", "tensorboard"}
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
    result = run_module("alexnet.train", *SMALL, *sizes, "--epochs", "2", "--precision", policy, "--device", "cpu",
                        "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(tmp_path)
    assert s.precision == policy and s.config["device"] == "cpu" and [r.device for r in s.ranks] == ["CPU"]
    assert s.epochs[1].loss < s.epochs[0].loss
    assert np.isfinite(s.test_loss)


def test_float16_uses_loss_scaling_and_bfloat16_does_not():
    import keras

    from alexnet.config import TrainConfig
    from alexnet.training import make_optimizer, make_schedule

    schedule = make_schedule(TrainConfig(), 1, 10)
    assert isinstance(make_optimizer(TrainConfig(), schedule, "mixed_float16"), keras.optimizers.LossScaleOptimizer)
    assert isinstance(make_optimizer(TrainConfig(), schedule, "mixed_bfloat16"), keras.optimizers.SGD)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fashion_mnist_dir):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = run_module("alexnet.train", *SMALL, "--epochs", "2", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_progress_file_ends_at_the_last_step_of_the_last_epoch(uninterrupted):
    s = summary(uninterrupted)
    progress = RunDir(uninterrupted).read_progress()
    assert (progress.epoch, progress.epochs, progress.step, progress.steps_per_epoch, progress.images_trained) == (
        2, 2, 32, 32, s.images_trained)
    assert progress.loss == pytest.approx(s.epochs[-1].loss) and progress.updated


@pytest.mark.slow
def test_stopped_after_epoch_one_and_resumed_matches_uninterrupted(tmp_path, uninterrupted):
    first = run_module("alexnet.train", *SMALL, "--epochs", "1", "--output-dir", tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_module("alexnet.train", *SMALL, "--epochs", "2", "--resume", "--output-dir", tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stderr
    s, u = summary(tmp_path), summary(uninterrupted)
    assert_same_epochs(u.epochs, s.epochs)
    assert s.test_accuracy == pytest.approx(u.test_accuracy, rel=RESUME_RTOL)


def wait_for_step(proc: subprocess.Popen, run: RunDir, step: int, timeout: float = 600) -> TrainProgress:
    """The chief's progress.json once it shows `step` of epoch 1 or later: the run's own progress,
    not the clock, decides when a test signals it (the timeout only stops a hung run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = run.read_progress()
        if progress is not None and (progress.epoch, progress.step) >= (1, step):
            return progress
        try:
            proc.wait(timeout=0.01)  # returns early only if the run ended before that step
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"training exited with {proc.returncode} before step {step}")
    raise AssertionError(f"no step {step} in {run.progress} after {timeout} s")


@pytest.mark.slow
def test_sigterm_mid_epoch_leaves_a_checkpoint_that_resumes_exactly(tmp_path, uninterrupted):
    out, log_path = tmp_path / "out", tmp_path / "train.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "alexnet.train", *SMALL, "--epochs", "2", "--log-every", "1",
                                 "--output-dir", str(out)], cwd=ROOT, env=cli_env(), stdout=log,
                                stderr=subprocess.STDOUT)
        signalled_at = wait_for_step(proc, RunDir(out), 3).step
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    stderr = log_path.read_text()
    assert proc.returncode == 75, stderr[-3000:]
    assert "stopped by SIGTERM" in stderr and "run again with --resume" in stderr
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no half-written files
    meta, _ = checkpoint.read_meta(out / checkpoint.FILENAME)
    stopped_at = meta["state"]["step"]
    assert meta["state"]["epoch"] == 0 and signalled_at <= stopped_at < 32
    assert RunDir(out).read_progress().step == stopped_at
    assert not (out / "summary.json").exists()
    resumed = run_module("alexnet.train", *SMALL, "--epochs", "2", "--resume", "--output-dir", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    s = summary(out)
    assert s.epochs[0].resumed_at_step == stopped_at
    assert_same_epochs(summary(uninterrupted).epochs, s.epochs)


def test_sigterm_handler_is_installed_for_both_signals():
    from alexnet.preemption import STOP_SIGNALS, StopFlag

    flag = StopFlag()
    try:
        signal.raise_signal(signal.SIGUSR1)
        assert flag.is_set() and flag.signal_name == "SIGUSR1"
        assert flag.reason() == "stopped by SIGUSR1"
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)


SYNTHETIC = ["--dataset", "synthetic", "--train-samples", "256", "--validation-samples", "32", "--test-samples", "32",
             "--image-size", "67", "--batch-size", "8", "--epochs", "1", "--no-progress", "--seed", "0"]


@pytest.mark.slow
def test_a_mid_epoch_stop_resumes_only_as_dealt_and_then_trains_every_image_once(tmp_path):
    out, log = tmp_path / "out", tmp_path / "samples"
    # The worker signals itself after 3 of the epoch's 32 steps: a mid-epoch checkpoint, exit 75.
    stopped = run_module("tests.alexnet.hvd_worker", "--probe-dir", tmp_path, "--signal-after-steps", "3",
                         *SYNTHETIC, "--output-dir", out, "--log-samples", log)
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    written = (out / checkpoint.FILENAME).read_bytes()
    for change, fix in ((["--batch-size", "16"], "resume with --batch-size 8 as the checkpoint was written"),
                        (["--elastic"], "resume without --elastic as the checkpoint was written")):
        refused = run_module("alexnet.train", *SYNTHETIC, *change, "--resume", "--output-dir", out)
        errors = [line for line in refused.stderr.splitlines() if line.startswith("alexnet.train: error:")]
        assert refused.returncode == 2 and len(errors) == 1, refused.stderr[-3000:]
        assert "stopped in epoch 1 after step 3" in errors[0] and fix in errors[0], errors[0]
        assert "Traceback" not in refused.stderr
    assert (out / checkpoint.FILENAME).read_bytes() == written
    resumed = run_module("alexnet.train", *SYNTHETIC, "--resume", "--output-dir", out, "--log-samples", log)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert summary(out).epochs[0].resumed_at_step == 3
    # Counted from what each process logged it was fed, against the dataset's own images.
    x_train = data.split(data.synthetic_arrays(256, 67, seed=0), 32, 256).x_train
    assert trained_digests(log) == {0: dataset_digests(x_train)}
    assert len(list(log.iterdir())) == 2   # one file per process: the stopped one and the resumed one
