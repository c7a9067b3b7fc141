"""A run directory's one writer, and room for what it writes: checked before training starts.

`alexnet.training.run` does this on rank 0 (the only rank that writes):

    check_writable(cfg.output_dir)          # a file, read-only, full: one UsageError line
    check_room(cfg.output_dir, nbytes)      # room for two checkpoints and the model
    lock = WriterLock(cfg.run_dir)
    lock.take()                             # UsageError if another live training writes there
    ...
    lock.release()                          # at the end, a stop (exit 75) or an error

The lock is OUTPUT_DIR/.writer.lock, JSON {"host", "pid", "started" (the process's start, from
/proc, so a reused pid is not taken for the holder), "run"}. A holder is passed over when
  * it is this run: the same `run` (SLURM_JOB_ID, kept by a requeue; else horovodrun's rendezvous
    address, shared by every rank of one horovodrun, so an elastic reset that makes another rank
    the chief takes the lock over; else PMIx's namespace under mpirun), or this very process;
  * it is stale: on this host, and its process is gone (e.g. SIGKILLed).
Anything else is another live training (or one on another host that this one cannot see): refused
in one line saying whose it is and that a dead holder's file may be deleted. Deciding and writing
happen under `flock` on the directory, so two runs starting together cannot both take it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from toolkit.cli import UsageError
from toolkit.environment import pid_alive
from toolkit.files import write_json_atomic
from toolkit.runs import RunDir, decode

LOCK_NAME = ".writer.lock"
# Creating an empty file can succeed on a full disk; a block of data cannot.
PROBE_BYTES = 4096


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(output_dir: str | os.PathLike) -> None:
    """UsageError, one line, unless `output_dir` is a directory this process can write a file in
    (or one it can create, under the nearest directory that exists)."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output-dir {path} is a file, not a directory: choose a directory")
    existing = _nearest_existing(path.absolute())
    if not existing.is_dir():
        raise UsageError(f"--output-dir {path} cannot be created: {existing} is a file; choose another --output-dir")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".write-check.") as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        problems: dict[int | None, str | None] = {
            errno.ENOSPC: "its disk is full", errno.EDQUOT: "its disk quota is used up",
            errno.EROFS: "it is on a read-only file system"}
        problem = problems.get(exc.errno, exc.strerror)
        raise UsageError(f"--output-dir {path} cannot be written ({existing}: {problem}): "
                         f"free it or choose another --output-dir") from None


def check_room(output_dir: str | os.PathLike, nbytes: int) -> None:
    """UsageError unless the output's file system has `nbytes` free."""
    existing = _nearest_existing(Path(output_dir).absolute())
    free = shutil.disk_usage(existing).free
    if free < nbytes:
        raise UsageError(f"--output-dir {output_dir} has {free / 2**20:.0f} MiB free, this run writes about "
                         f"{nbytes / 2**20:.0f} MiB (two checkpoints while one replaces the other, and the model): "
                         f"free some space or choose another --output-dir")


def _process_start(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, /proc/PID/stat field 22), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def run_id() -> str | None:
    """What every process of one run shares and another run does not (see the module docstring)."""
    env = os.environ
    if env.get("SLURM_JOB_ID"):
        return f"slurm job {env['SLURM_JOB_ID']}"
    if env.get("HOROVOD_GLOO_RENDEZVOUS_ADDR"):  # Horovod: one rendezvous per horovodrun
        return f"horovodrun {env['HOROVOD_GLOO_RENDEZVOUS_ADDR']}:{env.get('HOROVOD_GLOO_RENDEZVOUS_PORT', '')}"
    if env.get("PMIX_NAMESPACE"):
        return f"mpi {env['PMIX_NAMESPACE']}"
    return None


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started: int | None
    run: str | None
    since: str = ""

    @classmethod
    def me(cls) -> "Holder":
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_start(pid), run_id(),
                   time.strftime("%Y-%m-%d %H:%M:%S %Z"))

    def alive(self) -> bool:
        """Whether its process runs; only answerable on its own host (True elsewhere: assume so)."""
        if self.host != socket.gethostname():
            return True
        if not pid_alive(self.pid):
            return False
        return self.started is None or _process_start(self.pid) in (None, self.started)

    def yields_to(self, other: "Holder") -> bool:
        """Whether `other` may take the lock from this holder."""
        same_run = self.run is not None and self.run == other.run
        same_process = (self.host, self.pid) == (other.host, other.pid)
        return same_run or same_process or not self.alive()


class WriterLock:
    """OUTPUT_DIR/.writer.lock, taken by the process that writes the run (rank 0)."""

    def __init__(self, run: RunDir):
        self.run, self.path = run, run.root / LOCK_NAME
        self.me = Holder.me()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        fd = os.open(self.run.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def holder(self) -> Holder | None:
        """Who holds it now (an unreadable or foreign file counts as a holder that is gone)."""
        try:
            return decode(Holder, json.loads(self.path.read_text()), str(self.path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            return Holder("", -1, None, None)

    def take(self) -> None:
        """Hold the lock (the directory is created if needed), or UsageError if another run does."""
        self.run.root.mkdir(parents=True, exist_ok=True)
        with self._exclusive():
            holder = self.holder()
            if holder is not None and holder.host and not holder.yields_to(self.me):
                raise UsageError(
                    f"{self.run.root} is being written by another training (pid {holder.pid} on {holder.host}, "
                    f"since {holder.since}): wait for it or choose another --output-dir "
                    f"(if that process is gone, delete {self.path})")
            write_json_atomic(self.path, asdict(self.me))

    def release(self) -> None:
        """Give the lock up if this process holds it (an elastic reset may have passed it on)."""
        if not self.path.exists():
            return
        with self._exclusive():
            holder = self.holder()
            if holder is not None and (holder.host, holder.pid) == (self.me.host, self.me.pid):
                self.path.unlink()
