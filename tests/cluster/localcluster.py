"""A SLURM cluster of several nodes on one machine: each node has its own namespaces, slurmd and sshd.

    scripts/local-cluster.sh up [--nodes 3]             # start it (a few seconds); prints how to use it
    scripts/local-cluster.sh up --nodes 3 --link 1gbit  # ... with every node's link shaped to 1 Gbit/s each way
    scripts/local-cluster.sh exec sinfo -N              # a command on the login node (sbatch, slurm-submit, ...)
    scripts/local-cluster.sh exec --node node2 ps -ef   # ... or on a compute node
    scripts/local-cluster.sh down                       # stop it; nothing is left behind

(`python -m tests.cluster.localcluster ...` from the repository root is the same.) The
`multinode` tests use it through the `cluster` fixture in tests/cluster/conftest.py.
Needs root, util-linux (unshare, nsenter), iproute2, and Debian's slurm-wlm, munge, openssh-server.

Each node (`login`, `node1`..`nodeN`) is a set of namespaces made by `unshare`: PID (with its
own /proc, so ps, psutil and SLURM's proctrack see only that node), mount (its own /run,
/etc/hosts, /etc/passwd), network and UTS (its hostname). The login node holds a bridge with the
cluster's first address; each compute node joins it through a veth pair with an address of its
own. Nothing is created in the machine's network namespace, so all traffic stays between these
namespaces. The login node runs munged and slurmctld (clients run there too, as on a cluster's
login node); every compute node runs slurmd and sshd (port 22 of its own network). Every compute
node also has a `docker0` with the same address on each, as Docker leaves on many hosts: an
interface that exists everywhere and reaches nothing, on which Open MPI's TCP transport hangs
unless told which network to use (slurm.launch does).

`--link RATE` (tc's units: 100mbit, 1gbit) shapes each compute node's link in both directions
with a token bucket (`tc qdisc ... tbf`; netem's qdisc is not available here): the node's eth0
(what it sends) and its peer on the bridge (what it receives). The rate is in the state file and
in every command's and job's environment as LOCAL_CLUSTER_LINK, which `bench allreduce` records.
The qdiscs live on the node's links, so they go with them.

ssh is set up as on a cluster with a shared home: the nodes' /etc/passwd gives root the home
CLUSTER_DIR/home, whose .ssh holds the user key, authorized_keys and known_hosts (every node's
host key); so plain `ssh node2` works, as horovodrun uses it. The machine's /root and /etc/ssh
are never touched.

Teardown: a node's first process is the init of its PID namespace; killing it makes the kernel
kill every process of the node and free its namespaces, and with them its links. The inits
die with the process that started the cluster (PR_SET_PDEATHSIG on `unshare --kill-child`), so
even a SIGKILLed test run leaves no daemon, namespace or link behind; the directory such a run
leaves is removed by the next start (its owner's PID is recorded in it).
"""
from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from toolkit.environment import pid_alive

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "login"
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
PROGRAMS = ("unshare", "nsenter", "ip", "mount", "munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sshd",
            "ssh", "ssh-keygen")
# More CPUs than the machine has (SlurmdParameters=config_overrides): one node must take a
# 3-rank job, the single-node reference of the 3-node runs.
NODE_CPUS = 4
START_TIMEOUT_S = 30
# slurmctld marks a node DOWN after SlurmdTimeout s without an answer, and a job that was on a lost
# node ends only then (300 s by default). Shorter here, but longer than ssh takes to notice a lost
# node (ServerAlive* below: 15-20 s), so that, as on a real cluster, the launcher ends the job first
# (FAILED, with its one-line reason) rather than slurmctld (NODE_FAIL, and a requeue).
SLURMD_TIMEOUT_S = 30
# Ended jobs stay in the controller this long: the tests read them after they end.
MIN_JOB_AGE_S = 600
# Where `up` keeps its cluster (the tests' clusters are in fresh temporary directories instead).
DEFAULT_DIR = Path(tempfile.gettempdir()) / "local-cluster"
# Temporary cluster directories: PREFIX + owner PID + "-" + random.
PREFIX = "local-cluster-"
# Link names: in the login node's network namespace only; the prefix makes them recognisable.
BRIDGE = "lc-br"
OWNER_FILE = "owner"
STATE_FILE = "state.json"
LINK_VARIABLE = "LOCAL_CLUSTER_LINK"


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        # PR_SET_PDEATHSIG: SIGKILL this process when the thread that started it exits, however it exits.
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return preexec


def remove_if_orphaned(directory: Path) -> bool:
    """Remove a cluster directory whose owner process is gone (it was SIGKILLed before its teardown)."""
    try:
        owner = int((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return False
    if pid_alive(owner):
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return True


def free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """/24s in 10.213.0.0/16 that overlap none of the machine's own addresses.

    The cluster's namespaces are not connected to the machine's network, so an overlap would not
    leak traffic, but it would make addresses in logs ambiguous."""
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    taken = [ipaddress.ip_interface(f.split()[3]).network for f in out.splitlines() if " inet " in f]
    free = [c for c in ipaddress.ip_network("10.213.0.0/16").subnets(new_prefix=24)
            if not any(c.overlaps(net) for net in taken)]
    if len(free) < count:
        raise RuntimeError("no free /24 in 10.213.0.0/16 for the local cluster")
    return free[:count]


def cluster_env(conf: Path, link: str | None = None) -> dict[str, str]:
    """The environment of commands run on the cluster (jobs inherit it from sbatch)."""
    return {**os.environ, "SLURM_CONF": str(conf), "PATH": SEARCH_PATH,
            # Every node shares this machine's cores: an MPI rank that spins waiting for a message takes
            # the core from the rank it waits for (3 ranks on 2 cores trained 2x slower without this).
            "OMPI_MCA_mpi_yield_when_idle": "1",
            # So that what is measured on a shaped cluster can say so (bench allreduce records it).
            **({LINK_VARIABLE: link} if link else {})}


def tbf_qdisc(device: str, link: str) -> list[str]:
    """tc's arguments shaping `device` to `link` (e.g. 1gbit): a token bucket whose burst is 5 ms of the rate.

    A burst under rate/HZ cannot reach the rate; 5 ms covers HZ 250 and up. 50 ms of queue absorbs TCP's bursts."""
    from bench.scaling import parse_rate
    burst = max(int(parse_rate(link) / 8 * 0.005), 16 * 1024)
    return ["qdisc", "add", "dev", device, "root", "tbf", "rate", link, "burst", str(burst), "latency", "50ms"]


def real_memory_mb() -> int:
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True,
                         env={**os.environ, "PATH": SEARCH_PATH}).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return int(fields["RealMemory"])


def slurm_conf(root: Path, controller: tuple[str, str], nodes: Sequence[tuple[str, str]], cpus: int,
               min_job_age_s: int, ports: tuple[int, int] | None = None) -> str:
    """slurm.conf for a cluster whose files all live under `root` (DEVELOPERS.md: "The local SLURM clusters").

    controller and nodes are (name, address) pairs; `ports` (slurmctld, slurmd) for clusters that
    share a network with others, e.g. a one-node cluster on 127.0.0.1."""
    name, address = controller
    memory = real_memory_mb()
    lines = [
        "ClusterName=local",
        f"SlurmctldHost={name}({address})",
        *([f"SlurmctldPort={ports[0]}", f"SlurmdPort={ports[1]}"] if ports else []),
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        # cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
        f"AuthInfo=socket={root}/munge/munge.socket.2,cred_expire=10",
        f"StateSaveLocation={root}/state",
        # %n: the node's name, so nodes sharing this file system keep their files apart.
        f"SlurmdSpoolDir={root}/spool/%n",
        f"SlurmctldPidFile={root}/run/slurmctld.pid",
        f"SlurmdPidFile={root}/run/slurmd-%n.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd-%n.log",
        # Each node's own temporary directory, as on a cluster: PMIx puts per-step directories there
        # whose names would collide in a /tmp shared by every node.
        f"TmpFS={root}/tmp/%n",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={root}/log/jobcomp.txt",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerParameters=batch_sched_delay=0",
        "MpiDefault=none",
        "MailProg=/bin/true",
        "ReturnToService=2",
        "KillWait=5",
        f"SlurmdTimeout={SLURMD_TIMEOUT_S}",
        f"MinJobAge={min_job_age_s}",
        "EnforcePartLimits=ALL",
        "SlurmdParameters=config_overrides",
        *(f"NodeName={n} NodeAddr={a} CPUs={cpus} RealMemory={memory} State=UNKNOWN" for n, a in nodes),
        f"PartitionName=debug Nodes={','.join(n for n, _ in nodes)} Default=YES MaxTime=INFINITE State=UP",
    ]
    for sub in ("etc", "munge", "state", "log", "run", *(f"{d}/{n}" for n, _ in nodes for d in ("spool", "tmp"))):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # munged refuses a socket directory that others can write to; clients need o+x on it.
    (root / "munge").chmod(0o755)
    return "\n".join(lines) + "\n"


def munged_command(root: Path) -> list[str]:
    """munged in the foreground (a fixture or init waits on it), every file under `root`; makes the key."""
    key = root / "etc" / "munge.key"
    if not key.exists():
        subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, capture_output=True,
                       env={**os.environ, "PATH": SEARCH_PATH})
    return ["munged", "-F", f"--key-file={key}", f"--socket={root}/munge/munge.socket.2",
            f"--pid-file={root}/run/munged.pid", f"--seed-file={root}/munge/seed", f"--log-file={root}/log/munged.log"]


def wait_for(predicate: Callable[[], bool], what: str, failed: Callable[[], str | None], logs: Path,
             timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll until `predicate()`; RuntimeError with the logs' ends if `failed()` names a reason or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        reason = failed() or (f"not within {timeout_s:g} s" if time.monotonic() > deadline else None)
        if reason:
            tails = "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}"
                              for f in sorted([*logs.glob("*.log"), *logs.glob("*.out")]))
            raise RuntimeError(f"local SLURM: waiting for {what} failed ({reason})\n{tails}")
        time.sleep(0.2)


# ---------------------------------------------------------------- inside a node: PID 1 of its namespace

def node_init(spec: dict) -> None:
    """PID 1 of a node: its hostname and files, then its daemons once the network is up; reaps orphans.

    The orchestrator ends the node with SIGKILL to this process: the kernel then kills every other
    process of the node (its PID namespace's init is gone)."""
    socket.sethostname(spec["hostname"])
    # The node's own /run (sshd needs /run/sshd; nothing is written to the machine's /run).
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run"], check=True)
    os.mkdir("/run/sshd", 0o755)
    for source, target in spec["binds"]:
        subprocess.run(["mount", "--bind", source, target], check=True)
    # The orchestrator writes a line once it has given this node its address.
    sys.stdin.readline()
    devnull = os.open(os.devnull, os.O_RDONLY)
    daemons = {}
    for name, argv in spec["daemons"]:
        log = os.open(f"{spec['logs']}/{name}.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)]
        daemons[os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)] = name
        os.close(log)
    # Daemonising children (slurmstepd) are re-parented to PID 1: reap them, or they stay zombies
    # that SLURM's proctrack still counts as the job's processes.
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            signal.pause()
            continue
        if pid in daemons:
            print(f"{spec['hostname']}: {daemons.pop(pid)} exited ({os.waitstatus_to_exitcode(status)})", flush=True)


# ---------------------------------------------------------------- outside: the orchestrator

class Controller:
    """What the tests ask a running cluster's controller; `run` runs a SLURM client command."""

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        raise NotImplementedError

    def jobs(self) -> list[dict]:
        """Every job the controller holds, as `squeue --json` records (Slurm 22.05 ignores its filters)."""
        return json.loads(self.run("squeue", "--json").stdout)["jobs"]

    def job(self, job_id: str) -> dict:
        """The controller's record of one job (e.g. job_state, name, current_working_directory)."""
        return next(j for j in self.jobs() if j["job_id"] == int(job_id))


@dataclass
class Node:
    name: str
    address: str
    unshare: subprocess.Popen
    init: int                     # the node's PID 1, as the machine sees it
    namespaces: dict[str, int]    # kind -> inode, to find anything left of the node


class Cluster(Controller):
    """A running cluster: `login(...)` runs a command on the login node, `on(node, ...)` on any node."""

    def __init__(self, root: Path, size: int = 3, link: str | None = None):
        self.root, self.size, self.link = root, size, link
        self.subnet, trap = free_subnets(2)
        # Like the docker0 many hosts have: the same address on every node, reaching nothing.
        self.trap_network = str(trap)
        self.trap = f"{trap.network_address + 1}/{trap.prefixlen}"
        base = self.subnet.network_address
        # login .1, nodeN .10+N
        self.addresses = {LOGIN: str(base + 1), **{f"node{i}": str(base + 10 + i) for i in range(1, size + 1)}}
        self.prefix = self.subnet.prefixlen
        self.nodes: dict[str, Node] = {}
        self.gone: list[Node] = []      # nodes killed or stopped: checked for leftovers too
        self.conf = root / "etc" / "slurm.conf"
        self.env = cluster_env(self.conf, link)

    @property
    def compute_nodes(self) -> list[str]:
        return [n for n in self.addresses if n != LOGIN]

    # ---- starting

    @classmethod
    def start(cls, root: Path, size: int = 3, link: str | None = None) -> "Cluster":
        cluster = cls(root, size, link)
        try:
            cluster._write_files()
            cluster._start_node(LOGIN)
            wait_for(lambda: (root / "munge" / "munge.socket.2").exists(), "munged", cluster._dead, root / "log")
            for name in cluster.compute_nodes:
                cluster._start_node(name)
            cluster.wait_until_idle(cluster.compute_nodes)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _write_files(self) -> None:
        root = self.root
        nodes = [(n, self.addresses[n]) for n in self.compute_nodes]
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(slurm_conf(root, (LOGIN, self.addresses[LOGIN]), nodes, NODE_CPUS, MIN_JOB_AGE_S))
        (root / "etc" / "hosts").write_text(
            "127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in self.addresses.items()))
        home = root / "home"
        # Every node's root has this home (their /etc/passwd says so), as with a shared home on a cluster.
        passwd = Path("/etc/passwd").read_text().splitlines()
        (root / "etc" / "passwd").write_text("".join(
            (":".join(f[:5] + [str(home)] + f[6:]) if f[0] == "root" else line) + "\n"
            for line in passwd for f in [line.split(":")]))
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, mode=0o700)
        home.chmod(0o700)
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-C", "root@local-cluster", "-f", str(ssh / "id_ed25519")], check=True)
        shutil.copy(ssh / "id_ed25519.pub", ssh / "authorized_keys")
        known = []
        for name in self.compute_nodes:
            keys = root / "nodes" / name
            keys.mkdir(parents=True)
            subprocess.run([*keygen, "-C", name, "-f", str(keys / "ssh_host_ed25519_key")], check=True)
            known.append(f"{name},{self.addresses[name]} {(keys / 'ssh_host_ed25519_key.pub').read_text()}")
            (keys / "sshd_config").write_text("\n".join([
                "ListenAddress 0.0.0.0",
                f"HostKey {keys / 'ssh_host_ed25519_key'}",
                "PidFile none",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "AuthorizedKeysFile .ssh/authorized_keys",
                "PrintMotd no",
                "PrintLastLog no",
                "UseDNS no",
                # horovodrun opens one connection per remote rank at once, and more to probe the hosts.
                "MaxStartups 64",
            ]) + "\n")
        (ssh / "known_hosts").write_text("".join(known))
        (ssh / "config").write_text("\n".join([
            "Host *",
            "    BatchMode yes",
            "    UserKnownHostsFile ~/.ssh/known_hosts",
            "    GlobalKnownHostsFile /dev/null",
            "    ConnectTimeout 10",
            # A node that vanishes without closing its connections is noticed within 15 s.
            "    ServerAliveInterval 5",
            "    ServerAliveCountMax 3",
            "    LogLevel ERROR",
        ]) + "\n")

    def _spec(self, name: str) -> dict:
        root = self.root
        if name == LOGIN:
            daemons = [("munged", munged_command(root)), ("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])]
        else:
            keys = root / "nodes" / name
            daemons = [("sshd-" + name, ["/usr/sbin/sshd", "-D", "-e", "-f", str(keys / "sshd_config")]),
                       ("slurmd-" + name, ["slurmd", "-D", "-f", str(self.conf), "-N", name])]
        return {"hostname": name, "logs": str(root / "log"), "daemons": daemons,
                "binds": [(str(root / "etc" / "hosts"), "/etc/hosts"), (str(root / "etc" / "passwd"), "/etc/passwd")]}

    def _start_node(self, name: str) -> None:
        # A restarted node's daemons start new logs (readiness is read from them); the old ones are kept.
        for old in (self.root / "log").glob(f"*-{name}.out"):
            old.rename(old.with_suffix(".out.old"))
        command = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--net", "--uts",
                   sys.executable, "-m", "tests.cluster.localcluster", "init", json.dumps(self._spec(name))]
        log = open(self.root / "log" / f"init-{name}.log", "a")
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env={**self.env, "PYTHONPATH": str(ROOT)}, preexec_fn=_die_with_parent(os.getpid()))
        log.close()
        init = self._child_of(proc)
        node = Node(name, self.addresses[name], proc, init,
                    {kind: os.stat(f"/proc/{init}/ns/{kind}").st_ino for kind in ("pid", "mnt", "net", "uts")})
        self.nodes[name] = node
        self._network(node)
        proc.stdin.write("up\n")
        proc.stdin.close()

    def _child_of(self, proc: subprocess.Popen) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            except OSError:
                children = []
            if children:
                return int(children[0])
            time.sleep(0.01)
        raise RuntimeError(f"local SLURM: unshare exited ({proc.poll()}) before starting the node: see "
                           f"{self.root / 'log'}")

    def _ip(self, node: Node, commands: Iterable[str]) -> None:
        subprocess.run(["nsenter", f"--target={node.init}", "--net", "ip", "-batch", "-"], input="\n".join(commands),
                       text=True, check=True, capture_output=True)

    def _network(self, node: Node) -> None:
        address = f"{node.address}/{self.prefix}"
        if node.name == LOGIN:
            self._ip(node, ["link set lo up", f"link add {BRIDGE} type bridge", f"addr add {address} dev {BRIDGE}",
                            f"link set {BRIDGE} up"])
            return
        # The pair is made in the login node's namespace; its eth0 end moves into the node's ("netns PID"
        # names the namespace of that process, as seen by `ip`, which runs in the machine's PID namespace).
        self._ip(self.nodes[LOGIN], [f"link add lc-{node.name} type veth peer name eth0 netns {node.init}",
                                     f"link set lc-{node.name} master {BRIDGE} up"])
        self._ip(node, ["link set lo up", f"addr add {address} dev eth0", "link set eth0 up",
                        # The trap for launchers that use every interface (Open MPI does, and hangs).
                        "link add docker0 type veth peer name docker0-peer", f"addr add {self.trap} dev docker0",
                        "link set docker0 up", "link set docker0-peer up"])
        if self.link:
            self._tc(node, tbf_qdisc("eth0", self.link))
            self._tc(self.nodes[LOGIN], tbf_qdisc(f"lc-{node.name}", self.link))

    def _tc(self, node: Node, args: Sequence[str]) -> None:
        subprocess.run(["nsenter", f"--target={node.init}", "--net", "tc", *args], text=True, check=True,
                       capture_output=True)

    def qdiscs(self, name: str) -> tuple[str, str]:
        """`tc qdisc show` of a compute node's link at both ends: its eth0, and its peer on the login's bridge."""
        show = [["nsenter", f"--target={self.nodes[n].init}", "--net", "tc", "qdisc", "show", "dev", dev]
                for n, dev in ((name, "eth0"), (LOGIN, f"lc-{name}"))]
        return tuple(subprocess.run(c, text=True, check=True, capture_output=True).stdout for c in show)

    def _dead(self) -> str | None:
        dead = [n.name for n in self.nodes.values() if n.unshare.poll() is not None]
        return f"node(s) exited: {', '.join(dead)}" if dead else None

    def node_states(self) -> dict[str, str]:
        out = self.login("sinfo", "-h", "-N", "-o", "%N %T", check=False).stdout
        return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)

    def wait_until_idle(self, names: Sequence[str]) -> None:
        """Until slurmd on each node has registered and its sshd listens."""
        def ready() -> bool:
            states = self.node_states()
            listening = all("Server listening on 0.0.0.0 port 22" in self._log(f"sshd-{n}") for n in names)
            return listening and all(states.get(n) == "idle" for n in names)
        wait_for(ready, f"{', '.join(names)} to be idle with sshd listening", self._dead, self.root / "log")

    def _log(self, name: str) -> str:
        try:
            return (self.root / "log" / f"{name}.out").read_text(errors="replace")
        except OSError:
            return ""

    # ---- using

    def command(self, node: str, argv: Sequence[str], cwd: str | Path | None = None) -> list[str]:
        """`argv` as run on `node`: in every namespace of the node, in `cwd` (default: this process's)."""
        return ["nsenter", f"--target={self.nodes[node].init}", "--pid", "--mount", "--net", "--uts",
                f"--wd={cwd or os.getcwd()}", "--", *map(str, argv)]

    def on(self, node: str, *argv: str | Path, check: bool = True,
           cwd: str | Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(node, argv, cwd), env=self.env, capture_output=True, text=True,
                              check=check)

    def login(self, *argv: str | Path, **kwargs) -> subprocess.CompletedProcess:
        """A command on the login node, where users submit jobs from."""
        return self.on(LOGIN, *argv, **kwargs)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.login(*args, check=check)

    def processes(self, node: str) -> list[int]:
        """The machine's PIDs of every process on `node`."""
        return in_namespace("pid", self.nodes[node].namespaces["pid"])

    def kill_node(self, name: str) -> None:
        """The node is lost: all its processes die at once (SIGKILL to its init) and its network goes."""
        node = self.nodes.pop(name)
        os.kill(node.init, signal.SIGKILL)
        node.unshare.wait()
        self.gone.append(node)

    def restart_node(self, name: str) -> None:
        """Start a node again (after kill_node), with its old name, address and keys."""
        self._start_node(name)
        self.wait_until_idle([name])

    # ---- stopping

    def stop(self) -> None:
        """Kill every node (and so every job on it); remove the cluster's directory."""
        for name in [n for n in self.nodes if n != LOGIN] + [n for n in self.nodes if n == LOGIN]:
            self.kill_node(name)
        shutil.rmtree(self.root, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Anything of the cluster still there after stop(): processes, namespaces, links, files."""
        found = []
        for node in self.gone + list(self.nodes.values()):
            for kind, inode in node.namespaces.items():
                found += [f"process {pid} in {node.name}'s {kind} namespace" for pid in in_namespace(kind, inode)]
        out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
        found += [f"link {f.split(':')[1].strip()} in the machine's namespace" for f in out.splitlines()
                  if f.split(":")[1].strip().startswith("lc-")]
        if self.root.exists():
            found.append(f"directory {self.root}")
        return found


def in_namespace(kind: str, inode: int) -> list[int]:
    """PIDs of the processes in the namespace (the kernel frees a namespace nothing else holds with its
    last process: the cluster makes no bind mounts of namespaces and keeps no handles to them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / kind).st_ino == inode:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def new_root(parent: Path = Path(tempfile.gettempdir())) -> Path:
    """A fresh cluster directory owned by this process; first, remove those whose owners died."""
    for stale in parent.glob(f"{PREFIX}*"):
        remove_if_orphaned(stale)
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
    own(root)
    return root


def own(root: Path) -> None:
    # munged needs o+x on every directory above its socket; mkdtemp makes 0700 ones.
    root.chmod(0o755)
    (root / OWNER_FILE).write_text(str(os.getpid()))


# ---------------------------------------------------------------- scripts/local-cluster.sh

def _serve(directory: Path, size: int, link: str | None = None) -> int:
    """Run a cluster in `directory` until SIGTERM or SIGINT (what `up` starts in the background)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    cluster = Cluster.start(directory, size, link)
    state = {"nodes": {n.name: n.init for n in cluster.nodes.values()}, "addresses": cluster.addresses,
             "slurm_conf": str(cluster.conf), "link": link}
    (directory / STATE_FILE).write_text(json.dumps(state))
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    cluster.stop()
    return 0


def private_parent(directory: Path) -> Path | None:
    """The first directory above `directory` that not everyone may search: munged refuses a socket below it."""
    return next((parent for parent in reversed(directory.resolve().parents)
                 if parent.is_dir() and not parent.stat().st_mode & stat.S_IXOTH), None)


def _up(directory: Path, size: int, link: str | None = None) -> int:
    if directory.exists() and not remove_if_orphaned(directory):
        print(f"local-cluster: already up in {directory} (`scripts/local-cluster.sh down` stops it)", file=sys.stderr)
        return 2
    private = private_parent(directory)
    if private is not None:
        print(f"local-cluster: {private} is private (mode {stat.S_IMODE(private.stat().st_mode):04o}), and munged "
              f"needs every directory above its socket searchable by all: chmod o+x {private}, or choose a --dir "
              "outside it", file=sys.stderr)
        return 2
    directory.mkdir(parents=True)
    own(directory)
    # Read back through this handle: a server that fails to start removes the directory, its log with it.
    log = open(directory / "serve.log", "w+")
    server = subprocess.Popen([sys.executable, "-m", "tests.cluster.localcluster", "serve", "--dir", str(directory),
                               "--nodes", str(size), *(["--link", link] if link else [])],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    # The server owns the directory from now on (its death makes it stale).
    (directory / OWNER_FILE).write_text(str(server.pid))
    while not (directory / STATE_FILE).exists():
        if server.poll() is not None:
            log.seek(0)
            print(log.read(), file=sys.stderr)
            shutil.rmtree(directory, ignore_errors=True)
            print("local-cluster: the cluster did not start (its log is above)", file=sys.stderr)
            return 1
        time.sleep(0.2)
    state = json.loads((directory / STATE_FILE).read_text())
    print(f"local-cluster: up in {directory}: login + {size} nodes on {', '.join(sorted(state['addresses'].values()))}"
          + (f"; each node's link shaped to {link} each way ({LINK_VARIABLE})" if link else ""))
    print("  scripts/local-cluster.sh exec sinfo -N         (commands run on the login node; SLURM_CONF is set)\n"
          "  scripts/local-cluster.sh exec --node node1 CMD (on a compute node)\n"
          "  scripts/local-cluster.sh down")
    return 0


def _state(directory: Path) -> dict:
    if not (directory / STATE_FILE).exists() or remove_if_orphaned(directory):
        raise SystemExit(f"local-cluster: no cluster is up in {directory}: run scripts/local-cluster.sh up")
    return json.loads((directory / STATE_FILE).read_text())


def _down(directory: Path) -> int:
    if not directory.exists():
        print(f"local-cluster: nothing to stop in {directory}")
        return 0
    if remove_if_orphaned(directory):
        print(f"local-cluster: its server had died; removed {directory}")
        return 0
    owner = int((directory / OWNER_FILE).read_text())
    os.kill(owner, signal.SIGTERM)
    deadline = time.monotonic() + START_TIMEOUT_S
    while pid_alive(owner) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(owner):
        print(f"local-cluster: server {owner} did not stop; its nodes die with it: kill -9 {owner}", file=sys.stderr)
        return 1
    shutil.rmtree(directory, ignore_errors=True)
    print(f"local-cluster: down; removed {directory}")
    return 0


def _exec(directory: Path, node: str, argv: Sequence[str]) -> int:
    state = _state(directory)
    if node not in state["nodes"]:
        raise SystemExit(f"local-cluster: no node {node!r}: choose one of {', '.join(state['nodes'])}")
    os.execvpe("nsenter", ["nsenter", f"--target={state['nodes'][node]}", "--pid", "--mount", "--net", "--uts",
                           f"--wd={os.getcwd()}", "--", *(argv or ["bash"])],
               cluster_env(Path(state["slurm_conf"]), state.get("link")))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["init"]:
        node_init(json.loads(argv[1]))
        return 0
    parser = argparse.ArgumentParser(prog="scripts/local-cluster.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"the cluster's files (default {DEFAULT_DIR})")
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("up", "serve"):
        p = sub.add_parser(name, help="start a cluster" if name == "up" else argparse.SUPPRESS)
        p.add_argument("--nodes", type=int, default=3, help="compute nodes (default 3)")
        p.add_argument("--dir", type=Path, default=argparse.SUPPRESS)
        p.add_argument("--link", help="shape each node's link to this rate each way, tc's units (e.g. 1gbit)")
    sub.add_parser("down", help="stop it and remove its files")
    run = sub.add_parser("exec", help="run a command (default bash) on the login node or --node")
    run.add_argument("--node", default=LOGIN)
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.action in ("up", "serve") and not 1 <= args.nodes <= 200:
        parser.error(f"--nodes {args.nodes}: give 1 to 200")
    if getattr(args, "link", None):
        from bench.scaling import parse_rate
        from toolkit.cli import UsageError
        try:
            parse_rate(args.link)
        except UsageError as exc:
            parser.error(f"--link: {exc}")
    if args.action == "up":
        return _up(args.dir, args.nodes, args.link)
    if args.action == "serve":
        return _serve(args.dir, args.nodes, args.link)
    if args.action == "down":
        return _down(args.dir)
    return _exec(args.dir, args.node, args.command[1:] if args.command[:1] == ["--"] else args.command)


if __name__ == "__main__":
    sys.exit(main())
