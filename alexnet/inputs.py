"""What one rank trains and evaluates on, prepared from a `TrainConfig`.

The training loop should not know where images come from, how the set is split, how a
rank's shard is cut or whether the host preprocesses; it asks for an epoch's batches:

    feed = inputs.prepare(cfg, world)        # loads, splits, sizes the epoch; refuses bad input
    steps, batches = feed.rest_of_epoch(epoch, step, position)
    for images, labels in batches: ...
    feed.eval_batches(feed.splits.x_val, feed.splits.y_val)
    feed = feed.resharded(world)             # elastic: after the world changed size

Two ways to deal the images to ranks. A fixed world: each rank trains its own shard (every
size-th image), shuffled each epoch by (seed, epoch, rank); the epoch stands at a step. Elastic
(`--elastic`): all ranks walk one global order of the epoch's images, each step taking the next
`ranks x batch` of them; the epoch stands at a position (images trained, over all ranks), which
a world of any size continues from exactly.

Everything here that can refuse input runs before the run writes its first file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from alexnet import data
from alexnet.config import TrainConfig
from toolkit.cli import UsageError
from toolkit.constants import CLASS_NAMES

if TYPE_CHECKING:
    from alexnet.distributed import World

# Evaluation keeps no activations for backprop, so it takes bigger batches than training.
EVAL_BATCH_FACTOR = 4


@dataclass(frozen=True)
class Feed:
    """A rank's view of the dataset: the splits, its shard's batches, the steps in an epoch."""

    splits: data.Splits
    class_names: tuple[str, ...]
    native_shape: tuple[int, int, int]   # the images as stored, which the model takes when it preprocesses
    steps: int                           # per epoch, the same on every rank (elastic: at this world size)
    batch_size: int                      # per rank
    seed: int
    rank: int
    size: int
    host_preprocess_size: int | None     # the tutorial's host-side resize target, or None
    elastic: bool = False                # one global order per epoch, read from a position (see above)
    steps_cap: int | None = None         # --steps-per-epoch (fixed worlds only)

    def rest_of_epoch(self, epoch: int, step: int, position: int):
        """(steps left, this rank's batches for them) in `epoch`, where `step` steps were done (a
        fixed world) or `position` images of the epoch's order were trained (elastic)."""
        if not self.elastic:
            return self.steps - step, self.train_batches(epoch, step).take(self.steps - step)
        n = len(self.splits.x_train)
        share = data.elastic_share(n, self.seed, epoch, position, self.batch_size, self.rank, self.size)
        return len(share) // self.batch_size, data.batches(self.splits.x_train, self.splits.y_train, share,
                                                           self.batch_size, self.host_preprocess_size)

    def train_batches(self, epoch: int, start_step: int = 0):
        """This rank's batches of `epoch` from `start_step` on (a resumed epoch skips what it trained)."""
        return data.train_pipeline(self.splits.x_train, self.splits.y_train, self.batch_size, self.seed, epoch,
                                   self.rank, self.size, start_step, self.host_preprocess_size)

    def shard(self) -> np.ndarray:
        """The images this rank trains in an epoch: its fixed shard, or (elastic, where shares change
        with every epoch and world) its share of a whole first epoch at the current world size."""
        n = len(self.splits.x_train)
        if self.elastic:
            return data.elastic_share(n, self.seed, 0, 0, self.batch_size, self.rank, self.size)
        return data.shard_indices(n, self.rank, self.size)

    def resharded(self, world: "World") -> "Feed":
        """This feed for a rank of another world (an elastic reset)."""
        return dataclasses.replace(self, rank=world.rank, size=world.size,
                                   steps=_steps(len(self.splits.x_train), self.batch_size, world.size, self.steps_cap))

    def eval_batches(self, x, y):
        """This rank's share of an evaluation set: every image once over all ranks."""
        return data.eval_pipeline(x, y, self.batch_size * EVAL_BATCH_FACTOR, self.rank, self.size,
                                  self.host_preprocess_size)


def prepare(cfg: TrainConfig, world: "World") -> Feed:
    if cfg.dataset == "synthetic":
        if cfg.train_samples is None:
            raise ValueError("synthetic data needs train_samples (TrainConfig refuses it without)")
        arrays = data.synthetic_arrays(cfg.train_samples, cfg.image_size, seed=cfg.seed)
    else:
        arrays = data.load_arrays(cfg.dataset, cfg.data_dir)
    splits = data.split(arrays, cfg.validation_samples, cfg.train_samples, cfg.test_samples)
    steps = _steps(len(splits.x_train), cfg.batch_size, world.size, cfg.steps_per_epoch)
    if steps < 1:
        raise UsageError(f"{len(splits.x_train)} training images make no full batch of {cfg.batch_size} "
                         f"per rank on {world.size} ranks: lower --batch-size or raise --train-samples")
    return Feed(splits=splits, class_names=CLASS_NAMES[cfg.dataset], native_shape=arrays.image_shape,
                steps=steps, batch_size=cfg.batch_size, seed=cfg.seed, rank=world.rank, size=world.size,
                host_preprocess_size=cfg.image_size if cfg.host_preprocess else None, elastic=cfg.elastic,
                steps_cap=cfg.steps_per_epoch)


def _steps(n: int, batch_size: int, size: int, cap: int | None) -> int:
    """Steps in an epoch of n images (a whole one, for elastic runs): the same on every rank."""
    steps = data.steps_per_epoch(n, batch_size, size)
    return min(steps, cap) if cap else steps
