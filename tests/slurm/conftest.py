"""A real one-node SLURM cluster for the `slurm`-marked tests (see /work/shared/SLURM-LOCAL.md).

munged, slurmctld and slurmd run in the foreground under a temporary directory, on free
ports, so a second test session on the same machine does not collide with this one.
They are stopped by PID after every job is cancelled. Needs Debian's slurm-wlm and munge
(scripts/setup.sh installs them); without them the slurm tests are skipped. `slurm_cluster`
keeps ended jobs for 10 minutes; `forgetful_cluster`, a second one started only for the tests
that ask for it, forgets them within seconds, as a busy cluster does after its MinJobAge.

    .venv/bin/pytest tests/slurm -m slurm
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
# More CPUs than the machine has (config_overrides): 2-rank jobs and small arrays must fit on 2 cores.
NODE_CPUS = 8
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
# Ended jobs stay in the controller (squeue, scontrol) this long; the suite's jobs are read after they end.
MIN_JOB_AGE_S = 600
# The controller's smallest recommended MinJobAge; it purged such jobs about 10 s after they ended here.
FORGETFUL_MIN_JOB_AGE_S = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_memory_mb() -> int:
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return int(fields["RealMemory"])


@dataclass
class LocalCluster:
    root: Path
    env: dict[str, str]
    node: str
    procs: list[subprocess.Popen]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=check)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the controller holds, as `squeue --json` records (Slurm 22.05 ignores its filters)."""
        return json.loads(self.run("squeue", "--json").stdout)["jobs"]

    def job(self, job_id: str) -> dict[str, Any]:
        """The controller's record of one job (e.g. job_state, name, current_working_directory)."""
        return next(j for j in self.jobs() if j["job_id"] == int(job_id))

    def status(self, job_id: str, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
        """`python -m slurm.submit status JOB_ID ARGS` as a user runs it; `path` replaces PATH."""
        env = self.env if path is None else {**self.env, "PATH": path}
        return subprocess.run([sys.executable, "-m", "slurm.submit", "status", job_id, *args], env=env,
                              capture_output=True, text=True)

    def sbatch(self, *args: str) -> str:
        """Submit with sbatch itself (any text it accepts, unchecked by slurm.render); return the job id."""
        return self.run("sbatch", "--parsable", *args).stdout.strip()


def _write_config(root: Path, node: str, min_job_age_s: int) -> Path:
    conf = root / "etc" / "slurm.conf"
    ctld_port, slurmd_port = _free_port(), _free_port()
    lines = [
        "ClusterName=test",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        # cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
        f"AuthInfo=socket={root}/munge/munge.socket.2,cred_expire=10",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/run/slurmctld.pid",
        f"SlurmdPidFile={root}/run/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd.log",
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
        f"MinJobAge={min_job_age_s}",
        "EnforcePartLimits=ALL",
        "SlurmdParameters=config_overrides",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={_real_memory_mb()} State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _start(root: Path, min_job_age_s: int) -> LocalCluster:
    for sub in ("etc", "munge", "state", "spool", "log", "run"):
        (root / sub).mkdir()
    # munged refuses a socket directory that others can write to; it needs o+x for clients.
    (root / "munge").chmod(0o755)
    node = socket.gethostname().split(".")[0]
    conf = _write_config(root, node, min_job_age_s)
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": SEARCH_PATH}
    key = root / "etc" / "munge.key"
    subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, capture_output=True)
    cluster = LocalCluster(root=root, env=env, node=node, procs=[])
    commands = [
        ["munged", "-F", f"--key-file={key}", f"--socket={root}/munge/munge.socket.2",
         f"--pid-file={root}/run/munged.pid", f"--seed-file={root}/munge/seed",
         f"--log-file={root}/log/munged.log"],
        ["slurmctld", "-D", "-f", str(conf)],
        ["slurmd", "-D", "-f", str(conf)],
    ]
    for command in commands:
        log = open(root / "log" / f"{command[0]}.stdout", "w")
        cluster.procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
        if command[0] == "munged":
            _wait_for(lambda: (root / "munge" / "munge.socket.2").exists(), "munged socket", cluster)
    _wait_for(lambda: cluster.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip() == "idle",
              "the node to become idle", cluster)
    return cluster


def _wait_for(predicate, what: str, cluster: LocalCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not predicate():
        dead = [p.args[0] for p in cluster.procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            _stop(cluster)
            logs = "\n".join(f"--- {f.name}\n{f.read_text()[-2000:]}" for f in sorted((cluster.root / "log").iterdir()))
            raise RuntimeError(f"local SLURM: waiting for {what} failed (exited: {dead})\n{logs}")
        time.sleep(0.2)


def _stop(cluster: LocalCluster) -> None:
    # Running jobs outlive their daemons: cancel them and wait for an empty queue first.
    if all(p.poll() is None for p in cluster.procs):
        cluster.run("scancel", "--full", "--user", str(os.getuid()), check=False)
        deadline = time.monotonic() + STOP_TIMEOUT_S * 3
        while cluster.run("squeue", "-h", check=False).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.5)
    for proc in reversed(cluster.procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def _local_cluster(min_job_age_s: int) -> Iterator[LocalCluster]:
    missing = [p for p in PROGRAMS if shutil.which(p, path=SEARCH_PATH) is None]
    if missing:
        pytest.skip(f"SLURM/munge not installed ({', '.join(missing)}): run scripts/setup.sh")
    # Not under pytest's tmp_path: munged needs every directory above its socket world-executable,
    # and pytest's are 0700.
    root = Path(tempfile.mkdtemp(prefix="slurm-test-"))
    root.chmod(0o755)
    try:
        cluster = _start(root, min_job_age_s)
        try:
            yield cluster
        finally:
            _stop(cluster)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[LocalCluster]:
    with _local_cluster(MIN_JOB_AGE_S) as cluster:
        yield cluster


# Per module: stopped once the module that needs it is done.
@pytest.fixture(scope="module")
def forgetful_cluster() -> Iterator[LocalCluster]:
    with _local_cluster(FORGETFUL_MIN_JOB_AGE_S) as cluster:
        yield cluster
