"""What a training run shows and logs: rich progress on the console, TensorBoard scalars, and
progress.json for whoever watches the run from outside (a SLURM user, a test, a dashboard).

Only rank 0 reports (`for_rank`); every other rank gets a reporter that does nothing,
so the training loop never asks "am I rank 0?" to print.

progress.json (`RunDir.progress`) is rewritten atomically every --log-every steps and at each
epoch's last step, so a reader always sees a whole file:

    {"epoch": 1, "epochs": 3, "step": 40, "steps_per_epoch": 250, "images_trained": 2560,
     "loss": 0.91, "accuracy": 0.67, "updated": "2026-11-26T10:00:00+00:00"}

`epoch` is 1-based and `step` counts the epoch's finished steps; `images_trained` counts every
rank's images since the run first started (a resumed run continues the count).

    watch -n 10 cat runs/alexnet/progress.json
"""
from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from toolkit.cli import console
from toolkit.runs import EpochRecord, TrainProgress, TrainSummary


class SilentReporter:
    """What the loop tells a reporter, and when; every rank calls each method at the same point.

    `step` comes after the step's update and before anything is averaged over ranks or saved,
    so it sees this rank's own state.
    """

    def start(self, learner, feed, state, resumed_from): pass
    def epoch_start(self, epoch, epochs, steps, start_step): pass
    def step(self, step, loss, accuracy, images_trained): pass
    def epoch_end(self, record): pass
    def close(self): pass


class ChiefReporter(SilentReporter):
    def __init__(self, cfg, world_size: int):
        import tensorflow as tf

        self.cfg, self.world_size = cfg, world_size
        self.console = console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
            disable=not cfg.progress, transient=True,
        )
        self.task: TaskID | None = None
        self.epoch = self.epochs = self.steps = 0
        log_dir = cfg.run_dir.tensorboard / time.strftime("%Y%m%d-%H%M%S")
        # TensorBoard's usual layout: one run directory, train/ and validation/ beside each other.
        self.writers = {k: tf.summary.create_file_writer(str(log_dir / k)) for k in ("train", "validation")}
        self.tf = tf

    def start(self, learner, feed, state, resumed_from):
        cfg, splits = self.cfg, feed.splits
        self.console.print(
            f"[bold]AlexNet[/] {learner.model.count_params():,} parameters | {cfg.dataset} "
            f"{len(splits.x_train):,} train / {len(splits.x_val):,} val / {len(splits.x_test):,} test | "
            f"{self.world_size} rank(s) x batch {cfg.batch_size} | {cfg.image_size} px | {learner.policy} | "
            f"{feed.steps} steps/epoch")
        if resumed_from:
            self.console.print(f"Resuming from {resumed_from}: epoch {state.epoch + 1}, step {state.step}")
        self.progress.start()

    def epoch_start(self, epoch, epochs, steps, start_step):
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("train", total=steps, completed=start_step,
                                           epoch=f"{epoch + 1}/{epochs}", loss=0.0, acc=0.0)
        self.epoch, self.epochs, self.steps = epoch + 1, epochs, steps

    def step(self, step, loss, accuracy, images_trained):
        if self.task is None:
            raise RuntimeError("a training step reported before its epoch started")
        self.progress.update(self.task, completed=step, loss=loss, acc=accuracy)
        if step % self.cfg.log_every == 0 or step == self.steps:
            self.cfg.run_dir.write_progress(TrainProgress(
                epoch=self.epoch, epochs=self.epochs, step=step, steps_per_epoch=self.steps,
                images_trained=images_trained, loss=float(loss), accuracy=float(accuracy)))

    def epoch_end(self, r: EpochRecord):
        self.console.print(
            f"epoch {r.epoch:>3}/{self.cfg.epochs}  loss {r.loss:.4f}  acc {r.accuracy:.4f}  "
            f"val_loss {r.val_loss:.4f}  val_acc {r.val_accuracy:.4f}  lr {r.learning_rate:.2e}  "
            f"{r.images_per_second:.1f} img/s  {r.seconds:.1f} s")
        with self.writers["train"].as_default(step=r.epoch):
            self.tf.summary.scalar("epoch_loss", r.loss)
            self.tf.summary.scalar("epoch_accuracy", r.accuracy)
            self.tf.summary.scalar("learning_rate", r.learning_rate)
            self.tf.summary.scalar("images_per_second", r.images_per_second)
        with self.writers["validation"].as_default(step=r.epoch):
            self.tf.summary.scalar("epoch_loss", r.val_loss)
            self.tf.summary.scalar("epoch_accuracy", r.val_accuracy)
        for w in self.writers.values():
            w.flush()

    def close(self):
        self.progress.stop()
        for w in self.writers.values():
            w.close()


def for_rank(world, cfg):
    return ChiefReporter(cfg, world.size) if world.is_chief else SilentReporter()


def print_summary(summary: TrainSummary, output_dir) -> None:
    out = console(stderr=True)
    t = Table(title="Training summary", show_header=False)
    t.add_row("test accuracy", f"{summary.test_accuracy:.4f} ({summary.test_images:,} images)")
    t.add_row("test loss", f"{summary.test_loss:.4f}")
    ips = summary.images_per_second
    t.add_row("throughput", f"{ips:.1f} img/s total, {ips / summary.world_size:.1f} per rank"
              if ips else "not measured (too few steps after warm-up)")
    t.add_row("ranks x batch", f"{summary.world_size} x {summary.batch_size}")
    t.add_row("precision", summary.precision)
    t.add_row("all-reduce", summary.allreduce)
    t.add_row("outputs", str(output_dir))
    out.print(t)
