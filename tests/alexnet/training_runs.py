"""What the tests that run real training share: sizes, the horovodrun path, exact-resume checks."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from toolkit.runs import RunDir, TrainSummary

HOROVODRUN = str(Path(sys.executable).with_name("horovodrun"))
SMALL = ["--image-size", "67", "--train-samples", "1024", "--validation-samples", "256", "--test-samples", "512",
         "--batch-size", "32", "--no-progress", "--seed", "3"]

# Resumed runs repeat the same float operations in the same order (same data order, restored
# optimizer slots, BatchNorm statistics and dropout RNG), so on one CPU they match to the last
# bit in practice; the tolerance only absorbs oneDNN picking another kernel for a new process
# (and, with several ranks, the rounding of BatchNorm statistics averaged at the stop).
RESUME_RTOL = 1e-5


def summary(out: Path) -> TrainSummary:
    return RunDir(out).read_summary()


def assert_same_epochs(a, b):
    assert [e.epoch for e in a] == [e.epoch for e in b]
    for ea, eb in zip(a, b):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert getattr(eb, key) == pytest.approx(getattr(ea, key), rel=RESUME_RTOL), (key, ea, eb)
