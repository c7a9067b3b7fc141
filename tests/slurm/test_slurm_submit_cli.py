"""`python -m slurm.submit` as users run it, without a scheduler: --dry-run and bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "train-2x4.sbatch"
# The README's example: regenerate the golden file with this command when the template changes on purpose.
GOLDEN_COMMAND = ["train", "--nodes", "2", "--gpus-per-node", "4", "--time", "12:00:00", "--partition", "gpu",
                  "--account", "proj123", "--workdir", "/home/user/alexnet", "--dry-run", "--",
                  "--dataset", "fashion_mnist", "--epochs", "50", "--batch-size", "32", "--precision", "mixed_float16"]


def submit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slurm.submit", *args], capture_output=True, text=True)


def test_dry_run_of_a_2_node_4_gpu_training_job_matches_the_golden_file():
    proc = submit(*GOLDEN_COMMAND)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == GOLDEN.read_text()


@pytest.mark.parametrize("args,message", [
    (["train", "--nodes", "0"], "--nodes must be an integer >= 1"),
    (["train", "--ranks-per-node", "2"], "--ranks-per-node is for CPU-only jobs"),
    (["train", "--time", "10", "--signal-seconds", "600"], "--signal-seconds 600 is more than half of --time 10"),
    (["bench", "--provider", "cpu,rocm"], "--provider 'rocm' is unknown"),
    (["train", "--job-name", "a\nb"], "--job-name must be one non-empty line"),
    (["train", "--log-dir", "logs/%j"], "contains '%'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = submit(*args, "--dry-run")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("slurm-submit: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_submit_checks_the_venv_before_sbatch(tmp_path):
    proc = submit("export", "--workdir", str(tmp_path), "--venv", "missing-venv")
    assert proc.returncode == 2
    assert f"no virtual environment at {tmp_path}/missing-venv" in proc.stderr
    assert not (tmp_path / "slurm-logs").exists()
