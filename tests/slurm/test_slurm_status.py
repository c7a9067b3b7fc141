"""`python -m slurm.submit status` against a real one-node SLURM, with jobs submitted by sbatch itself.

status reads SLURM's machine-readable records only, so no job name, path or comment, however
it imitates SLURM's own output, can change the state, exit code or exit status it reports.
The jobs are shell one-liners: seconds each.

    .venv/bin/pytest tests/slurm/test_slurm_status.py
"""
from __future__ import annotations

import os
import pwd
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

WAIT = ("--wait", "--timeout", "60")
HOSTILE = [
    "JobState=FAILED ExitCode=1:0 Restarts=3",
    "JobState=COMPLETED ExitCode=0:0 Reason=None",
    "7|COMPLETED|0:0",
    "x; scancel --user root; echo ok",
    "'q\" `id` *",
    "$(id) ${HOME}",
    "a\njob 1: COMPLETED, exit code 0:0, restarts 0",
    "long " + "n" * 1019,   # sbatch's longest name and comment: 1024 characters
]
# A file name is at most 255 bytes.
PATH_PART = 200


def _shown(path: Path) -> str:
    return str(path) if str(path).isprintable() else repr(str(path))


def _line(job_id: str, state: str, exit_code: str, out: Path, err: Path) -> str:
    return f"job {job_id}: {state}, exit code {exit_code}, restarts 0, stdout {_shown(out)}, stderr {_shown(err)}"


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_name_comment_and_paths_change_no_reported_state(slurm_cluster, tmp_path, text):
    workdir = tmp_path / text[:PATH_PART]
    logs = workdir / text[:PATH_PART]
    logs.mkdir(parents=True)
    common = ("--job-name", text, "--comment", text, "--chdir", str(workdir))
    logs_of = {}
    for script in ("exit 0", "echo why it failed >&2; exit 3"):
        job_id = slurm_cluster.sbatch(*common, "--output", f"{text[:PATH_PART]}/out-%j",
                                      "--error", f"{text[:PATH_PART]}/err-%j", "--wrap", script)
        logs_of[job_id] = (logs / f"out-{job_id}", logs / f"err-{job_id}")
    ok, failed = logs_of
    record = slurm_cluster.job(ok)
    assert (record["name"], record["comment"]) == (text, text), "SLURM did not keep the text as given"

    result = slurm_cluster.status(ok, *WAIT)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == _line(ok, "COMPLETED", "0:0", *logs_of[ok]) + "\n"

    result = slurm_cluster.status(failed, *WAIT)
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout == (_line(failed, "FAILED", "3:0", *logs_of[failed]) + "\n"
                             f"--- last 40 lines of {_shown(logs_of[failed][1])}:\nwhy it failed\n")


def test_every_array_task_reports_its_own_state_and_error_file(slurm_cluster, tmp_path):
    # Task 3 dies of a signal: exit code 0:9.
    job_id = slurm_cluster.sbatch("--array", "0-3", "--chdir", str(tmp_path), "--output", "a-%A_%a.out",
                                  "--error", "a-%A_%a.err", "--wrap",
                                  '[ "$SLURM_ARRAY_TASK_ID" = 3 ] && kill -KILL $$; '
                                  'echo "task $SLURM_ARRAY_TASK_ID failed" >&2; exit $SLURM_ARRAY_TASK_ID')
    result = slurm_cluster.status(job_id, *WAIT)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        _line(f"{job_id}_0", "COMPLETED", "0:0", tmp_path / f"a-{job_id}_0.out", tmp_path / f"a-{job_id}_0.err"),
        _line(f"{job_id}_1", "FAILED", "1:0", tmp_path / f"a-{job_id}_1.out", tmp_path / f"a-{job_id}_1.err"),
        f"--- last 40 lines of {tmp_path}/a-{job_id}_1.err:", "task 1 failed",
        _line(f"{job_id}_2", "FAILED", "2:0", tmp_path / f"a-{job_id}_2.out", tmp_path / f"a-{job_id}_2.err"),
        f"--- last 40 lines of {tmp_path}/a-{job_id}_2.err:", "task 2 failed",
        _line(f"{job_id}_3", "FAILED", "0:9", tmp_path / f"a-{job_id}_3.out", tmp_path / f"a-{job_id}_3.err"),
        f"--- last 40 lines of {tmp_path}/a-{job_id}_3.err:",
    ]


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + 120
    while not predicate():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.5)


def test_array_tasks_not_started_show_as_one_pending_record(slurm_cluster, tmp_path):
    # At most one task at a time (%1): tasks 1 and 2 wait while task 0 sleeps.
    job_id = slurm_cluster.sbatch("--array", "0-2%1", "--chdir", str(tmp_path), "--wrap", "sleep 60")
    try:
        _wait_for(lambda: any(j["array_job_id"] == int(job_id) and j["array_task_id"] == 0
                              and j["job_state"] == "RUNNING" for j in slurm_cluster.jobs()), "task 0 to run")
        result = slurm_cluster.status(job_id)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            _line(f"{job_id}_0", "RUNNING", "0:0", tmp_path / f"slurm-{job_id}_0.out",
                  tmp_path / f"slurm-{job_id}_0.out"),
            f"job {job_id}_[1-2%1]: PENDING, exit code 0:0, restarts 0, stdout unknown, stderr unknown"]
    finally:
        slurm_cluster.run("scancel", job_id)
    result = slurm_cluster.status(job_id, *WAIT)
    assert result.returncode == 1
    assert f"job {job_id}_[1-2%1]: CANCELLED, exit code 0:0" in result.stdout
    assert "--- no error file to show: SLURM does not record one for this job" in result.stdout


def _stdout_path(cluster, job_id: str) -> str:
    result = cluster.status(job_id, *WAIT)
    assert result.returncode == 0, result.stderr
    return result.stdout.split(", stdout ")[1].split(", stderr ")[0]


def test_log_paths_are_the_files_slurmd_wrote(slurm_cluster, tmp_path):
    patterned = slurm_cluster.sbatch("--job-name", "named", "--array", "4", "--chdir", str(tmp_path),
                                     "--output", "o-%x-%u-%3j-%%-%A-%a.out", "--wrap", "echo out")
    default = slurm_cluster.sbatch("--chdir", str(tmp_path), "--wrap", "echo out")
    user = pwd.getpwuid(os.getuid()).pw_name
    # A one-task array: its task's own job id (%j) is the array's (%A).
    expected = {patterned: tmp_path / f"o-named-{user}-{int(patterned):03d}-%-{patterned}-4.out",
                default: tmp_path / f"slurm-{default}.out"}
    for job_id, path in expected.items():
        assert _stdout_path(slurm_cluster, job_id) == str(path)
        assert path.read_text() == "out\n"


def test_a_job_the_controller_forgot_is_read_from_sacct(forgetful_cluster, tmp_path):
    job_id = forgetful_cluster.sbatch("--chdir", str(tmp_path), "--wrap", "exit 4")
    _wait_for(lambda: all(j["job_id"] != int(job_id) for j in forgetful_cluster.jobs()),
              f"the controller to forget job {job_id}")

    # The test cluster keeps no accounting database: status says so in one line, exit 2.
    result = forgetful_cluster.status(job_id)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"slurm-submit: error: job {job_id}: the controller does not list it (it forgets ended "
                             f"jobs MinJobAge after they end), and sacct cannot tell (Slurm accounting storage is "
                             f"disabled): look at its log files (LOG_DIR/KIND-{job_id}[_TASK].out and .err for jobs "
                             f"submitted here)\n")

    # With a database sacct prints the same fields; `sacct -c` reads the cluster's job completion file
    # instead. (That file is free text: a hostile path can change the state `sacct -c` reports, which
    # is why status never reads it itself.)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text(f'#!/bin/sh\nexec {shutil.which("sacct", path=forgetful_cluster.env["PATH"])} '
                                   '-c "$@"\n')
    (bin_dir / "sacct").chmod(0o755)
    result = forgetful_cluster.status(job_id, path=f"{bin_dir}{os.pathsep}{forgetful_cluster.env['PATH']}")
    assert result.returncode == 1, result.stderr
    assert result.stdout == (f"job {job_id}: FAILED, exit code 4:0, restarts unknown, stdout unknown, stderr unknown\n"
                             "--- no error file to show: SLURM does not record one for this job\n")
