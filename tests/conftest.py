"""Shared test helpers: run the toolkit's CLIs as real subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def cli_env(**extra) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def run_module(module: str, *args, cwd=None, timeout=900, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, env=cli_env(**env))


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    assert (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(), \
        "Fashion-MNIST is missing: scripts/setup.sh installs dataset-fashion-mnist"
    return FASHION_MNIST


def summary_for(dataset: str = "fashion_mnist", **overrides):
    """A minimal, valid TrainSummary, as a training run on `dataset` would write it (for tests that
    need a run directory beside a model without training one)."""
    from toolkit.constants import CLASS_NAMES
    from toolkit.runs import ModelInput, RankRecord, TrainSummary, TrainThroughput

    fields = dict(
        test_accuracy=0.5, test_loss=1.0, test_images=64, world_size=1, precision="float32", allreduce="none",
        parameters=1, steps_per_epoch=1, images_trained=32,
        throughput=TrainThroughput(None, (), 0, 1, 32), epochs=(),
        ranks=(RankRecord(0, "localhost", "CPU", 32, 0, 0, 0),), class_names=CLASS_NAMES[dataset],
        input=ModelInput((28, 28, 1), "uint8", "in model"), config={"dataset": dataset, "batch_size": 32},
        environment={})
    fields.update(overrides)
    return TrainSummary(**fields)
