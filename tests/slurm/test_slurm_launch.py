"""The launcher's allocation parsing, launch commands, and its check that a rank handles the signal."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from slurm.launch import allocation_hosts, catches, launch_command, parse_tasks_per_node
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
    assert launch_command("srun-pmi2", hosts, cmd) == ["srun", "--mpi=pmi2", *cmd]
    assert launch_command("srun-pmix", hosts, cmd) == ["srun", "--mpi=pmix", *cmd]


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
