"""Start one Horovod rank per task of the current SLURM allocation; forward preemption to the ranks.

The train job template runs it inside the allocation, so users rarely call it by hand:

    python -m slurm.launch --launcher horovodrun -- python -m alexnet.train --resume ...
    python -m slurm.launch --launcher srun-pmi2 -- python -m alexnet.train --resume ...

`horovodrun` (Horovod built with Gloo, as here): hosts and slots come from the allocation
(`scontrol show hostnames "$SLURM_JOB_NODELIST"` and `SLURM_TASKS_PER_NODE`), giving
`horovodrun -np N -H node1:S,node2:S --gloo CMD`; ranks on other nodes are started over ssh.
`srun-pmi2`/`srun-pmix` (Horovod built with MPI): `srun --mpi=pmi2 CMD`, SLURM starts every rank.

On SIGUSR1, SIGUSR2 or SIGTERM this process asks the ranks to checkpoint and stop: it sends
SIGUSR1 to every rank process on this node (under horovodrun, whose own SIGTERM handling
would kill the ranks 5 s later) or passes the signal to srun (which forwards it to all ranks).
A rank only gets the signal once it has installed a handler for it (SigCgt in
/proc/PID/status): before that, SIGUSR1 would kill it instead of checkpointing it.

Exit status: the first failing rank's (75 = preempted, checkpoint written), not horovodrun's 1.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import psutil

from slurm.render import LAUNCHERS
from toolkit import cli
from toolkit.cli import ArgumentParser, UsageError

FORWARDED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
# The signal the trainer handles as "checkpoint and exit 75".
RANK_SIGNAL = signal.SIGUSR1
FORWARD_INTERVAL_S = 0.5
# Horovod: horovodrun prints this (gloo_run.py) for each rank that exits non-zero, in exit order.
RANK_EXIT = re.compile(r"^Process (\d+) exit with status code (-?\d+)\.")
_TASKS = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


def parse_tasks_per_node(value: str) -> list[int]:
    """SLURM_TASKS_PER_NODE, e.g. `4(x2),2` -> [4, 4, 2]."""
    counts: list[int] = []
    for part in value.split(","):
        match = _TASKS.match(part.strip())
        if not match:
            raise UsageError(f"cannot parse SLURM_TASKS_PER_NODE={value!r}: run inside a SLURM allocation")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def allocation_hosts(env: Mapping[str, str], hostnames: Callable[[str], list[str]]) -> list[tuple[str, int]]:
    """(host, slots) for every node of the allocation, in SLURM's order (the batch host first)."""
    try:
        nodelist, tasks = env["SLURM_JOB_NODELIST"], env["SLURM_TASKS_PER_NODE"]
    except KeyError as exc:
        raise UsageError(f"{exc.args[0]} is not set: run this inside a SLURM job (sbatch/salloc)") from None
    hosts, counts = hostnames(nodelist), parse_tasks_per_node(tasks)
    if len(hosts) != len(counts):
        raise UsageError(f"{len(hosts)} hosts in {nodelist!r} but {len(counts)} task counts in {tasks!r}")
    return list(zip(hosts, counts))


def scontrol_hostnames(nodelist: str) -> list[str]:
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def launch_command(launcher: str, hosts: Sequence[tuple[str, int]], command: Sequence[str]) -> list[str]:
    if launcher == "horovodrun":
        slots = ",".join(f"{host}:{n}" for host, n in hosts)
        # Horovod: one process per slot; Gloo for the rendezvous and the CPU collectives.
        return ["horovodrun", "-np", str(sum(n for _, n in hosts)), "-H", slots, "--gloo", *command]
    # Horovod: built with MPI, the ranks find each other through SLURM's PMI; srun starts one per task.
    return ["srun", f"--mpi={launcher.removeprefix('srun-')}", *command]


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler installed for the signal (the SigCgt mask in /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False


def local_ranks(launcher_pid: int) -> list[int]:
    """PIDs of the Horovod rank processes below the launcher on this node."""
    try:
        children = psutil.Process(launcher_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    ranks = []
    for child in children:
        try:
            # Horovod: horovodrun sets HOROVOD_RANK for the training command only, not for its shells.
            if "HOROVOD_RANK" in child.environ():
                ranks.append(child.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return ranks


@dataclass
class Launch:
    launcher: str
    command: list[str]

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise UsageError(f"unknown launcher {self.launcher!r}: choose one of {', '.join(LAUNCHERS)}")
        if not self.command:
            raise UsageError("no training command: give it after `--`, e.g. -- python -m alexnet.train --resume")

    def run(self, env: Mapping[str, str] = os.environ) -> int:
        argv = launch_command(self.launcher, allocation_hosts(env, scontrol_hostnames), self.command)
        print(f"slurm.launch: {subprocess.list2cmdline(argv)}", flush=True)
        requested = threading.Event()
        received: list[int] = []

        def on_signal(signum, frame):
            received.append(signum)
            requested.set()

        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, on_signal)
        # horovodrun's output is read for its per-rank exit lines; srun's exit status is already the ranks'.
        stdout = subprocess.PIPE if self.launcher == "horovodrun" else None
        proc = subprocess.Popen(argv, stdout=stdout, text=True, bufsize=1)
        done = threading.Event()
        forwarder = threading.Thread(target=self._forward, args=(proc, requested, received, done), daemon=True)
        forwarder.start()
        first_failure = None
        if proc.stdout is not None:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                match = RANK_EXIT.match(line)
                if match and first_failure is None:
                    first_failure = int(match.group(2))
        status = proc.wait()
        done.set()
        forwarder.join()
        if status != 0 and first_failure is not None:
            return first_failure
        return status

    def _forward(self, proc: subprocess.Popen, requested: threading.Event, received: list[int],
                 done: threading.Event) -> None:
        while not (requested.wait(FORWARD_INTERVAL_S) or done.is_set()):
            pass
        if done.is_set():
            return
        print(f"slurm.launch: got {signal.Signals(received[0]).name}: asking the ranks to checkpoint and stop",
              flush=True)
        if self.launcher != "horovodrun":
            proc.send_signal(received[0])
            return
        signalled: set[int] = set()
        # Ranks may still be starting: keep looking until each has a handler, or the job ends.
        while not done.is_set():
            for pid in local_ranks(proc.pid):
                if pid not in signalled and catches(pid, RANK_SIGNAL):
                    os.kill(pid, RANK_SIGNAL)
                    signalled.add(pid)
            done.wait(FORWARD_INTERVAL_S)


def _main(argv: Sequence[str] | None) -> int:
    parser = ArgumentParser(prog="python -m slurm.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--launcher", default="horovodrun", choices=LAUNCHERS,
                        help="horovodrun for Horovod built with Gloo; srun-pmi2/srun-pmix for MPI builds")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the per-rank command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return Launch(args.launcher, command).run()


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run("slurm.launch", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
