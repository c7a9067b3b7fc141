"""What one rank trains and evaluates on, prepared from a `TrainConfig`.

The training loop should not know where images come from, how the set is split, how a
rank's shard is cut or whether the host preprocesses; it asks for an epoch's batches:

    feed = inputs.prepare(cfg, world)        # loads, splits, sizes the epoch; refuses bad input
    for images, labels in feed.train_batches(epoch, start_step).take(feed.steps - start_step): ...
    feed.eval_batches(feed.splits.x_val, feed.splits.y_val)

Everything here that can refuse input runs before the run writes its first file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    steps: int                           # per epoch, the same on every rank
    batch_size: int                      # per rank
    seed: int
    rank: int
    size: int
    host_preprocess_size: int | None     # the tutorial's host-side resize target, or None

    def train_batches(self, epoch: int, start_step: int = 0):
        """This rank's batches of `epoch` from `start_step` on (a resumed epoch skips what it trained)."""
        return data.train_pipeline(self.splits.x_train, self.splits.y_train, self.batch_size, self.seed, epoch,
                                   self.rank, self.size, start_step, self.host_preprocess_size)

    def eval_batches(self, x, y):
        """This rank's share of an evaluation set: every image once over all ranks."""
        return data.eval_pipeline(x, y, self.batch_size * EVAL_BATCH_FACTOR, self.rank, self.size,
                                  self.host_preprocess_size)


def prepare(cfg: TrainConfig, world: "World") -> Feed:
    if cfg.dataset == "synthetic":
        arrays = data.synthetic_arrays(cfg.train_samples, cfg.image_size, seed=cfg.seed)
    else:
        arrays = data.load_arrays(cfg.dataset, cfg.data_dir)
    splits = data.split(arrays, cfg.validation_samples, cfg.train_samples, cfg.test_samples)
    steps = data.steps_per_epoch(len(splits.x_train), cfg.batch_size, world.size)
    if cfg.steps_per_epoch:
        steps = min(steps, cfg.steps_per_epoch)
    if steps < 1:
        raise UsageError(f"{len(splits.x_train)} training images make no full batch of {cfg.batch_size} "
                         f"per rank on {world.size} ranks: lower --batch-size or raise --train-samples")
    return Feed(splits=splits, class_names=CLASS_NAMES[cfg.dataset], native_shape=arrays.image_shape,
                steps=steps, batch_size=cfg.batch_size, seed=cfg.seed, rank=world.rank, size=world.size,
                host_preprocess_size=cfg.image_size if cfg.host_preprocess else None)
