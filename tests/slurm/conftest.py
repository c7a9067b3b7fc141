"""A real one-node SLURM cluster for the `slurm`-marked tests (DEVELOPERS.md: "The local SLURM clusters").

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
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.cluster.localcluster import SEARCH_PATH, Controller, munged_command, slurm_conf, wait_for

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch")
# More CPUs than the machine has (config_overrides): 2-rank jobs and small arrays must fit on 2 cores.
NODE_CPUS = 8
STOP_TIMEOUT_S = 10
# Ended jobs stay in the controller (squeue, scontrol) this long; the suite's jobs are read after they end.
MIN_JOB_AGE_S = 600
# The controller's smallest recommended MinJobAge; it purged such jobs about 10 s after they ended here.
FORGETFUL_MIN_JOB_AGE_S = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalCluster(Controller):
    root: Path
    env: dict[str, str]
    node: str
    procs: list[subprocess.Popen]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=check)

    def status(self, job_id: str, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
        """`python -m slurm.submit status JOB_ID ARGS` as a user runs it; `path` replaces PATH."""
        env = self.env if path is None else {**self.env, "PATH": path}
        return subprocess.run([sys.executable, "-m", "slurm.submit", "status", job_id, *args], env=env,
                              capture_output=True, text=True)

    def sbatch(self, *args: str) -> str:
        """Submit with sbatch itself (any text it accepts, unchecked by slurm.render); return the job id."""
        return self.run("sbatch", "--parsable", *args).stdout.strip()


def _start(root: Path, min_job_age_s: int) -> LocalCluster:
    node = socket.gethostname().split(".")[0]
    conf = root / "etc" / "slurm.conf"
    conf.parent.mkdir()
    conf.write_text(slurm_conf(root, (node, "127.0.0.1"), [(node, "127.0.0.1")], NODE_CPUS, min_job_age_s,
                               ports=(_free_port(), _free_port())))
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": SEARCH_PATH}
    cluster = LocalCluster(root=root, env=env, node=node, procs=[])
    commands = [munged_command(root), ["slurmctld", "-D", "-f", str(conf)], ["slurmd", "-D", "-f", str(conf)]]
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
    def dead() -> str | None:
        exited = [p.args[0] for p in cluster.procs if p.poll() is not None]
        return f"exited: {', '.join(exited)}" if exited else None
    try:
        wait_for(predicate, what, dead, cluster.root / "log")
    except RuntimeError:
        _stop(cluster)
        raise


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
