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
