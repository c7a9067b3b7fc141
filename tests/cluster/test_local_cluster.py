"""The local multi-node cluster itself, scripts/local-cluster.sh, and what slurm-submit refuses on it.

    .venv/bin/pytest tests/cluster/test_local_cluster.py      # about 20 s
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.cluster.conftest import skip_unless_possible
from tests.cluster.localcluster import OWNER_FILE, ROOT, STATE_FILE, in_namespace

pytestmark = [pytest.mark.multinode, pytest.mark.slurm]

SCRIPT = ROOT / "scripts" / "local-cluster.sh"


def test_nodes_have_their_own_hostnames_addresses_and_passwordless_ssh(cluster):
    out = cluster.login("srun", "--nodes", "3", "--ntasks", "3", "--label", "hostname").stdout
    assert sorted(out.split()) == ["0:", "1:", "2:", "node1", "node2", "node3"]
    assert cluster.on("node1", "ssh", "node3", "hostname").stdout == "node3\n"
    for node in cluster.compute_nodes:
        routes = cluster.on(node, "ip", "-4", "-o", "route").stdout
        # Two connected networks (the cluster's, the docker0 trap), no default route: nothing leaves the cluster.
        assert [r.split()[0] for r in routes.splitlines()] == sorted([str(cluster.subnet), cluster.trap_network])
        assert f"inet {cluster.addresses[node]}/" in cluster.on(node, "ip", "-4", "-o", "addr", "show", "eth0").stdout
        # Each node sees its own processes only: its init, sshd, slurmd, and this ps.
        assert len(cluster.on(node, "ps", "-e", "-o", "pid=").stdout.split()) == 4


def hosts_file(tmp_path: Path) -> str:
    (tmp_path / "hosts").write_text("node[1-2]\nnode7\n")
    return str(tmp_path / "hosts")


def venv_without_horovod(tmp_path: Path) -> str:
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text("")
    (tmp_path / "venv" / "bin" / "python").symlink_to("/bin/false")
    return str(tmp_path / "venv")


@pytest.mark.parametrize("options,message", [
    (lambda d: ["--nodelist", "node1,node9"],
     "--nodelist names node9, which this cluster does not have: choose from the nodes `sinfo -N` lists"),
    (lambda d: ["--nodes", "2", "--nodelist", hosts_file(d)],
     "--nodelist names node7, which this cluster does not have"),
    (lambda d: ["--nodes", "2", "--nodelist", "node[1-3]"],
     "--nodelist names 3 nodes but --nodes is 2: set --nodes 3 or list fewer"),
    (lambda d: ["--nodelist", "node[3-1]"],
     "scontrol cannot expand --nodelist 'node[3-1]' (Invalid hostlist: node[3-1]): write it like"),
    (lambda d: ["--gpus-per-node", "2", "--ntasks-per-node", "3"],
     "--ntasks-per-node 3 does not match --gpus-per-node 2: Horovod runs one rank per GPU"),
    (lambda d: ["--launcher", "srun-pmix", "--venv", venv_without_horovod(d)],
     "--launcher srun-pmix needs Horovod built with MPI, and the one in "),
])
def test_bad_input_is_one_line_exit_2_and_nothing_is_submitted(cluster, tmp_path, options, message):
    before = cluster.jobs()
    proc = cluster.login(sys.executable, "-m", "slurm.submit", "train", "--nodes", "1", "--gpus-per-node", "0",
                         "--workdir", tmp_path, "--venv", sys.prefix, *options(tmp_path), check=False)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith(f"slurm-submit: error: {message}") and proc.stderr.count("\n") == 1
    assert cluster.jobs() == before
    assert not (tmp_path / "slurm-logs").exists()


def script(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, "--dir", directory, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable})


@pytest.fixture
def script_dir():
    """A directory for a cluster of the script's own (munged wants every directory above it world-searchable,
    which pytest's tmp_path is not)."""
    skip_unless_possible()
    parent = Path(tempfile.mkdtemp(prefix="local-cluster-script-test-"))
    parent.chmod(0o755)
    yield parent / "cluster"
    shutil.rmtree(parent)


def namespaces(directory: Path) -> list[tuple[str, int]]:
    """Every namespace of the script's cluster, from its state file."""
    inits = json.loads((directory / STATE_FILE).read_text())["nodes"].values()
    return [(kind, os.stat(f"/proc/{pid}/ns/{kind}").st_ino) for pid in inits for kind in ("pid", "mnt", "net", "uts")]


def test_script_up_exec_down_leaves_nothing(script_dir):
    up = script(script_dir, "up", "--nodes", "2")
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith(f"local-cluster: up in {script_dir}: login + 2 nodes on 10.")
    made = namespaces(script_dir)
    assert script(script_dir, "exec", "--node", "node2", "hostname").stdout == "node2\n"
    assert script(script_dir, "exec", "sinfo", "-h", "-N", "-o", "%N %T").stdout.split() == [
        "node1", "idle", "node2", "idle"]
    assert script(script_dir, "up").returncode == 2
    down = script(script_dir, "down")
    assert down.returncode == 0, down.stderr
    assert not script_dir.exists()
    assert not [pid for kind, inode in made for pid in in_namespace(kind, inode)]


def test_up_below_a_private_directory_is_one_line_and_exit_2(script_dir):
    # munged refuses a socket below a directory others cannot search: the cluster would die at start.
    private = script_dir.parent / "private"
    private.mkdir(mode=0o700)
    up = script(private / "cluster", "up", "--nodes", "1")
    assert (up.returncode, up.stdout) == (2, "")
    assert up.stderr == (f"local-cluster: {private} is private (mode 0700), and munged needs every directory above "
                         f"its socket searchable by all: chmod o+x {private}, or choose a --dir outside it\n")
    assert list(private.iterdir()) == []


def test_a_killed_owner_takes_every_node_with_it(script_dir):
    assert script(script_dir, "up", "--nodes", "2").returncode == 0
    made = namespaces(script_dir)
    # SIGKILL: no teardown code runs; the nodes die with their owner (PR_SET_PDEATHSIG, unshare --kill-child).
    os.kill(int((script_dir / OWNER_FILE).read_text()), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while [pid for kind, inode in made for pid in in_namespace(kind, inode)]:
        assert time.monotonic() < deadline, "processes of the cluster outlived its owner"
        time.sleep(0.1)
    down = script(script_dir, "down")
    assert down.stdout == f"local-cluster: its server had died; removed {script_dir}\n"
    assert not script_dir.exists()
