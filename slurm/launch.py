"""Start one Horovod rank per task of the current SLURM allocation; forward preemption to the ranks.

The train job template runs it inside the allocation, so users rarely call it by hand:

    python -m slurm.launch --launcher horovodrun -- python -m alexnet.train --resume ...
    python -m slurm.launch --launcher srun-pmi2 -- python -m alexnet.train --resume ...
    python -m slurm.launch --elastic [--min-np 2] [--hosts-file FILE] -- python -m alexnet.train --elastic --resume ...

`horovodrun` (Horovod built with Gloo, as here): hosts and slots come from the allocation
(`scontrol show hostnames "$SLURM_JOB_NODELIST"` and `SLURM_TASKS_PER_NODE`), giving
`horovodrun -np N -H node1:S,node2:S --gloo CMD`; ranks on other nodes are started over ssh
(passwordless ssh between the nodes is needed), and horovodrun probes for a network interface
every node can use (`--network-interface NAME` names one instead).
`srun-pmi2`/`srun-pmix` (Horovod built with MPI): `srun --mpi=pmix --kill-on-bad-exit=1 CMD`,
SLURM starts every rank, no ssh. Open MPI's TCP transport would try every interface a node has,
a docker0 with the same address on every node included, and hang; so it is kept to the network of
this node's SLURM address (OMPI_MCA_btl_tcp_if_include), or to `--network-interface`, unless the
environment already sets it. Debian's Open MPI has PMIx but no PMI-2 support: use srun-pmix there.

`--elastic` (horovodrun only): Horovod elastic. The hosts (`node:slots`, one a line) come from the
allocation, or from `--hosts-file FILE` (same format; every host must be a node of the allocation,
else one line and exit 2, nothing started); a discovery script in a temporary directory prints them
for `horovodrun -np N --min-np M --host-discovery-script SCRIPT --gloo` (with one host, this node,
also `--network-interface lo`: alone, horovodrun cannot probe for an interface and would wait). When a rank is lost,
Horovod drops its host and the others go on (alexnet.train --elastic rolls them back to their last
commit) while at least --min-np ranks are left; the lost host is tried again --rejoin-after seconds
later (doubling with each failure; 0: never), and rejoins at a commit if it is back.

When a rank fails (not --elastic), the other ranks are stopped (horovodrun does it; srun with --kill-on-bad-exit)
and the last line on stderr names the rank and host that failed first, e.g.
`slurm.launch: error: rank 2 on node3 failed first (ssh lost the connection: ...); ...`.

On SIGUSR1, SIGUSR2 or SIGTERM this process asks the ranks to checkpoint and stop: it sends
SIGUSR1 to every rank process on this node (under horovodrun, whose own SIGTERM handling
would kill the ranks 5 s later) or passes the signal to srun (which forwards it to all ranks).
A rank only gets the signal once it has installed a handler for it (SigCgt in
/proc/PID/status): before that, SIGUSR1 would kill it instead of checkpointing it.

Exit status: the first failing rank's (75 = preempted, checkpoint written), not horovodrun's 1;
`--status-file FILE` writes it to FILE too, for the job script (bash 5.2's `wait PID` returns -1
instead of the status when the child exits while one of the script's traps runs).
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import psutil

from slurm.render import LAUNCHERS
from toolkit import cli
from toolkit.cli import ArgumentParser, UsageError
from toolkit.files import write_text_atomic

FORWARDED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
# The signal the trainer handles as "checkpoint and exit 75".
RANK_SIGNAL = signal.SIGUSR1
FORWARD_INTERVAL_S = 0.5
# Horovod: horovodrun prints this (gloo_run.py) for each rank that exits non-zero, in exit order.
RANK_EXIT = re.compile(r"^Process (\d+) exit with status code (-?\d+)\.")
# srun prints one per task that ended badly, in the order it learns of them, e.g.
# "srun: error: node2: task 1: Killed", "srun: error: node1: tasks 0-1: Exited with exit code 2".
SRUN_TASK_ERROR = re.compile(r"^srun: error: (\S+): tasks? (\d+)[\d,-]*: (.+)$")
# What ssh exits with when it cannot connect or loses the connection (the remote command's own
# status otherwise).
SSH_FAILED = 255
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


def scontrol_hostnames(hostlist: str, what: str, fix: str) -> list[str]:
    """The host names a SLURM host list (`what`: where it came from) stands for, from `scontrol show
    hostnames`; one line naming `fix` where scontrol is missing or refuses the list (it exits 0 on a
    malformed one, with its complaint on stderr and no names)."""
    try:
        proc = subprocess.run(["scontrol", "show", "hostnames", hostlist], capture_output=True, text=True)
    except FileNotFoundError:
        raise UsageError("scontrol not found: run this where SLURM's commands are installed") from None
    if proc.returncode != 0 or not proc.stdout.split():
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise UsageError(f"scontrol cannot expand {what} {hostlist!r} ({why}): {fix}")
    return proc.stdout.split()


def launch_command(launcher: str, hosts: Sequence[tuple[str, int]], command: Sequence[str],
                   interface: str | None = None) -> list[str]:
    if launcher == "horovodrun":
        slots = ",".join(f"{host}:{n}" for host, n in hosts)
        nic = [] if interface is None else ["--network-interface", interface]
        # Horovod: one process per slot; Gloo for the rendezvous and the CPU collectives.
        return ["horovodrun", "-np", str(sum(n for _, n in hosts)), "-H", slots, "--gloo", *nic, *command]
    # Horovod: built with MPI, the ranks find each other through SLURM's PMI; srun starts one per task.
    # A rank that dies would leave the others blocked in a collective: srun ends them all.
    return ["srun", f"--mpi={launcher.removeprefix('srun-')}", "--kill-on-bad-exit=1", *command]


# Horovod: the longest cooldown horovodrun accepts (DEFAULT_COOLDOWN_UPPER_LIMIT_SECONDS).
MAX_COOLDOWN_S = 3600


@dataclass(frozen=True)
class Elastic:
    """horovodrun's elastic mode, as `--elastic` and its options ask for it."""
    min_np: int = 1
    hosts_file: str | None = None    # hosts to use (a subset of the allocation's); None: all of them
    rejoin_after: int = 60           # seconds before a lost host is tried again (0: never)

    def __post_init__(self) -> None:
        if self.min_np < 1:
            raise UsageError(f"--min-np must be at least 1, got {self.min_np}")
        if not 0 <= self.rejoin_after <= MAX_COOLDOWN_S:
            raise UsageError(f"--rejoin-after must be 0 to {MAX_COOLDOWN_S} s, got {self.rejoin_after}")


def read_hosts_file(path: str, allocation: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """`host` or `host:slots` lines (blank lines and # comments skipped), each a node of the
    allocation; a host without slots gets the allocation's tasks on it."""
    allocated = dict(allocation)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read --hosts-file {path}: {exc.strerror}: give a file of host[:slots] lines")
    hosts = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        host, _, slots = line.partition(":")
        if slots and not (slots.isdigit() and int(slots) > 0):
            raise UsageError(f"--hosts-file {path}: bad line {line!r}: write host or host:slots (slots >= 1)")
        hosts.append((host, int(slots) if slots else allocated.get(host, 0)))
    unknown = [h for h, _ in hosts if h not in allocated]
    if unknown:
        raise UsageError(f"--hosts-file {path} names hosts not in this allocation: {', '.join(unknown)}; "
                         f"list only its nodes ({', '.join(allocated)})")
    if not hosts:
        raise UsageError(f"--hosts-file {path} lists no host: give one host[:slots] a line")
    return hosts


def discovery_script(directory: Path, hosts: Sequence[tuple[str, int]]) -> Path:
    """A script printing `host:slots` lines, as horovodrun's --host-discovery-script runs it (every second)."""
    listing = directory / "hosts"
    listing.write_text("".join(f"{host}:{slots}\n" for host, slots in hosts))
    script = directory / "discover-hosts.sh"
    script.write_text(f"#!/bin/sh\nexec cat {listing}\n")
    script.chmod(0o755)
    return script


def elastic_interface(hosts: Sequence[tuple[str, int]], node: str, interface: str | None) -> str | None:
    """The --network-interface an elastic horovodrun needs: with one host it cannot probe for a common
    interface (that takes two) and would wait 10 minutes for a second host, so name one."""
    if interface is not None or len(hosts) > 1:
        return interface
    if hosts[0][0] != node:
        raise UsageError(f"one host ({hosts[0][0]}) that is not this node ({node}): horovodrun --elastic cannot "
                         "find the interface to use alone; pass --network-interface NAME")
    return "lo"  # Horovod: every rank on this node, talking over loopback


def elastic_command(hosts: Sequence[tuple[str, int]], command: Sequence[str], script: Path, elastic: Elastic,
                    interface: str | None = None) -> list[str]:
    ranks = sum(n for _, n in hosts)
    if elastic.min_np > ranks:
        raise UsageError(f"--min-np {elastic.min_np} is more than the {ranks} slots of the hosts: lower it")
    nic = [] if interface is None else ["--network-interface", interface]
    # Horovod: a failed host is left out for rejoin_after s (doubling with each failure), then tried again.
    cooldown = ["--blacklist-cooldown-range", str(elastic.rejoin_after), str(MAX_COOLDOWN_S)] \
        if elastic.rejoin_after else []
    # Horovod: start with every slot, go on with at least min_np; hosts from the script, Gloo for all.
    return ["horovodrun", "-np", str(ranks), "--min-np", str(elastic.min_np), "--host-discovery-script",
            str(script), *cooldown, "--gloo", *nic, *command]


def rank_hosts(hosts: Sequence[tuple[str, int]]) -> list[str]:
    """The host of each rank: horovodrun and srun (block distribution) fill each node's slots in turn."""
    return [host for host, slots in hosts for _ in range(slots)]


def node_network(env: Mapping[str, str], addresses: Callable[[], Mapping[str, Sequence[tuple[str, str]]]],
                 node_addr: Callable[[str], str]) -> str:
    """The network (CIDR) of this node's SLURM address: the one SLURM's nodes reach each other on."""
    node = env.get("SLURMD_NODENAME") or socket.gethostname()
    address = node_addr(node)
    for name, ips in addresses().items():
        for ip, netmask in ips:
            if ip == address:
                return str(ipaddress.ip_interface(f"{ip}/{netmask}").network)
    raise UsageError(f"no interface of {node} has its SLURM address {address}: pass --network-interface NAME")


def slurm_node_addr(node: str) -> str:
    """NodeAddr from `scontrol show node`, as an IP address (it may be a name)."""
    out = subprocess.run(["scontrol", "--oneliner", "show", "node", node], capture_output=True, text=True,
                         check=True).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return socket.gethostbyname(fields.get("NodeAddr", node))


def ipv4_addresses() -> dict[str, list[tuple[str, str]]]:
    return {name: [(a.address, a.netmask) for a in addrs if a.family == socket.AF_INET]
            for name, addrs in psutil.net_if_addrs().items()}


def launch_env(launcher: str, env: Mapping[str, str], interface: str | None,
               network: Callable[[], str]) -> dict[str, str]:
    """The launcher's environment: for srun, Open MPI's TCP transport kept to one network."""
    out = dict(env)
    if launcher != "horovodrun" and "OMPI_MCA_btl_tcp_if_include" not in env:
        # Open MPI accepts interface names and CIDR networks; a network is the same on every node.
        out["OMPI_MCA_btl_tcp_if_include"] = interface or network()
    return out


def describe_exit(code: int) -> str:
    """A rank's exit status as horovodrun reports it, in words."""
    if code == SSH_FAILED:
        return "ssh lost the connection: the node, its network or its sshd went away"
    signum = -code if code < 0 else code - 128 if code > 128 else 0
    try:
        return f"killed by {signal.Signals(signum).name}"
    except ValueError:
        return f"exit status {code}"


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


@dataclass(frozen=True)
class Failure:
    """The rank that failed first, as the launcher reported it."""
    rank: int
    host: str
    why: str
    status: int | None = None   # horovodrun: that rank's exit status, which becomes the job's


def first_failure(launcher: str, line: str, hosts: Sequence[str]) -> Failure | None:
    """A launcher's report of a failed rank (horovodrun's stdout, srun's stderr), or None."""
    if launcher == "horovodrun":
        match = RANK_EXIT.match(line)
        if match:
            rank, status = int(match.group(1)), int(match.group(2))
            return Failure(rank, hosts[rank], describe_exit(status), status)
        return None
    match = SRUN_TASK_ERROR.match(line)
    return Failure(int(match.group(2)), match.group(1), match.group(3)) if match else None


@dataclass
class Launch:
    launcher: str
    command: list[str]
    interface: str | None = None
    elastic: Elastic | None = None

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise UsageError(f"unknown launcher {self.launcher!r}: choose one of {', '.join(LAUNCHERS)}")
        if not self.command:
            raise UsageError("no training command: give it after `--`, e.g. -- python -m alexnet.train --resume")
        if self.elastic and self.launcher != "horovodrun":
            raise UsageError(f"--elastic needs --launcher horovodrun (Horovod elastic runs on Gloo), "
                             f"not {self.launcher}")

    def run(self, env: Mapping[str, str] = os.environ) -> int:
        hosts = allocation_hosts(env, lambda nodelist: scontrol_hostnames(
            nodelist, "SLURM_JOB_NODELIST", "run this inside a SLURM job of a working cluster (sbatch/salloc)"))
        if self.elastic is None:
            return self._run(launch_command(self.launcher, hosts, self.command, self.interface), env, hosts)
        if self.elastic.hosts_file:
            hosts = read_hosts_file(self.elastic.hosts_file, hosts)
        interface = elastic_interface(hosts, env.get("SLURMD_NODENAME") or socket.gethostname(), self.interface)
        with tempfile.TemporaryDirectory(prefix="slurm-launch-") as tmp:
            script = discovery_script(Path(tmp), hosts)
            return self._run(elastic_command(hosts, self.command, script, self.elastic, interface), env, hosts)

    def _run(self, argv: list[str], env: Mapping[str, str], hosts: Sequence[tuple[str, int]]) -> int:
        child_env = launch_env(self.launcher, env, self.interface,
                               lambda: node_network(env, ipv4_addresses, slurm_node_addr))
        mpi_net = {k: v for k, v in child_env.items() if k == "OMPI_MCA_btl_tcp_if_include"}
        shown = subprocess.list2cmdline(argv) + "".join(f" ({k}={v})" for k, v in mpi_net.items())
        print(f"slurm.launch: {shown}", flush=True)
        requested = threading.Event()
        received: list[int] = []

        def on_signal(signum, frame):
            received.append(signum)
            requested.set()

        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, on_signal)
        # Read for the launchers' reports of failed ranks: horovodrun's are on its stdout, srun's on its stderr.
        horovodrun = self.launcher == "horovodrun"
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE if horovodrun else None,
                                stderr=None if horovodrun else subprocess.PIPE, text=True, bufsize=1, env=child_env)
        done = threading.Event()
        forwarder = threading.Thread(target=self._forward, args=(proc, requested, received, done), daemon=True)
        forwarder.start()
        failures: list[Failure] = []
        ranks = rank_hosts(hosts)
        out, stream = (proc.stdout, sys.stdout) if horovodrun else (proc.stderr, sys.stderr)
        if out is None:
            raise RuntimeError("the launcher's report stream was not piped")
        for line in out:
            stream.write(line)
            stream.flush()
            failures += filter(None, [first_failure(self.launcher, line, ranks)])
        status = proc.wait()
        done.set()
        forwarder.join()
        return status if status == 0 else self._failed(status, failures)

    def _failed(self, status: int, failures: list[Failure]) -> int:
        """The job's exit status after the launcher's (non-zero); says why in the last line."""
        if self.elastic is not None:
            # Ranks that lost a peer went on, so a preemption's 75 may come after other failures.
            if any(f.status == cli.PREEMPTED_EXIT for f in failures):
                return cli.PREEMPTED_EXIT
            # Horovod: ranks are renumbered at each reset, so horovodrun's rank numbers name no host here.
            print(f"slurm.launch: error: elastic training failed (horovodrun exit status {status}): fewer than "
                  f"--min-np {self.elastic.min_np} ranks were left, or every rank failed (see above); run the job "
                  "again to resume from its last checkpoint", file=sys.stderr, flush=True)
            return status
        if not failures:
            return status
        failure = failures[0]
        if cli.PREEMPTED_EXIT not in (failure.status, status):
            print(f"slurm.launch: error: rank {failure.rank} on {failure.host} failed first ({failure.why}); the "
                  "other ranks were stopped; run the job again to resume from its last checkpoint",
                  file=sys.stderr, flush=True)
        return status if failure.status is None else failure.status

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
    parser.add_argument("--network-interface", help="the interface the ranks talk over (e.g. eth0; default: "
                        "horovodrun probes, srun uses the network of the node's SLURM address)")
    parser.add_argument("--elastic", action="store_true",
                        help="Horovod elastic: go on without a lost host, let it rejoin (train with --elastic)")
    parser.add_argument("--min-np", type=int, default=Elastic.min_np, help="--elastic: the fewest ranks to go on with")
    parser.add_argument("--hosts-file", help="--elastic: the hosts to use, host[:slots] a line, all in the "
                        "allocation (default: every node of the allocation)")
    parser.add_argument("--rejoin-after", type=int, default=Elastic.rejoin_after,
                        help="--elastic: seconds before a lost host is tried again, doubling each time (0: never)")
    parser.add_argument("--status-file", help="also write the exit status to this file (the job script reads it: "
                        "bash can lose a child's status when the child exits while a trap runs)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the per-rank command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    elastic = Elastic(args.min_np, args.hosts_file, args.rejoin_after) if args.elastic else None
    status = Launch(args.launcher, command, args.network_interface, elastic).run()
    if args.status_file:
        write_text_atomic(args.status_file, f"{status}\n")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run("slurm.launch", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
