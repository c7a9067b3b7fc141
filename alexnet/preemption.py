"""Stopping on a signal: SLURM's pre-timeout SIGUSR1 (or a SIGTERM) becomes "checkpoint, exit 75".

A signal reaches one rank, or all of them at different steps; a rank that stops alone leaves
the others hanging in the next all-reduce. So the handler only raises a flag, the loop asks
`StopFlag.on_any_rank()` (a collective) between steps, and every rank stops at the same step.
The loop then writes a checkpoint and raises `Preempted`; `python -m alexnet.train` turns that
into exit status 75 (toolkit.cli.PREEMPTED_EXIT), and `--resume` continues from the checkpoint.

    stop = StopFlag()                    # installs the handlers; before the first step
    ...
    if stop.on_any_rank(): ...           # between steps, on every rank
"""
from __future__ import annotations

import signal
import threading

from alexnet import distributed

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class Preempted(Exception):
    """Training stopped on a signal; a checkpoint to resume from has been written."""


class StopFlag:
    """Set by SIGUSR1 (SLURM's usual pre-timeout signal) or SIGTERM; read between steps."""

    def __init__(self):
        self.event = threading.Event()
        self.signal_name: str | None = None
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def on_any_rank(self) -> bool:
        """Whether any rank was signalled; the same answer on every rank (a collective: call it on all)."""
        return distributed.any_rank(self.is_set())

    def reason(self) -> str:
        return f"stopped by {self.signal_name or 'a signal on another rank'}"
