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
  ElasticLoop (here)  the same under Horovod elastic (--elastic): commits, and a new world after a reset
  alexnet.record      throughput, what each rank held, summary.json, what each rank trained (--log-samples)
  alexnet.rundir      the output directory: writable, room enough, one writer (checked before training)
  alexnet.checkpoint  the checkpoint, and whether a resume from it trains each image of its epoch once
"""
from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path
from typing import NoReturn

import keras
import numpy as np
import tensorflow as tf

from alexnet import checkpoint, data, distributed, inputs, precision, record, rundir
from alexnet.checkpoint import LoopState
from alexnet.config import TrainConfig
from alexnet.model import build_alexnet
from alexnet.preemption import Preempted, StopFlag
from toolkit.cli import UsageError
from toolkit.files import atomic_path
from toolkit.runs import ElasticReset, EpochRecord, RankRecord, TrainSummary, to_json


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


def make_schedule(cfg: TrainConfig, world_size: int, steps_per_epoch: int) -> WarmupSchedule:
    # Horovod: the global batch grows with the ranks, so does the rate (Goyal et al. 2017),
    # ramped up over the first epochs to avoid early divergence.
    warmup = round(cfg.lr_warmup_epochs * steps_per_epoch) if world_size > 1 else 0
    return WarmupSchedule(cfg.lr * world_size, warmup)


def make_optimizer(cfg: TrainConfig, schedule: WarmupSchedule, policy: str):
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=cfg.momentum)
    else:
        opt = keras.optimizers.Adam(schedule)
    if precision.uses_loss_scaling(policy):
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _nbytes(variable) -> int:
    return int(np.prod(variable.shape)) * np.dtype(variable.dtype).itemsize


class Learner:
    """This rank's model and optimizer, their compiled steps, and the state ranks must agree on."""

    def __init__(self, cfg: TrainConfig, world: distributed.World, feed: inputs.Feed, policy: str):
        self.cfg, self.world, self.feed, self.policy = cfg, world, feed, policy
        self.model = self._build_model()
        self.schedule = make_schedule(cfg, world.size, feed.steps)
        self.optimizer = make_optimizer(cfg, self.schedule, policy)
        self.optimizer.build(self.model.trainable_variables)
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy()
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)

    @property
    def variables(self) -> list:
        """Every variable a rank's training state is: the model's and the optimizer's."""
        return list(self.model.variables) + list(self.optimizer.variables)

    def resize(self, world: distributed.World, feed: inputs.Feed) -> None:
        """For a world of another size (--elastic): the rate follows the global batch again."""
        self.world, self.feed = world, feed
        self.schedule.peak = self.cfg.lr * world.size  # Horovod: as make_schedule scales it
        # The traced step holds the old rate as a constant: trace it again.
        self.train_step = tf.function(self._train_step)

    def _build_model(self, **overrides):
        input_shape = None if self.cfg.host_preprocess else self.feed.native_shape
        return build_alexnet(len(self.feed.class_names), self.cfg.image_size, self.cfg.norm, input_shape, **overrides)

    def _train_step(self, images, labels):
        with tf.GradientTape() as tape:
            probs = self.model(images, training=True)
            loss = self.loss_fn(labels, probs)
            scaled = self.optimizer.scale_loss(loss) if hasattr(self.optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, self.model.trainable_variables)
        grads = distributed.average_gradients(grads, self.cfg.fp16_allreduce, overlap=self.cfg.allreduce == "overlap")
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

    @property
    def model_bytes(self) -> int:
        return sum(_nbytes(v) for v in self.model.variables)

    @property
    def state_bytes(self) -> int:
        """What a checkpoint of this rank's variables takes on disk, about."""
        return sum(_nbytes(v) for v in self.variables)

    @property
    def dealing(self) -> data.Dealing:
        """How this world deals an epoch's images: what a checkpoint records, and a resume must keep."""
        return data.Dealing(elastic=self.cfg.elastic, ranks=self.world.size, batch_size=self.cfg.batch_size,
                            seed=self.cfg.seed, images=len(self.feed.splits.x_train))

    def restore(self, path: Path, resume: bool, share: bool = True) -> LoopState:
        """Rank 0's checkpoint (with --resume) or a fresh start, the same on every rank (a collective),
        or (share=False, --elastic) on rank 0 only: ElasticState.sync shares it, at the same point
        of the code for the first ranks as for a host that joins later."""
        state = LoopState()
        if resume and self.world.is_chief and path.exists():
            state = self._resume(checkpoint.open_checkpoint(path))
        if not share:
            return state
        state = distributed.broadcast_object(state)  # Horovod: every rank resumes at rank 0's position
        # Horovod: every rank starts from rank 0's weights and optimizer state (fresh or restored).
        distributed.broadcast_variables(self.variables)
        return state

    def _resume(self, saved: checkpoint.Checkpoint) -> LoopState:
        """The saved variables and state, once it is sure that this run finishes the saved epoch with
        every image trained once (a mid-epoch stop dealt otherwise is refused: UsageError)."""
        state = saved.state
        if state.mid_epoch:
            where = f"{saved.path} stopped in epoch {state.epoch + 1} after step {state.step}"
            if saved.dealing is None:
                raise UsageError(f"{where} and does not record how that epoch was dealt to ranks (an older "
                                 f"version wrote it): resume with that version, or start a new --output-dir")
            fix = saved.dealing.resume_fix(self.dealing)
            if fix:
                raise UsageError(f"{where} dealt as {saved.dealing.describe()}; this run ({self.dealing.describe()}) "
                                 f"would skip and repeat images: {fix}, or start a new --output-dir")
        saved.restore(self.model, self.optimizer)
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
            checkpoint.save(path, self.model, self.optimizer, state, self.dealing)

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

    keeps_at_checkpoint = True   # an epoch's checkpoint keeps its steps (--log-samples writes them)

    def __init__(self, cfg: TrainConfig, world: distributed.World, feed: inputs.Feed, learner: Learner,
                 stop: StopFlag, report):
        self.cfg, self.world, self.feed, self.learner, self.stop, self.report = cfg, world, feed, learner, stop, report
        self.timing = record.Timing(cfg.batch_size * world.size, cfg.warmup_steps, cfg.log_every)
        self.checkpoint_path = cfg.run_dir.checkpoint
        self.samples = record.SampleLog(cfg.log_samples)

    def run(self, state: LoopState) -> LoopState:
        """Train from `state` to the last epoch; raises Preempted after a stop's checkpoint."""
        while state.epoch < self.cfg.epochs:
            start = state
            state, sums, seconds = self._train(state)
            state = self._finish_epoch(start, state, sums, seconds)
            # The collective doubles as the barrier that keeps ranks alive until the checkpoint is in place.
            if self.stop.on_any_rank() and state.epoch < self.cfg.epochs:
                raise Preempted(f"{self.stop.reason()} after epoch {state.epoch}; checkpoint {self.checkpoint_path}")
        return state

    def _train(self, state: LoopState) -> tuple[LoopState, np.ndarray, float]:
        """The rest of the epoch under way: where it ended, this rank's metric sums, the seconds it took."""
        steps, batches = self.feed.rest_of_epoch(state.epoch, state.step, state.position)
        last = state.step + steps
        # The chief carries the epoch's sums so far (over all ranks) from a checkpoint; the rest add theirs.
        sums = np.array(state.sums, np.float64) if self.world.is_chief else np.zeros(3)
        self.report.epoch_start(state.epoch, self.cfg.epochs, last, state.step)
        self.timing.begin()
        began = time.perf_counter()
        for images, labels in batches:
            loss_sum, correct = self.learner.train_step(images, labels)
            self.samples.step(state.epoch, images)
            sums += (loss_sum.numpy(), correct.numpy(), len(labels))
            self.timing.step_done()
            state = self._advanced(state)
            self.report.step(state.step, *_means(sums), state.images_seen)
            if state.step < last:
                sums = self._between_steps(state, sums, last)
        return state, sums, time.perf_counter() - began

    def _advanced(self, state: LoopState) -> LoopState:
        return state.advanced(self.timing.batch, self.world.size)

    def _between_steps(self, state: LoopState, sums: np.ndarray, last: int) -> np.ndarray:
        """Stop here if any rank was signalled; this rank's sums to go on with."""
        if self.stop.on_any_rank():
            self._preempt(dataclasses.replace(state, sums=tuple(distributed.sum_over_ranks(sums).tolist())), last)
        return sums

    def _preempt(self, state: LoopState, last: int) -> NoReturn:
        self.learner.checkpoint(self.checkpoint_path, state)
        # Horovod: the other ranks wait for rank 0's checkpoint: when any rank exits, horovodrun
        # SIGTERMs the rest and SIGKILLs them 5 s later, which could cut a 233 MB write short.
        distributed.wait_for_all()
        self.samples.keep()
        raise Preempted(f"{self.stop.reason()} at epoch {state.epoch + 1} step {state.step}/{last}; "
                        f"checkpoint {self.checkpoint_path}")

    def _finish_epoch(self, start: LoopState, end: LoopState, sums: np.ndarray, seconds: float) -> LoopState:
        """Metrics over all ranks, validation, the epoch's record and checkpoint: the state after it."""
        loss_sum, correct, n = distributed.sum_over_ranks(sums)
        self.learner.sync_statistics()  # validation must see every shard's statistics
        val = self.learner.evaluate(self.feed.splits.x_val, self.feed.splits.y_val)
        trained = end.images_seen - start.images_seen
        epoch = EpochRecord(
            epoch=end.epoch + 1, loss=loss_sum / n, accuracy=correct / n,
            val_loss=val["loss"], val_accuracy=val["accuracy"], learning_rate=self.learner.learning_rate(),
            images_per_second=trained / seconds, seconds=seconds, resumed_at_step=start.step or None)
        state = LoopState(epoch=end.epoch + 1, history=end.history + (to_json(epoch),),
                          images_seen=end.images_seen, resets=end.resets)
        self.report.epoch_end(epoch)
        self.learner.checkpoint(self.checkpoint_path, state)
        if self.keeps_at_checkpoint:
            self.samples.keep()
        return state

    def final_records(self) -> tuple[dict, tuple[RankRecord, ...]]:
        """Test loss and accuracy, and what each rank held (collectives)."""
        return (self.learner.evaluate(self.feed.splits.x_test, self.feed.splits.y_test),
                record.rank_records(self.feed, self.world, self.learner.model))


class ElasticLoop(Loop):
    """The loop under Horovod elastic (--elastic): every --commit-every steps, and after each epoch,
    the training state is committed to host memory (`distributed.ElasticState`); a lost rank rolls
    the others back to the last commit, a host that was added or removed joins or leaves at one.
    `run_elastic` runs it, again after each such reset, in whatever world Horovod forms.

    The data is dealt by position (alexnet.data.elastic_share), so the new world continues the
    epoch at the commit's image: what a reset costs is the work since that commit, trained again.
    """

    # A reset rolls back to the last commit, not to the epoch's checkpoint: only a commit keeps steps.
    keeps_at_checkpoint = False

    def __init__(self, *args, reporter_factory, lock: rundir.WriterLock):
        super().__init__(*args)
        self.reporter_factory, self.lock = reporter_factory, lock
        self.elastic: distributed.ElasticState | None = None
        self.since_commit = 0
        self.attempts = 0                      # runs of this rank's loop so far (1 + resets it went through)
        self.last_step_at = time.time()        # wall clock: ranks on other hosts compare it
        self.pending: dict | None = None       # the reset under way, until its first step
        self.pending_since = 0.0               # ... and when the step before it finished (wall clock)

    def run_elastic(self, state: LoopState) -> tuple[LoopState, dict, tuple[RankRecord, ...]]:
        """Train to the end and take the final records, surviving lost ranks and host changes."""
        self.elastic = distributed.ElasticState(self.learner.variables, state)

        @distributed.elastic_run
        def attempt(elastic: distributed.ElasticState):
            _raise_if_refused(elastic)
            state = self.run(self._rejoin())
            return (state, *self.final_records())
        return attempt(self.elastic)

    @property
    def elastic_state(self) -> distributed.ElasticState:
        """Horovod's elastic state, made by run_elastic before any step."""
        if self.elastic is None:
            raise RuntimeError("an elastic step before run_elastic made the elastic state")
        return self.elastic

    def _advanced(self, state: LoopState) -> LoopState:
        state = super()._advanced(state)
        self.last_step_at = time.time()
        if self.pending is not None:
            reset = ElasticReset(**self.pending, seconds=self.last_step_at - self.pending_since)
            state, self.pending = dataclasses.replace(state, resets=state.resets + (to_json(reset),)), None
        self.elastic_state.position = state  # the live position: what a restore abandons, and reports
        return state

    def _between_steps(self, state: LoopState, sums: np.ndarray, last: int) -> np.ndarray:
        self.since_commit += 1
        if self.since_commit >= self.cfg.commit_every:
            total = distributed.sum_over_ranks(sums)
            self._commit(dataclasses.replace(state, sums=tuple(total.tolist())))
            sums = total if self.world.is_chief else np.zeros(3)  # as a restart from this commit
        return super()._between_steps(state, sums, last)

    def _finish_epoch(self, start: LoopState, end: LoopState, sums: np.ndarray, seconds: float) -> LoopState:
        state = super()._finish_epoch(start, end, sums, seconds)
        self._commit(state)
        return state

    def _commit(self, state: LoopState) -> None:
        # Horovod: a restore or a newcomer gets rank 0's statistics: make them every rank's first.
        self.learner.sync_statistics()
        self.elastic_state.position = state
        # Nothing between here and the commit's save() can fail: a restore never undoes kept steps.
        self.samples.keep()
        self.elastic_state.commit()  # Horovod: may raise HostsUpdatedInterrupt, on every rank at once
        self.since_commit = 0

    def _rejoin(self) -> LoopState:
        """This rank's part in the world Horovod formed, at the start and after each reset, and the
        state to go on from (rank 0's last commit, synced); notes the reset if this is one (a collective)."""
        world = distributed.current_world(self.world.device)
        mine = (socket.gethostname(), self.attempts, self.world.size, self.elastic_state.rolled_back,
                self.last_step_at)
        ranks = distributed.gather_objects(mine)
        self.attempts, self.elastic_state.rolled_back, self.since_commit = self.attempts + 1, None, 0
        self.samples.drop()  # trained since the last commit, which every rank now goes on from
        if world != self.world:
            self._resize(world)
        state = self.elastic_state.position
        # Ranks that ran before (newcomers have not) know the world that was and where it stopped.
        survivors = [r for r in ranks if r[1]]
        if survivors:
            self.pending = self._reset_record(state, [h for h, *_ in ranks], survivors)
            self.pending_since = max(r[4] for r in survivors)
        return state

    def _reset_record(self, state: LoopState, hosts: list[str], survivors: list[tuple]) -> dict:
        """An ElasticReset's fields but the seconds it took, known at the first step after it."""
        rolled = next((r[3] for r in survivors if r[3] is not None), None)
        # Counted from the spans every kept step trained (what rank r of each world took), not assumed.
        lost, repeated = data.elastic_coverage(len(self.feed.splits.x_train), self.cfg.seed, state.epoch,
                                               self.cfg.batch_size, state.segments)
        return dict(epoch=state.epoch + 1, reason="rank lost" if rolled else "hosts changed",
                    ranks_before=survivors[0][2], ranks_after=len(hosts), hosts=tuple(hosts),
                    failed_at=rolled.position if rolled else state.position, resumed_at=state.position,
                    rolled_back_images=rolled.images_seen - state.images_seen if rolled else 0,
                    lost_images=lost, repeated_images=repeated)

    def _resize(self, world: distributed.World) -> None:
        """Another world (ranks and size changed): its shares of the data, its rate, its reporter."""
        was_chief = self.world.is_chief
        self.world, self.feed = world, self.feed.resharded(world)
        self.learner.resize(world, self.feed)
        self.timing.batch = self.cfg.batch_size * world.size
        if world.is_chief != was_chief:  # only rank 0 reports, and writes
            self.report.close()
            self.report = self.reporter_factory(world, self.cfg)
            if world.is_chief:
                self.lock.take()  # the same run's: passed on from the chief that was


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Rank 0's refusal to resume, under --elastic. Nothing collective runs before the elastic loop,
    where the other ranks already are: they learn of it from the loop's first sync, as they would
    learn rank 0's position, and stop with the same one line, instead of training on without it."""

    message: str


def _raise_if_refused(elastic: distributed.ElasticState) -> None:
    if isinstance(elastic.position, Refusal):
        raise UsageError(elastic.position.message)


def _refuse_on_every_rank(learner: Learner, message: str) -> None:
    """Raises the refusal's UsageError here, after sharing it with every rank."""
    # Horovod: the same sync (variables, then the position) that ElasticLoop.run_elastic starts with.
    distributed.elastic_run(_raise_if_refused)(distributed.ElasticState(learner.variables, Refusal(message)))


def run(cfg: TrainConfig, reporter_factory) -> TrainSummary | None:
    """Train as configured; rank 0 writes the outputs and gets the summary (other ranks None).
    Raises Preempted on a stop signal."""
    stop = StopFlag()
    world = distributed.init()
    with precision.global_policy(precision.detect_and_resolve(cfg.precision)) as policy:
        keras.utils.set_random_seed(cfg.seed)
        # Everything that can refuse bad input (data, model, the output directory, checkpoint, lock)
        # runs before the first file is written, so a refused run leaves nothing behind.
        feed = inputs.prepare(cfg, world)
        learner = Learner(cfg, world, feed, policy)
        lock = rundir.WriterLock(cfg.run_dir)
        try:
            state = _start(cfg, world, learner, lock)
        except UsageError as refused:
            if cfg.elastic:
                _refuse_on_every_rank(learner, str(refused))
            raise
        try:
            return _train(cfg, world, feed, learner, stop, state, reporter_factory, lock)
        finally:
            lock.release()


def _start(cfg: TrainConfig, world: distributed.World, learner: Learner, lock: rundir.WriterLock) -> LoopState:
    """Where training starts, once rank 0 found the output directory writable, roomy and free, and
    the checkpoint (with --resume) one to go on from; a UsageError (on rank 0) otherwise."""
    if world.is_chief:
        rundir.check_writable(cfg.output_dir)
    state = learner.restore(cfg.run_dir.checkpoint, cfg.resume, share=not cfg.elastic)
    if world.is_chief:
        # Two checkpoints exist while one replaces the other; the model holds the weights again.
        rundir.check_room(cfg.output_dir, 2 * learner.state_bytes + learner.model_bytes)
        lock.take()
    return state


def _train(cfg: TrainConfig, world: distributed.World, feed: inputs.Feed, learner: Learner, stop: StopFlag,
           state: LoopState, reporter_factory, lock: rundir.WriterLock) -> TrainSummary | None:
    """`run` from the first file written: the loop, to the end or a stop, and rank 0's outputs."""
    if world.is_chief:
        data.save_sample_grid(feed.splits.x_train, feed.splits.y_train, feed.class_names, cfg.run_dir.samples)
    args = (cfg, world, feed, learner, stop, reporter_factory(world, cfg))
    loop = ElasticLoop(*args, reporter_factory=reporter_factory, lock=lock) if cfg.elastic else Loop(*args)
    loop.report.start(learner, feed, state, cfg.run_dir.checkpoint if state.started else None)
    try:
        if isinstance(loop, ElasticLoop):
            state, test, ranks = loop.run_elastic(state)
        else:
            state = loop.run(state)
            test, ranks = loop.final_records()
    finally:
        loop.report.close()
    return _finish(loop, state, test, ranks)


def _finish(loop: Loop, state: LoopState, test: dict, ranks: tuple[RankRecord, ...]) -> TrainSummary | None:
    """Rank 0's model and summary.json."""
    cfg, world, learner = loop.cfg, loop.world, loop.learner
    if not world.is_chief:
        return None
    summary = record.build_summary(cfg, world, loop.feed, learner.model, learner.policy, history=state.history,
                                   images_trained=state.images_seen, test=test, timing=loop.timing, ranks=ranks,
                                   resets=tuple(ElasticReset(**r) for r in state.resets))
    learner.save_model(cfg.run_dir.model)
    cfg.run_dir.write_summary(summary)
    return summary
