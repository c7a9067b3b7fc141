"""`python -m slurm.submit` and `python -m slurm.launch` as users run them, without a scheduler:
--dry-run, bad input, and what they import."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "train-2x4.sbatch"
ELASTIC_GOLDEN = Path(__file__).parent / "golden" / "train-elastic-3x1.sbatch"
# The README's example: regenerate the golden file with this command when the template changes on purpose.
GOLDEN_COMMAND = ["train", "--nodes", "2", "--gpus-per-node", "4", "--time", "12:00:00", "--partition", "gpu",
                  "--account", "proj123", "--workdir", "/home/user/alexnet", "--dry-run", "--",
                  "--dataset", "fashion_mnist", "--epochs", "50", "--batch-size", "32", "--precision", "mixed_float16"]
# Elastic training on 3 CPU nodes (the multi-node fixture's shape), requeued at most once.
ELASTIC_COMMAND = ["train", "--elastic", "--nodes", "3", "--gpus-per-node", "0", "--time", "02:00:00",
                   "--max-requeues", "1", "--workdir", "/home/user/alexnet", "--dry-run", "--",
                   "--dataset", "fashion_mnist", "--image-size", "67", "--output-dir", "runs/elastic"]


def submit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slurm.submit", *args], capture_output=True, text=True)


def test_dry_run_of_a_2_node_4_gpu_training_job_matches_the_golden_file():
    proc = submit(*GOLDEN_COMMAND)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == GOLDEN.read_text()


def test_dry_run_of_an_elastic_training_job_matches_the_golden_file():
    proc = submit(*ELASTIC_COMMAND)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ELASTIC_GOLDEN.read_text()
    assert ("python -m slurm.launch --launcher horovodrun --elastic --status-file \"$launcher_status\" -- \\\n"
            "    python -m alexnet.train --elastic "
            "--dataset fashion_mnist") in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["train", "--nodes", "0"], "--nodes must be an integer >= 1"),
    (["train", "--gpus-per-node", "4", "--ntasks-per-node", "2"],
     "--ntasks-per-node 2 does not match --gpus-per-node 4: Horovod runs one rank per GPU; set --ntasks-per-node 4"),
    (["train", "--ranks-per-node", "2"], "--ntasks-per-node 2 does not match --gpus-per-node 1"),
    (["train", "--nodelist", "/no/such/hosts"], "--nodelist file /no/such/hosts cannot be read"),
    (["train", "--nodelist", "node1\nnode2"], "--nodelist must be one non-empty line"),
    (["train", "--time", "10", "--signal-seconds", "600"], "--signal-seconds 600 is more than half of --time 10"),
    (["bench", "--provider", "cpu,rocm"], "--provider 'rocm' is unknown"),
    (["train", "--job-name", "a\nb"], "--job-name must be one non-empty line"),
    (["train", "--log-dir", "logs/%j"], "contains '%'"),
    (["train", "--max-requeues", "-1"], "--max-requeues must be an integer >= 0, got -1"),
    (["pipeline", "--max-requeues", "-1"], "--max-requeues must be an integer >= 0, got -1"),
    (["bench", "--max-parallel", "0"], "--max-parallel must be an integer >= 1, got 0"),
    (["pipeline", "--from-model", "/no/such/model.keras"], "--from-model /no/such/model.keras does not exist in "
     "--workdir"),
    (["pipeline", "--stage-time", "soon"], "--time 'soon' is not a SLURM time"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = submit(*args, "--dry-run")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("slurm-submit: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["train", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["train", "--launcher", "mpirun"], "argument --launcher: invalid choice: 'mpirun'"),
    (["bench", "--batch", "1,x"], "argument --batch: expected comma-separated integers like 1,8,32, got '1,x'"),
    (["trian"], "argument command: invalid choice: 'trian'"),
    (["status"], "the following arguments are required: job_id"),
    (["status", "1234_5"], "'1234_5' is not a job id: give the number sbatch printed"),
    (["status", "12;34"], "'12;34' is not a job id"),
    (["status", "0"], "'0' is not a job id"),
])
def test_argparse_errors_and_bad_job_ids_are_one_line_and_exit_2(args, message):
    proc = submit(*args)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("slurm-submit: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_status_without_slurm_commands_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "slurm.submit", "status", "1234"], capture_output=True, text=True,
                          env={**os.environ, "PATH": str(tmp_path)})
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "slurm-submit: error: squeue not found: run this on a SLURM login node\n"


def test_launch_argparse_errors_are_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, "-m", "slurm.launch", "--launcher", "mpirun", "--", "true"],
                          capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("slurm.launch: error: argument --launcher: invalid choice: 'mpirun'")
    assert proc.stderr.count("\n") == 1


def test_default_paths_are_the_run_directory_artifacts():
    export = submit("export", "--workdir", "/w", "--dry-run").stdout
    bench = submit("bench", "--workdir", "/w", "--dry-run").stdout
    assert "python -m export runs/alexnet/model.keras -o runs/alexnet/alexnet.onnx " in export
    assert "--model runs/alexnet/alexnet.onnx " in bench


def test_submit_checks_the_venv_before_sbatch(tmp_path):
    proc = submit("export", "--workdir", str(tmp_path), "--venv", "missing-venv")
    assert proc.returncode == 2
    assert f"no virtual environment at {tmp_path}/missing-venv" in proc.stderr
    assert not (tmp_path / "slurm-logs").exists()


def test_nodelist_file_and_network_interface_go_into_the_script(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("node[1-2]\n# the spare\n\nnode7\n")
    proc = submit("train", "--nodes", "3", "--nodelist", str(hosts), "--network-interface", "ib0", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --nodelist='node[1-2],node7'  " in proc.stdout
    assert "slurm.launch --launcher horovodrun --network-interface ib0 --status-file" in proc.stdout
    (tmp_path / "empty").write_text("# nothing\n")
    proc = submit("train", "--nodelist", str(tmp_path / "empty"), "--dry-run")
    assert proc.returncode == 2 and "names no hosts" in proc.stderr
