"""The training loop: data-parallel over Horovod ranks, mixed precision, resumable.

`run(config)` is what `python -m alexnet.train` calls; see that module for the commands.
A custom loop rather than `model.fit`, because with Keras 3 Horovod's Keras callbacks and
DistributedGradientTape do not work (see alexnet.distributed), and because a loop makes
mid-epoch checkpoints, per-rank shard accounting and exact resume straightforward.
"""
from __future__ import annotations

import hashlib
import signal
import socket
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from alexnet import checkpoint, data, distributed, precision
from alexnet.config import TrainConfig
from alexnet.model import build_alexnet
from toolkit import environment
from toolkit.cli import UsageError
from toolkit.constants import CLASS_NAMES
from toolkit.files import atomic_path
from toolkit.runs import EpochRecord, ModelInput, RankRecord, TrainSummary, TrainThroughput, to_json

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: stopped by a signal after writing a checkpoint; resume me
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class Preempted(Exception):
    """Training stopped on a signal; a checkpoint to resume from has been written."""


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


class StopFlag:
    """Set by SIGUSR1 (SLURM's usual pre-timeout signal) or SIGTERM; read between steps."""

    def __init__(self):
        self.event = threading.Event()
        self.signal_name = None
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


def weights_digest(model) -> int:
    """A 63-bit digest of the trainable weights' bytes: equal across ranks iff bit-identical."""
    h = hashlib.sha256()
    for v in model.trainable_variables:
        h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def index_digest(indices: np.ndarray) -> int:
    return int.from_bytes(hashlib.sha256(np.sort(indices).astype(np.int64).tobytes()).digest()[:8], "little") >> 1


class Trainer:
    def __init__(self, cfg: TrainConfig, world: distributed.World):
        self.cfg, self.world = cfg, world
        self.policy = precision.detect_and_resolve(cfg.precision)
        keras.mixed_precision.set_global_policy(self.policy)
        keras.utils.set_random_seed(cfg.seed)
        if cfg.dataset == "synthetic":
            arrays = data.synthetic_arrays(cfg.train_samples, cfg.image_size, seed=cfg.seed)
        else:
            arrays = data.load_arrays(cfg.dataset, cfg.data_dir)
        self.class_names = CLASS_NAMES[cfg.dataset]
        self.splits = data.split(arrays, cfg.validation_samples, cfg.train_samples, cfg.test_samples)
        self.native_shape = arrays.image_shape
        self.steps = data.steps_per_epoch(len(self.splits.x_train), cfg.batch_size, world.size)
        if cfg.steps_per_epoch:
            self.steps = min(self.steps, cfg.steps_per_epoch)
        if self.steps < 1:
            raise UsageError(f"{len(self.splits.x_train)} training images make no full batch of "
                             f"{cfg.batch_size} per rank on {world.size} ranks: lower --batch-size "
                             f"or raise --train-samples")
        self.model = self._build_model()
        self.optimizer = make_optimizer(cfg, world.size, self.steps, self.policy)
        self.optimizer.build(self.model.trainable_variables)
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy()
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)
        self.checkpoint_path = cfg.run_dir.checkpoint

    def _build_model(self, **overrides):
        input_shape = None if self.cfg.host_preprocess else self.native_shape
        return build_alexnet(len(self.class_names), self.cfg.image_size, self.cfg.norm, input_shape, **overrides)

    # ------------------------------------------------------------------ steps

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
        """Loss and accuracy over every image of (x, y), sharded over ranks, summed exactly."""
        sums = np.zeros(3)
        host = self.cfg.image_size if self.cfg.host_preprocess else None
        for images, labels in data.eval_pipeline(x, y, self.cfg.batch_size * 4, self.world.rank,
                                                 self.world.size, host):
            loss, correct = self.eval_step(images, labels)
            sums += (loss.numpy(), correct.numpy(), len(labels))
        loss_sum, correct, n = distributed.sum_over_ranks(sums)
        return {"loss": loss_sum / n, "accuracy": correct / n, "images": int(n)}

    def sync_batchnorm_statistics(self) -> None:
        # Horovod: moving mean/variance are updated from each rank's own shard only.
        distributed.average_variables(v for v in self.model.non_trainable_variables
                                      if v.dtype.startswith("float"))

    # ------------------------------------------------------------------ loop

    def fresh_state(self) -> dict:
        return {"epoch": 0, "step": 0, "sums": [0.0, 0.0, 0.0], "history": [], "images_seen": 0}

    def restore(self) -> dict:
        state = self.fresh_state()
        if self.cfg.resume and self.world.is_chief and self.checkpoint_path.exists():
            state = checkpoint.load(self.checkpoint_path, self.model, self.optimizer)
        state = distributed.broadcast_object(state)  # Horovod: every rank resumes at rank 0's position
        # Horovod: every rank starts from rank 0's weights and optimizer state (fresh or restored).
        distributed.broadcast_variables(list(self.model.variables) + list(self.optimizer.variables))
        return state

    def save_checkpoint(self, state: dict) -> None:
        if self.world.is_chief:
            checkpoint.save(self.checkpoint_path, self.model, self.optimizer, state)

    def should_stop(self, stop: StopFlag) -> bool:
        # Horovod: every rank must take the same decision at the same step, or the rest hang in all-reduce.
        return distributed.any_rank(stop.is_set()) if self.world.size > 1 else stop.is_set()

    def stop_for_preemption(self, state: dict, message: str) -> None:
        self.save_checkpoint(state)
        # Horovod: the other ranks wait for rank 0's checkpoint: when any rank exits, horovodrun
        # SIGTERMs the rest and SIGKILLs them 5 s later, which could cut a 233 MB write short.
        distributed.wait_for_all()
        raise Preempted(f"{message}; checkpoint {self.checkpoint_path}")

    def run(self, state: dict, stop: StopFlag, report) -> dict:
        cfg, world = self.cfg, self.world
        timing = Timing(cfg.batch_size * world.size, cfg.warmup_steps, cfg.log_every)
        for epoch in range(state["epoch"], cfg.epochs):
            start_step = state["step"]
            sums = np.array(state["sums"], np.float64) if world.is_chief else np.zeros(3)
            report.epoch_start(epoch, cfg.epochs, self.steps, start_step)
            batches = data.train_pipeline(self.splits.x_train, self.splits.y_train, cfg.batch_size, cfg.seed,
                                          epoch, world.rank, world.size, start_step,
                                          cfg.image_size if cfg.host_preprocess else None)
            epoch_start = time.perf_counter()
            timing.begin()
            step = start_step
            for step, (images, labels) in enumerate(batches.take(self.steps - start_step), start=start_step):
                loss_sum, correct = self.train_step(images, labels)
                sums += (loss_sum.numpy(), correct.numpy(), len(labels))
                timing.step_done()
                report.step(step + 1, sums[0] / max(sums[2], 1), sums[1] / max(sums[2], 1))
                if self.should_stop(stop) and step + 1 < self.steps:
                    state.update(epoch=epoch, step=step + 1, sums=distributed.sum_over_ranks(sums).tolist(),
                                 images_seen=state["images_seen"] + (step + 1 - start_step) * timing.batch)
                    self.stop_for_preemption(state, f"stopped by {stop.signal_name or 'a signal on another rank'} "
                                                    f"at epoch {epoch + 1} step {step + 1}/{self.steps}")
            epoch_seconds = time.perf_counter() - epoch_start
            loss_sum, correct, n = distributed.sum_over_ranks(sums)
            self.sync_batchnorm_statistics()
            val = self.evaluate(self.splits.x_val, self.splits.y_val)
            record = EpochRecord(
                epoch=epoch + 1, loss=loss_sum / n, accuracy=correct / n,
                val_loss=val["loss"], val_accuracy=val["accuracy"],
                learning_rate=float(keras.ops.convert_to_numpy(self.optimizer.learning_rate)),
                images_per_second=(self.steps - start_step) * timing.batch / epoch_seconds,
                seconds=epoch_seconds, resumed_at_step=start_step or None)
            state.update(epoch=epoch + 1, step=0, sums=[0.0, 0.0, 0.0],
                         history=state["history"] + [to_json(record)],
                         images_seen=state["images_seen"] + (self.steps - start_step) * timing.batch)
            report.epoch_end(record)
            self.save_checkpoint(state)
            # The collective doubles as the barrier that keeps ranks alive until the checkpoint is in place.
            if self.should_stop(stop) and epoch + 1 < cfg.epochs:
                raise Preempted(f"stopped by {stop.signal_name or 'a signal on another rank'} after epoch "
                                f"{epoch + 1}; checkpoint {self.checkpoint_path}")
        test = self.evaluate(self.splits.x_test, self.splits.y_test)
        ranks = self._rank_records()
        return self.summary(state, test, timing, ranks)

    def _rank_records(self) -> tuple[RankRecord, ...]:
        """What each rank held and ran on, gathered so rank 0 can record every rank."""
        idx = data.shard_indices(len(self.splits.x_train), self.world.rank, self.world.size)
        mine = RankRecord(rank=self.world.rank, hostname=socket.gethostname(), device=self.world.device,
                          images=len(idx), indices_sha256_63=index_digest(idx),
                          first_index=int(idx[0]) if len(idx) else -1,
                          weights_sha256_63=weights_digest(self.model))
        return tuple(distributed.gather_objects(mine))

    def summary(self, state, test, timing: "Timing", ranks: tuple[RankRecord, ...]) -> TrainSummary:
        cfg, world = self.cfg, self.world
        model_input = self.model.inputs[0]
        return TrainSummary(
            test_accuracy=test["accuracy"], test_loss=test["loss"], test_images=test["images"],
            world_size=world.size, precision=self.policy, allreduce=world.allreduce,
            parameters=self.model.count_params(), steps_per_epoch=self.steps, images_trained=state["images_seen"],
            throughput=TrainThroughput(images_per_second=timing.images_per_second(),
                                       interval_images_per_second=tuple(timing.intervals),
                                       warmup_steps=cfg.warmup_steps, log_every=cfg.log_every,
                                       global_batch=timing.batch),
            epochs=tuple(EpochRecord(**record) for record in state["history"]),
            ranks=ranks, class_names=tuple(self.class_names),
            input=ModelInput(shape=tuple(model_input.shape[1:]), dtype=str(model_input.dtype),
                             preprocessing="none (host-side standardise + resize already applied)"
                             if cfg.host_preprocess else "in model: per-image standardisation, grey->RGB, "
                             f"resize to {cfg.image_size}x{cfg.image_size}; feed raw uint8 NHWC"),
            config=cfg.to_dict(),
            environment=environment.collect(
                world_size=world.size, tensorflow_devices=[d.name for d in tf.config.list_logical_devices()]))

    def save_model(self, path: Path) -> None:
        """Save for inference: the same weights in a float32-compute copy of the model, so exporters
        and users get float32 graphs whatever precision training used."""
        keras.mixed_precision.set_global_policy("float32")
        inference = self._build_model(name=self.model.name)
        inference.set_weights(self.model.get_weights())
        with atomic_path(path, suffix=".keras") as tmp:
            inference.save(tmp)
        keras.mixed_precision.set_global_policy(self.policy)


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


def run(cfg: TrainConfig, reporter_factory) -> TrainSummary | None:
    """Train as configured; rank 0 writes the outputs and gets the summary (other ranks None).
    Raises Preempted on a stop signal."""
    stop = StopFlag()
    world = distributed.init()
    # Everything that can refuse bad input (data, model, checkpoint) runs before the first
    # file is written, so a refused run leaves nothing behind.
    trainer = Trainer(cfg, world)
    state = trainer.restore()
    if world.is_chief:
        cfg.run_dir.root.mkdir(parents=True, exist_ok=True)
        data.save_sample_grid(trainer.splits.x_train, trainer.splits.y_train, trainer.class_names,
                              cfg.run_dir.samples)
    reporter = reporter_factory(world, cfg)
    reporter.start(trainer, state, trainer.checkpoint_path if state["epoch"] or state["step"] else None)
    try:
        summary = trainer.run(state, stop, reporter)
    finally:
        reporter.close()
    if not world.is_chief:
        return None
    run_dir = cfg.run_dir
    trainer.save_model(run_dir.model)
    run_dir.write_summary(summary)
    return summary
