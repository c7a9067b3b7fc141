"""What the tests that run real training share: sizes, the horovodrun path, exact-resume checks."""
from __future__ import annotations

import collections
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
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


def trained_digests(log_dir: Path) -> dict[int, collections.Counter]:
    """Per epoch, how often each image digest was trained, from every rank's --log-samples file."""
    epochs: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for path in log_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            step = json.loads(line)
            epochs[step["epoch"]].update(step["images"])
    return dict(epochs)


def dataset_digests(images: np.ndarray) -> collections.Counter:
    """Each image's digest, computed here from the dataset's own bytes (not by the code under test)."""
    return collections.Counter(hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=8).hexdigest()
                               for image in images)
