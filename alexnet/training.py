"""The training loop: data-parallel over Horovod ranks, mixed precision, resumable.

`run(config, reporter_factory)` is what `python -m alexnet.train` calls; see that module for
the commands. A custom loop rather than `model.fit`, because with Keras 3 Horovod's Keras
callbacks and DistributedGradientTape do not work (see alexnet.distributed), and because a
loop makes mid-epoch checkpoints, per-rank shard accounting and exact resume straightforward.

A run's jobs, each in its own unit:
  alexnet.inputs      the data: splits, this rank's shard, an epoch's batches
  alexnet.preemption  signals -> one stop decision shared by every rank
  Learner (here)      the model and optimizer: one step, evaluation, checkpoints, the saved model
  Loop (here)         epochs and steps, in order; checkpoints at epoch ends and on a stop
  alexnet.record      throughput, what each rank held, summary.json
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import NoReturn

import keras
import numpy as np
import tensorflow as tf

from alexnet import checkpoint, data, distributed, inputs, precision, record
from alexnet.config import TrainConfig
from alexnet.model import build_alexnet
from alexnet.preemption import Preempted, StopFlag
from toolkit.files import atomic_path
from toolkit.runs import EpochRecord, TrainSummary, to_json


@keras.saving.register_keras_serializable(package="alexnet")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak` over `warmup_steps`, then constant (the tutorial's constant rate)."""

    def __init__(self, peak: float, warmup_steps: int):
        self.peak, self.warmup_steps = peak, warmup_steps

    def __call__(self, step):
        if self.warmup_steps <= 0:
            return tf.constant(self.peak, tf.float32)
        ramp = tf.cast(step + 1, tf.float32) / float(self.warmup_steps)
        return self.peak * tf.minimum(1.0, ramp)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


def make_optimizer(cfg: TrainConfig, world_size: int, steps_per_epoch: int, policy: str):
    # Horovod: the global batch grows with the ranks, so does the rate (Goyal et al. 2017),
    # ramped up over the first epochs to avoid early divergence.
    warmup = round(cfg.lr_warmup_epochs * steps_per_epoch) if world_size > 1 else 0
    schedule = WarmupSchedule(cfg.lr * world_size, warmup)
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=cfg.momentum)
    else:
        opt = keras.optimizers.Adam(schedule)
    if precision.uses_loss_scaling(policy):
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


@dataclasses.dataclass(frozen=True)
class LoopState:
    """Where the loop stands: what a checkpoint holds besides the variables, so --resume continues
    exactly (same batches, same partial metrics, same history)."""

    epoch: int = 0                                  # epochs finished
    step: int = 0                                   # steps finished in the epoch under way
    sums: tuple[float, ...] = (0.0, 0.0, 0.0)       # those steps' (loss x images, correct, images), all ranks
    history: tuple[dict, ...] = ()                  # each finished epoch's EpochRecord, as JSON
    images_seen: int = 0                            # trained on, all ranks, since the first run started

    @property
    def started(self) -> bool:
        return bool(self.epoch or self.step)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "LoopState":
        return cls(epoch=obj["epoch"], step=obj["step"], sums=tuple(obj["sums"]),
                   history=tuple(obj["history"]), images_seen=obj["images_seen"])


class Learner:
    """This rank's model and optimizer, their compiled steps, and the state ranks must agree on."""

    def __init__(self, cfg: TrainConfig, world: distributed.World, feed: inputs.Feed, policy: str):
        self.cfg, self.world, self.feed, self.policy = cfg, world, feed, policy
        self.model = self._build_model()
        self.optimizer = make_optimizer(cfg, world.size, feed.steps, policy)
        self.optimizer.build(self.model.trainable_variables)
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy()
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)

    def _build_model(self, **overrides):
        input_shape = None if self.cfg.host_preprocess else self.feed.native_shape
        return build_alexnet(len(self.feed.class_names), self.cfg.image_size, self.cfg.norm, input_shape, **overrides)

    def _train_step(self, images, labels):
        with tf.GradientTape() as tape:
            probs = self.model(images, training=True)
            loss = self.loss_fn(labels, probs)
            scaled = self.optimizer.scale_loss(loss) if hasattr(self.optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, self.model.trainable_variables)
        grads = distributed.average_gradients(grads, self.cfg.fp16_allreduce)
        self.optimizer.apply(grads, self.model.trainable_variables)
        correct = tf.reduce_sum(tf.cast(tf.argmax(probs, -1) == tf.cast(labels, tf.int64), tf.float64))
        return tf.cast(loss, tf.float64) * tf.cast(tf.shape(labels)[0], tf.float64), correct

    def _eval_step(self, images, labels):
        probs = self.model(images, training=False)
        loss = keras.losses.sparse_categorical_crossentropy(labels, probs)
        correct = tf.cast(tf.argmax(probs, -1) == tf.cast(labels, tf.int64), tf.float64)
        return tf.reduce_sum(tf.cast(loss, tf.float64)), tf.reduce_sum(correct)

    def evaluate(self, x, y) -> dict:
        """Loss and accuracy over every image of (x, y), sharded over ranks, summed exactly (a collective)."""
        sums = np.zeros(3)
        for images, labels in self.feed.eval_batches(x, y):
            loss, correct = self.eval_step(images, labels)
            sums += (loss.numpy(), correct.numpy(), len(labels))
        loss_sum, correct, n = distributed.sum_over_ranks(sums)
        return {"loss": loss_sum / n, "accuracy": correct / n, "images": int(n)}

    def learning_rate(self) -> float:
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def sync_statistics(self) -> None:
        # Horovod: moving mean/variance are updated from each rank's own shard only.
        distributed.average_variables(v for v in self.model.non_trainable_variables
                                      if v.dtype.startswith("float"))

    def restore(self, path: Path, resume: bool) -> LoopState:
        """Rank 0's checkpoint (with --resume) or a fresh start, the same on every rank (a collective)."""
        state = LoopState()
        if resume and self.world.is_chief and path.exists():
            state = LoopState.from_json(checkpoint.load(path, self.model, self.optimizer))
        state = distributed.broadcast_object(state)  # Horovod: every rank resumes at rank 0's position
        # Horovod: every rank starts from rank 0's weights and optimizer state (fresh or restored).
        distributed.broadcast_variables(list(self.model.variables) + list(self.optimizer.variables))
        return state

    def checkpoint(self, path: Path, state: LoopState) -> None:
        """Rank 0 writes every variable and `state` to `path`; a collective: every rank calls it.

        BatchNorm statistics are averaged over ranks here, whatever the reason for the checkpoint,
        so none can hold rank 0's alone. A moving average is linear in its starting value, so
        averaging mid-epoch leaves the average at the epoch's end (what an uninterrupted run
        saves) unchanged, and resuming stays exact; averaging equal values changes nothing.
        """
        self.sync_statistics()
        if self.world.is_chief:
            checkpoint.save(path, self.model, self.optimizer, state.to_json())

    def save_model(self, path: Path) -> None:
        """Save for inference: the same weights in a float32-compute copy of the model, so exporters
        and users get float32 graphs whatever precision training used."""
        with precision.global_policy("float32"):
            inference = self._build_model(name=self.model.name)
        inference.set_weights(self.model.get_weights())
        with atomic_path(path, suffix=".keras") as tmp:
            inference.save(tmp)


def _means(sums: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy) so far from (loss x images, correct, images)."""
    return sums[0] / max(sums[2], 1), sums[1] / max(sums[2], 1)


class Loop:
    """Epochs and steps in order, the same on every rank: train, stop on request, evaluate, checkpoint.

    Every rank runs every collective in the same order; `report.step` is called on every rank
    after each step's update and before anything is averaged or saved.
    """

    def __init__(self, cfg: TrainConfig, world: distributed.World, feed: inputs.Feed, learner: Learner,
                 stop: StopFlag, report):
        self.cfg, self.world, self.feed, self.learner, self.stop, self.report = cfg, world, feed, learner, stop, report
        self.timing = record.Timing(cfg.batch_size * world.size, cfg.warmup_steps, cfg.log_every)
        self.checkpoint_path = cfg.run_dir.checkpoint

    def run(self, state: LoopState) -> LoopState:
        """Train from `state` to the last epoch; raises Preempted after a stop's checkpoint."""
        while state.epoch < self.cfg.epochs:
            sums, seconds = self._train(state)
            state = self._finish_epoch(state, sums, seconds)
            # The collective doubles as the barrier that keeps ranks alive until the checkpoint is in place.
            if self.stop.on_any_rank() and state.epoch < self.cfg.epochs:
                raise Preempted(f"{self.stop.reason()} after epoch {state.epoch}; checkpoint {self.checkpoint_path}")
        return state

    def _train(self, state: LoopState) -> tuple[np.ndarray, float]:
        """The rest of the epoch under way: this rank's metric sums and the seconds it took."""
        steps, start = self.feed.steps, state.step
        # The chief carries the epoch's sums so far (over all ranks) from a checkpoint; the rest add theirs.
        sums = np.array(state.sums, np.float64) if self.world.is_chief else np.zeros(3)
        self.report.epoch_start(state.epoch, self.cfg.epochs, steps, start)
        self.timing.begin()
        began = time.perf_counter()
        batches = self.feed.train_batches(state.epoch, start).take(steps - start)
        for step, (images, labels) in enumerate(batches, start=start + 1):
            loss_sum, correct = self.learner.train_step(images, labels)
            sums += (loss_sum.numpy(), correct.numpy(), len(labels))
            self.timing.step_done()
            trained = (step - start) * self.timing.batch
            self.report.step(step, *_means(sums), state.images_seen + trained)
            if step < steps and self.stop.on_any_rank():
                self._preempt(dataclasses.replace(state, step=step, images_seen=state.images_seen + trained,
                                                  sums=tuple(distributed.sum_over_ranks(sums).tolist())))
        return sums, time.perf_counter() - began

    def _preempt(self, state: LoopState) -> NoReturn:
        self.learner.checkpoint(self.checkpoint_path, state)
        # Horovod: the other ranks wait for rank 0's checkpoint: when any rank exits, horovodrun
        # SIGTERMs the rest and SIGKILLs them 5 s later, which could cut a 233 MB write short.
        distributed.wait_for_all()
        raise Preempted(f"{self.stop.reason()} at epoch {state.epoch + 1} step {state.step}/{self.feed.steps}; "
                        f"checkpoint {self.checkpoint_path}")

    def _finish_epoch(self, state: LoopState, sums: np.ndarray, seconds: float) -> LoopState:
        """Metrics over all ranks, validation, the epoch's record and checkpoint: the state after it."""
        loss_sum, correct, n = distributed.sum_over_ranks(sums)
        self.learner.sync_statistics()  # validation must see every shard's statistics
        val = self.learner.evaluate(self.feed.splits.x_val, self.feed.splits.y_val)
        trained = (self.feed.steps - state.step) * self.timing.batch
        epoch = EpochRecord(
            epoch=state.epoch + 1, loss=loss_sum / n, accuracy=correct / n,
            val_loss=val["loss"], val_accuracy=val["accuracy"], learning_rate=self.learner.learning_rate(),
            images_per_second=trained / seconds, seconds=seconds, resumed_at_step=state.step or None)
        state = LoopState(epoch=state.epoch + 1, history=state.history + (to_json(epoch),),
                          images_seen=state.images_seen + trained)
        self.report.epoch_end(epoch)
        self.learner.checkpoint(self.checkpoint_path, state)
        return state


def run(cfg: TrainConfig, reporter_factory) -> TrainSummary | None:
    """Train as configured; rank 0 writes the outputs and gets the summary (other ranks None).
    Raises Preempted on a stop signal."""
    stop = StopFlag()
    world = distributed.init()
    with precision.global_policy(precision.detect_and_resolve(cfg.precision)) as policy:
        keras.utils.set_random_seed(cfg.seed)
        # Everything that can refuse bad input (data, model, checkpoint) runs before the first
        # file is written, so a refused run leaves nothing behind.
        feed = inputs.prepare(cfg, world)
        learner = Learner(cfg, world, feed, policy)
        state = learner.restore(cfg.run_dir.checkpoint, cfg.resume)
        if world.is_chief:
            cfg.run_dir.root.mkdir(parents=True, exist_ok=True)
            data.save_sample_grid(feed.splits.x_train, feed.splits.y_train, feed.class_names, cfg.run_dir.samples)
        loop = Loop(cfg, world, feed, learner, stop, reporter_factory(world, cfg))
        loop.report.start(learner, feed, state, cfg.run_dir.checkpoint if state.started else None)
        try:
            state = loop.run(state)
        finally:
            loop.report.close()
        return _finish(loop, state)


def _finish(loop: Loop, state: LoopState) -> TrainSummary | None:
    """Test accuracy and per-rank records (collectives), then rank 0's model and summary.json."""
    cfg, world, feed, learner = loop.cfg, loop.world, loop.feed, loop.learner
    test = learner.evaluate(feed.splits.x_test, feed.splits.y_test)
    ranks = record.rank_records(feed, world, learner.model)
    if not world.is_chief:
        return None
    summary = record.build_summary(cfg, world, feed, learner.model, learner.policy, history=state.history,
                                   images_trained=state.images_seen, test=test, timing=loop.timing, ranks=ranks)
    learner.save_model(cfg.run_dir.model)
    cfg.run_dir.write_summary(summary)
    return summary
