"""One Horovod rank of a training run that the 2-rank tests can look inside.

    horovodrun -np 2 -H localhost:2 --gloo python -m tests.alexnet.hvd_worker --probe-dir DIR \\
        [--signal-after-steps N --signal-rank R] TRAIN FLAGS (those of python -m alexnet.train)

It runs `alexnet.training.run` as `python -m alexnet.train` does, with a reporter on every rank
that
  * keeps this rank's BatchNorm moving mean and variance after each step: its own values,
    before the loop averages anything over ranks (the loop calls `step` before that), and
    writes the last ones, with their epoch and step, to DIR/rank<R>.npz when training stops;
  * raises SIGUSR1 in its own process after N steps on rank R, so the stop comes at a known
    step however fast the machine is; the other ranks learn of it through the loop's all-reduce.
Exit status as alexnet.train's: 0 done, 75 stopped after writing a checkpoint.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np

from alexnet import distributed, training
from alexnet.config import TrainConfig
from alexnet.preemption import Preempted
from alexnet.report import SilentReporter
from alexnet.train import parser as train_parser
from toolkit.cli import PREEMPTED_EXIT, ArgumentParser

EPOCH, STEP = "probe_epoch", "probe_step"


def moving_statistics(model) -> dict[str, np.ndarray]:
    """BatchNorm's moving mean and variance by variable path (e.g. conv1_bn/moving_mean)."""
    return {v.path: np.array(v.numpy()) for v in model.non_trainable_variables
            if v.path.endswith(("/moving_mean", "/moving_variance"))}


def read_probe(path: Path) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """A rank's statistics and the (1-based epoch, step) after which they were taken."""
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return arrays, (int(arrays.pop(EPOCH)), int(arrays.pop(STEP)))


class Probe(SilentReporter):
    def __init__(self, rank: int, probe_dir: Path, signal_after: int | None):
        self.rank, self.path, self.signal_after = rank, probe_dir / f"rank{rank}.npz", signal_after
        self.model, self.epoch, self.steps_taken = None, 0, 0
        self.last: dict[str, np.ndarray] = {}

    def start(self, learner, feed, state, resumed_from):
        self.model = learner.model

    def epoch_start(self, epoch, epochs, steps, start_step):
        self.epoch = epoch + 1

    def step(self, step, loss, accuracy, images_trained):
        self.last = moving_statistics(self.model) | {EPOCH: np.array(self.epoch), STEP: np.array(step)}
        self.steps_taken += 1
        if self.steps_taken == self.signal_after:
            signal.raise_signal(signal.SIGUSR1)

    def close(self):
        with open(self.path, "wb") as f:
            np.savez(f, **self.last)


def main(argv=None) -> int:
    p = ArgumentParser(prog="tests.alexnet.hvd_worker")
    p.add_argument("--probe-dir", type=Path, required=True)
    p.add_argument("--signal-after-steps", type=int, default=None)
    p.add_argument("--signal-rank", type=int, default=0)
    args, train_argv = p.parse_known_args(argv)
    cfg = TrainConfig(**vars(train_parser().parse_args(train_argv)))

    def probe(world, _cfg):
        signal_after = args.signal_after_steps if world.rank == args.signal_rank else None
        return Probe(world.rank, args.probe_dir, signal_after)

    try:
        training.run(cfg, probe)
        code = 0
    except Preempted:
        code = PREEMPTED_EXIT
    # Every rank has written its probe before any exits: horovodrun stops the others when one does.
    distributed.wait_for_all()
    return code


if __name__ == "__main__":
    sys.exit(main())
