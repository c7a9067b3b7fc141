"""The launcher's allocation parsing, launch commands, network choice, failure reports, and its check
that a rank handles the signal."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from slurm.launch import (
    Elastic,
    Failure,
    allocation_hosts,
    catches,
    discovery_script,
    elastic_command,
    elastic_interface,
    first_failure,
    launch_command,
    launch_env,
    node_network,
    parse_tasks_per_node,
    rank_hosts,
    read_hosts_file,
)
from tests.conftest import cli_env
from toolkit.cli import UsageError


@pytest.mark.parametrize("value,counts", [("4", [4]), ("4(x2)", [4, 4]), ("2(x2),1", [2, 2, 1]), ("1,3", [1, 3])])
def test_tasks_per_node_formats(value, counts):
    assert parse_tasks_per_node(value) == counts


def test_allocation_hosts_pairs_hosts_with_slots():
    env = {"SLURM_JOB_NODELIST": "gpu[01-02]", "SLURM_TASKS_PER_NODE": "4(x2)"}
    assert allocation_hosts(env, lambda nodelist: ["gpu01", "gpu02"]) == [("gpu01", 4), ("gpu02", 4)]
    with pytest.raises(UsageError, match="2 hosts .* but 1 task counts"):
        allocation_hosts({**env, "SLURM_TASKS_PER_NODE": "4"}, lambda nodelist: ["gpu01", "gpu02"])
    with pytest.raises(UsageError, match="SLURM_JOB_NODELIST is not set: run this inside a SLURM job"):
        allocation_hosts({}, lambda nodelist: [])
    with pytest.raises(UsageError, match="cannot parse SLURM_TASKS_PER_NODE"):
        allocation_hosts({**env, "SLURM_TASKS_PER_NODE": "four"}, lambda nodelist: ["gpu01", "gpu02"])


def test_launch_commands():
    hosts = [("gpu01", 4), ("gpu02", 4)]
    cmd = ["python", "-m", "alexnet.train", "--resume"]
    assert launch_command("horovodrun", hosts, cmd) == [
        "horovodrun", "-np", "8", "-H", "gpu01:4,gpu02:4", "--gloo", *cmd]
    assert launch_command("horovodrun", hosts, cmd, "ib0") == [
        "horovodrun", "-np", "8", "-H", "gpu01:4,gpu02:4", "--gloo", "--network-interface", "ib0", *cmd]
    assert launch_command("srun-pmi2", hosts, cmd) == ["srun", "--mpi=pmi2", "--kill-on-bad-exit=1", *cmd]
    assert launch_command("srun-pmix", hosts, cmd, "ib0") == ["srun", "--mpi=pmix", "--kill-on-bad-exit=1", *cmd]


def test_ranks_fill_each_node_in_turn():
    assert rank_hosts([("node1", 2), ("node2", 1), ("node3", 2)]) == ["node1", "node1", "node2", "node3", "node3"]


HOSTS = ["node1", "node2", "node3"]


@pytest.mark.parametrize("line,failure", [
    ("Process 2 exit with status code 255.\n",
     Failure(2, "node3", "ssh lost the connection: the node, its network or its sshd went away", 255)),
    ("Process 1 exit with status code 137.\n", Failure(1, "node2", "killed by SIGKILL", 137)),
    ("Process 0 exit with status code -15.\n", Failure(0, "node1", "killed by SIGTERM", -15)),
    ("Process 0 exit with status code 2.\n", Failure(0, "node1", "exit status 2", 2)),
    ("[1]<stdout>:Process 0 exit with status code 2.\n", None),   # a rank's own output
    ("Terminating remaining workers after failure of Process 2.\n", None),
])
def test_horovodrun_reports_of_failed_ranks(line, failure):
    assert first_failure("horovodrun", line, HOSTS) == failure


@pytest.mark.parametrize("line,failure", [
    ("srun: error: node2: task 1: Killed\n", Failure(1, "node2", "Killed")),
    ("srun: error: node1: tasks 0-1: Exited with exit code 2\n", Failure(0, "node1", "Exited with exit code 2")),
    ("srun: error: node3: tasks 2,5: Exited with exit code 1\n", Failure(2, "node3", "Exited with exit code 1")),
    ("srun: error: Unable to create step for job 7: Invalid generic resource\n", None),
])
def test_srun_reports_of_failed_tasks(line, failure):
    assert first_failure("srun-pmix", line, HOSTS) == failure


ADDRESSES = {"lo": [("127.0.0.1", "255.0.0.0")], "docker0": [("172.17.0.1", "255.255.0.0")],
             "eth0": [("10.213.0.11", "255.255.255.0")]}


def test_mpi_is_kept_to_the_network_of_the_nodes_slurm_address():
    env = {"SLURMD_NODENAME": "node1", "PATH": "/bin"}
    assert node_network(env, lambda: ADDRESSES, {"node1": "10.213.0.11"}.get) == "10.213.0.0/24"
    with pytest.raises(UsageError, match="no interface of node1 has its SLURM address 10.9.9.9: pass "
                                         "--network-interface NAME"):
        node_network(env, lambda: ADDRESSES, lambda node: "10.9.9.9")
    network = lambda: "10.213.0.0/24"  # noqa: E731
    assert launch_env("srun-pmix", env, None, network)["OMPI_MCA_btl_tcp_if_include"] == "10.213.0.0/24"
    assert launch_env("srun-pmix", env, "ib0", network)["OMPI_MCA_btl_tcp_if_include"] == "ib0"
    # The user's own setting wins; horovodrun probes for itself.
    assert launch_env("srun-pmix", {**env, "OMPI_MCA_btl_tcp_if_include": "eth1"}, None, network)[
        "OMPI_MCA_btl_tcp_if_include"] == "eth1"
    assert launch_env("horovodrun", env, None, network) == env


def test_a_failed_rank_is_named_in_the_last_line_and_its_status_is_the_launchers(tmp_path):
    # Stand-ins for SLURM's scontrol and for a horovodrun whose rank 2 (on node3) lost its ssh connection.
    (tmp_path / "scontrol").write_text("#!/bin/sh\necho node1 node2 node3\n")
    (tmp_path / "horovodrun").write_text("#!/bin/sh\necho 'Process 2 exit with status code 255.'\n"
                                         "echo 'Process 0 exit with status code 137.'\necho Traceback >&2\nexit 1\n")
    for f in ("scontrol", "horovodrun"):
        (tmp_path / f).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node[1-3]",
           "SLURM_TASKS_PER_NODE": "1(x3)"}
    proc = subprocess.run([sys.executable, "-m", "slurm.launch", "--status-file", str(tmp_path / "status"), "--",
                           "python", "-m", "alexnet.train"], env=env, capture_output=True, text=True)
    assert proc.returncode == 255
    # Also for the job script, where bash may lose it.
    assert (tmp_path / "status").read_text() == "255\n"
    assert proc.stderr.splitlines()[-1] == (
        "slurm.launch: error: rank 2 on node3 failed first (ssh lost the connection: the node, its network or its "
        "sshd went away); the other ranks were stopped; run the job again to resume from its last checkpoint")


def test_signal_goes_only_to_a_process_that_handles_it():
    handler = ("import signal, sys, time; signal.signal(signal.SIGUSR1, lambda *a: None); "
               "print('ready', flush=True); time.sleep(60)")
    with subprocess.Popen([sys.executable, "-c", handler], stdout=subprocess.PIPE, text=True) as ready, \
            subprocess.Popen(["sleep", "60"]) as plain:
        try:
            assert ready.stdout.readline() == "ready\n"
            assert catches(ready.pid, signal.SIGUSR1)
            assert not catches(ready.pid, signal.SIGUSR2)
            assert not catches(plain.pid, signal.SIGUSR1)
        finally:
            ready.kill()
            plain.kill()


ALLOCATION = [("node1", 2), ("node2", 2), ("node3", 2)]


def test_a_hosts_file_lists_nodes_of_the_allocation(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# the nodes to use\nnode3:1\n\nnode1   # all its slots\n")
    assert read_hosts_file(str(hosts), ALLOCATION) == [("node3", 1), ("node1", 2)]
    hosts.write_text("node1\nnode9:2\nlogin\n")
    with pytest.raises(UsageError, match=r"names hosts not in this allocation: node9, login; list only its nodes "
                                         r"\(node1, node2, node3\)"):
        read_hosts_file(str(hosts), ALLOCATION)
    for bad in ("node1:0\n", "node1:two\n"):
        hosts.write_text(bad)
        with pytest.raises(UsageError, match="bad line .*: write host or host:slots"):
            read_hosts_file(str(hosts), ALLOCATION)
    hosts.write_text("# nobody\n")
    with pytest.raises(UsageError, match="lists no host"):
        read_hosts_file(str(hosts), ALLOCATION)
    with pytest.raises(UsageError, match="cannot read --hosts-file"):
        read_hosts_file(str(tmp_path / "missing"), ALLOCATION)


def test_elastic_command_and_its_discovery_script(tmp_path):
    script = discovery_script(tmp_path, ALLOCATION[:2])
    assert subprocess.run([script], capture_output=True, text=True, check=True).stdout == "node1:2\nnode2:2\n"
    cmd = ["python", "-m", "alexnet.train", "--elastic"]
    assert elastic_command(ALLOCATION, cmd, script, Elastic(min_np=2, rejoin_after=30)) == [
        "horovodrun", "-np", "6", "--min-np", "2", "--host-discovery-script", str(script),
        "--blacklist-cooldown-range", "30", "3600", "--gloo", *cmd]
    assert elastic_command(ALLOCATION, cmd, script, Elastic(rejoin_after=0), "eth0") == [
        "horovodrun", "-np", "6", "--min-np", "1", "--host-discovery-script", str(script), "--gloo",
        "--network-interface", "eth0", *cmd]
    with pytest.raises(UsageError, match="--min-np 7 is more than the 6 slots"):
        elastic_command(ALLOCATION, cmd, script, Elastic(min_np=7))
    # Alone, horovodrun --elastic cannot probe for an interface: loopback on this node, else the user's.
    assert elastic_interface([("node1", 2)], "node1", None) == "lo"
    assert elastic_interface([("node1", 2)], "node1", "eth0") == "eth0"
    assert elastic_interface(ALLOCATION, "node1", None) is None
    with pytest.raises(UsageError, match=r"one host \(node2\) that is not this node \(node1\).*--network-interface"):
        elastic_interface([("node2", 2)], "node1", None)
    with pytest.raises(UsageError, match="--min-np must be at least 1"):
        Elastic(min_np=0)
    with pytest.raises(UsageError, match="--rejoin-after must be 0 to 3600 s"):
        Elastic(rejoin_after=-1)


@pytest.mark.parametrize("options,message", [
    (["--hosts-file", "HOSTS"], "slurm.launch: error: --hosts-file HOSTS names hosts not in this allocation: "
                                "node7; list only its nodes (node1, node2, node3)"),
    (["--launcher", "srun-pmix"], "slurm.launch: error: --elastic needs --launcher horovodrun (Horovod elastic "
                                  "runs on Gloo), not srun-pmix"),
])
def test_bad_elastic_launches_start_nothing(tmp_path, options, message):
    # Stand-ins for scontrol, and for launchers that leave a mark if they are ever started.
    (tmp_path / "scontrol").write_text("#!/bin/sh\necho node1 node2 node3\n")
    for launcher in ("horovodrun", "srun"):
        (tmp_path / launcher).write_text(f"#!/bin/sh\ntouch {tmp_path}/started\n")
    for f in ("scontrol", "horovodrun", "srun"):
        (tmp_path / f).chmod(0o755)
    (tmp_path / "HOSTS").write_text("node1\nnode7:1\n")
    env = {**cli_env(), "PATH": f"{tmp_path}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node[1-3]",
           "SLURM_TASKS_PER_NODE": "1(x3)"}
    options = [str(tmp_path / o) if o == "HOSTS" else o for o in options]
    proc = subprocess.run([sys.executable, "-m", "slurm.launch", "--elastic", *options, "--", "python", "-m",
                           "alexnet.train", "--elastic"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [message.replace("HOSTS", str(tmp_path / "HOSTS"))]
    assert proc.stdout == "" and not (tmp_path / "started").exists()


def test_outside_a_working_slurm_it_says_so_in_one_line_and_starts_nothing(tmp_path):
    # A stand-in scontrol that fails as a real one does without a cluster's configuration.
    (tmp_path / "scontrol").write_text("#!/bin/sh\necho 'scontrol: fatal: Could not establish a configuration "
                                       "source' >&2\nexit 1\n")
    (tmp_path / "horovodrun").write_text(f"#!/bin/sh\ntouch {tmp_path}/started\n")
    for f in ("scontrol", "horovodrun"):
        (tmp_path / f).chmod(0o755)
    env = {**cli_env(), "PATH": f"{tmp_path}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node1",
           "SLURM_TASKS_PER_NODE": "1"}
    proc = subprocess.run([sys.executable, "-m", "slurm.launch", "--", "python", "-m", "alexnet.train"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "slurm.launch: error: scontrol cannot expand SLURM_JOB_NODELIST 'node1' (scontrol: fatal: Could not "
        "establish a configuration source): run this inside a SLURM job of a working cluster (sbatch/salloc)"]
    assert not (tmp_path / "started").exists()
