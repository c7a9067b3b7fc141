"""What a training run records about itself: throughput, each rank's shard and weights, summary.json.

Kept apart from the loop so the loop only trains; `Timing` is fed one call per step, and
`build_summary` turns the finished run into the typed `toolkit.runs.TrainSummary` that rank 0
writes (summary.json: see toolkit/runs.py for every field).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from alexnet import distributed
from alexnet.config import TrainConfig
from alexnet.inputs import Feed
from toolkit import environment
from toolkit.runs import ElasticReset, EpochRecord, ModelInput, RankRecord, TrainSummary, TrainThroughput


class Timing:
    """Images/s over intervals of `every` steps, after `warmup` steps (tracing, allocator warm-up).

    Only training steps are timed: `begin()` at each epoch's start drops the time spent in
    evaluation and checkpointing, and a partial interval at an epoch's end is discarded.
    """

    def __init__(self, batch: int, warmup: int, every: int):
        self.batch, self.warmup, self.every = batch, warmup, every
        self.steps = 0
        self.intervals: list[float] = []
        self.measured_seconds = 0.0
        self._mark: float | None = None
        self._since = 0

    def begin(self) -> None:
        self._mark = time.perf_counter() if self.steps >= self.warmup else None
        self._since = 0

    def step_done(self) -> None:
        # The loss was read on the host for this step, so the step has finished on every rank.
        self.steps += 1
        now = time.perf_counter()
        if self.steps == self.warmup:
            self._mark, self._since = now, 0
        elif self._mark is not None:
            self._since += 1
            if self._since == self.every:
                self.intervals.append(self.every * self.batch / (now - self._mark))
                self.measured_seconds += now - self._mark
                self._mark, self._since = now, 0

    def images_per_second(self) -> float | None:
        if not self.intervals:
            return None
        return len(self.intervals) * self.every * self.batch / self.measured_seconds

    def throughput(self, cfg: TrainConfig) -> TrainThroughput:
        return TrainThroughput(images_per_second=self.images_per_second(), interval_images_per_second=tuple(
            self.intervals), warmup_steps=cfg.warmup_steps, log_every=cfg.log_every, global_batch=self.batch)


def image_digest(image: np.ndarray) -> str:
    """A 64-bit digest of one image's bytes, as the model is fed it (uint8 NHWC unless --host-preprocess)."""
    return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=8).hexdigest()


class SampleLog:
    """`--log-samples DIR`: what this rank really trained, for counting coverage independently of the
    loop's own position records and of the functions that dealt the data.

    Each rank appends to DIR/HOST-PID.jsonl one line per step, {"epoch": E (0-based), "images":
    [image_digest of each image of the batch it was fed]}. Steps wait in memory until what they
    trained is kept: a checkpoint, or (--elastic) a commit. Steps a reset rolls back are dropped,
    never written, and a rank that dies takes its unkept steps with it, so the files of all ranks
    (and of resumed runs) hold each kept step once: an epoch's digests are the dataset's, each once,
    when no image was lost or repeated.
    """

    def __init__(self, directory: str | None):
        self.path = Path(directory) / f"{socket.gethostname()}-{os.getpid()}.jsonl" if directory else None
        self.pending: list[str] = []

    def step(self, epoch: int, images) -> None:
        if self.path is not None:
            digests = [image_digest(image) for image in np.asarray(images)]
            self.pending.append(json.dumps({"epoch": epoch, "images": digests}) + "\n")

    def keep(self) -> None:
        """What was trained since the last keep is part of the kept state now: write it."""
        if self.path is None or not self.pending:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.writelines(self.pending)
            f.flush()
            os.fsync(f.fileno())
        self.pending = []

    def drop(self) -> None:
        """What was trained since the last keep was rolled back (an elastic reset)."""
        self.pending = []


def weights_digest(model) -> int:
    """A 63-bit digest of the trainable weights' bytes: equal across ranks iff bit-identical."""
    h = hashlib.sha256()
    for v in model.trainable_variables:
        h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def index_digest(indices: np.ndarray) -> int:
    return int.from_bytes(hashlib.sha256(np.sort(indices).astype(np.int64).tobytes()).digest()[:8], "little") >> 1


def rank_records(feed: Feed, world: distributed.World, model) -> tuple[RankRecord, ...]:
    """What each rank held and ran on, gathered so rank 0 can record every rank (a collective)."""
    idx = feed.shard()
    mine = RankRecord(rank=world.rank, hostname=socket.gethostname(), device=world.device,
                      images=len(idx), indices_sha256_63=index_digest(idx),
                      first_index=int(idx[0]) if len(idx) else -1, weights_sha256_63=weights_digest(model))
    return tuple(distributed.gather_objects(mine))


def model_input(cfg: TrainConfig, model) -> ModelInput:
    """What the saved model expects, in words a user of the ONNX or Keras file needs."""
    tensor = model.inputs[0]
    if cfg.host_preprocess:
        preprocessing = "none (host-side standardise + resize already applied)"
    else:
        preprocessing = (f"in model: per-image standardisation, grey->RGB, resize to "
                         f"{cfg.image_size}x{cfg.image_size}; feed raw uint8 NHWC")
    return ModelInput(shape=tuple(tensor.shape[1:]), dtype=str(tensor.dtype), preprocessing=preprocessing)


def build_summary(cfg: TrainConfig, world: distributed.World, feed: Feed, model, policy: str, *,
                  history: Sequence[dict], images_trained: int, test: dict, timing: Timing,
                  ranks: tuple[RankRecord, ...], resets: tuple[ElasticReset, ...] = ()) -> TrainSummary:
    return TrainSummary(
        test_accuracy=test["accuracy"], test_loss=test["loss"], test_images=test["images"],
        world_size=world.size, precision=policy, allreduce=world.allreduce, parameters=model.count_params(),
        steps_per_epoch=feed.steps, images_trained=images_trained, throughput=timing.throughput(cfg),
        epochs=tuple(EpochRecord(**record) for record in history), ranks=ranks,
        class_names=tuple(feed.class_names), input=model_input(cfg, model), config=cfg.to_dict(),
        environment=environment.collect(
            world_size=world.size, tensorflow_devices=[d.name for d in tf.config.list_logical_devices()]),
        resets=resets)
