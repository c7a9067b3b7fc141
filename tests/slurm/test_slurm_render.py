"""Rendering and validation of the job scripts; the rendered scripts are run by real bash here.

The bash runs replace `python` with a shell function (defined by a fake venv's activate script)
that records its arguments, so each test sees exactly what the job would start.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from slurm.render import (
    BenchJob,
    ExportJob,
    Resources,
    TrainJob,
    render,
    time_limit_seconds,
)
from toolkit.cli import UsageError

HOSTILE = ["x; rm -rf ~", "$(touch PWNED)", "`touch PWNED`", "a'b\"c", "${IFS}$HOME", "*", "-- --x", "{{header}}"]


def resources(**kw) -> Resources:
    return Resources(**{"job_name": "job", "workdir": "/w", **kw})


@pytest.mark.parametrize("text,seconds", [
    ("30", 1800), ("30:15", 1815), ("01:00:00", 3600), ("2-0", 172800), ("1-02:03", 93780), ("0-00:00:05", 5)])
def test_time_formats(text, seconds):
    assert time_limit_seconds(text) == seconds


@pytest.mark.parametrize("kw,message", [
    ({"job_name": "a\nb"}, "--job-name"),
    ({"job_name": ""}, "--job-name"),
    ({"partition": "gpu\n#SBATCH --nodes=99"}, "--partition"),
    ({"partition": "gpu --exclusive"}, "--partition 'gpu --exclusive' is not a SLURM partition name"),
    ({"account": "proj,other"}, "--account 'proj,other' is not a SLURM account name"),
    ({"nodelist": "node[1-2] node3"}, "--nodelist 'node\\[1-2\\] node3' is not a SLURM host list"),
    ({"job_name": "x\\"}, "--job-name .* holds a backslash"),
    ({"workdir": "/home/jürgen"}, "--workdir '/home/jürgen' holds a backslash or a character outside printable ASCII"),
    ({"log_dir": "logs/%u"}, "'%'"),
    ({"time": "forever"}, "--time"),
    ({"nodes": 0}, "--nodes"),
    ({"cpus_per_task": 0}, "--cpus-per-task"),
])
def test_resources_reject_bad_values(kw, message):
    with pytest.raises(UsageError, match=message):
        resources(**kw)


def test_signal_must_leave_time_to_train():
    with pytest.raises(UsageError, match="--signal-seconds 120 is more than half of --time 3"):
        TrainJob(resources(time="3"), signal_seconds=120)
    with pytest.raises(UsageError, match="--signal 'KILL'"):
        TrainJob(resources(), signal="KILL")


def test_training_always_resumes_once():
    assert TrainJob(resources(), ["--epochs", "2"]).args == ["--epochs", "2", "--resume"]
    assert TrainJob(resources(), ["--resume", "--epochs", "2"]).args == ["--resume", "--epochs", "2"]


def test_max_requeues_and_the_checkpoint_the_script_watches():
    job = TrainJob(resources(), ["--output-dir", "a", "--output-dir=b c"], max_requeues=0)
    assert job.run_dir.checkpoint == Path("b c/checkpoint.npz")
    script = render(job)
    assert "max_requeues=0\n" in script and "checkpoint='b c/checkpoint.npz'\n" in script
    assert TrainJob(resources()).run_dir.checkpoint == Path("runs/alexnet/checkpoint.npz")
    with pytest.raises(UsageError, match="--max-requeues must be an integer >= 0, got -1"):
        TrainJob(resources(), max_requeues=-1)


def test_the_time_limit_signal_and_sigterm_are_trapped_once_each():
    assert "trap 'on_signal USR2' USR2\ntrap 'on_signal TERM' TERM\n" in render(TrainJob(resources(), signal="USR2"))
    script = render(TrainJob(resources(), signal="TERM"))
    assert script.count("trap 'on_signal") == 1 and "trap 'on_signal TERM' TERM\n" in script


def test_array_concurrency_cap():
    job = BenchJob(resources(), "m.onnx", "out", batches=[1, 8, 32], max_parallel=2)
    assert "#SBATCH --array=0-2%2 " in render(job)
    with pytest.raises(UsageError, match="--max-parallel must be an integer >= 1"):
        BenchJob(resources(), "m.onnx", "out", max_parallel=0)


def test_bench_array_covers_every_pair():
    job = BenchJob(resources(), "m.onnx", "out", batches=[1, 8, 32], providers=["cpu", "cuda"])
    assert "#SBATCH --array=0-5 " in render(job)
    with pytest.raises(UsageError, match="--provider 'rocm'"):
        BenchJob(resources(), "m.onnx", "out", providers=["rocm"])
    with pytest.raises(UsageError, match="every --batch value"):
        BenchJob(resources(), "m.onnx", "out", batches=[0])


def test_every_sbatch_line_is_commented_and_gpu_lines_follow_gpus():
    gpu = render(TrainJob(resources(nodes=2, tasks_per_node=4, gpus_per_task=1)))
    cpu = render(TrainJob(resources(tasks_per_node=2)))
    for script in (gpu, cpu):
        sbatch = [line for line in script.splitlines() if line.startswith("#SBATCH")]
        assert sbatch and all("  # " in line for line in sbatch)
    assert "#SBATCH --gpus-per-task=1 " in gpu and "gpus" not in cpu
    assert "#SBATCH --ntasks-per-node=4 " in gpu and "#SBATCH --ntasks-per-node=2 " in cpu


def _run_script(script: str, tmp_path: Path, env: dict[str, str]) -> list[str]:
    """Run a rendered job script with bash; return the arguments its `python` call received."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    # The fake activate replaces python by a function that records its arguments, one per line (NUL-safe enough
    # for these strings: none holds a newline).
    (venv / "bin" / "activate").write_text('python() { printf "%s\\n" "$@" > "$ARGS_FILE"; }\n')
    args_file = tmp_path / "args.txt"
    script_path = tmp_path / "job.sbatch"
    script_path.write_text(script)
    proc = subprocess.run(["bash", str(script_path)], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "ARGS_FILE": str(args_file), **env})
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("PWNED")), "a user value was executed"
    return args_file.read_text().splitlines()


def test_train_script_passes_hostile_arguments_literally(tmp_path):
    args = ["--output-dir", *HOSTILE]
    script = render(TrainJob(resources(venv="venv"), args))
    argv = _run_script(script, tmp_path, {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1", "TMPDIR": str(tmp_path)})
    status_file = f"{tmp_path}/slurm-launch-7-0.status"
    assert argv == ["-m", "slurm.launch", "--launcher", "horovodrun", "--status-file", status_file, "--", "python",
                    "-m", "alexnet.train", *args, "--resume"]


def test_elastic_training_is_launched_elastic(tmp_path):
    script = render(TrainJob(resources(venv="venv"), ["--epochs", "2"], elastic=True))
    argv = _run_script(script, tmp_path, {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1", "TMPDIR": str(tmp_path)})
    assert argv == ["-m", "slurm.launch", "--launcher", "horovodrun", "--elastic", "--status-file",
                    f"{tmp_path}/slurm-launch-7-0.status", "--", "python", "-m", "alexnet.train", "--elastic",
                    "--epochs", "2", "--resume"]
    # Given by hand too: passed once.
    assert TrainJob(resources(), ["--elastic"], elastic=True).args == ["--elastic", "--resume"]


@pytest.mark.parametrize("task,batch,provider", [(0, "1", "cpu"), (2, "32", "cpu"), (3, "1", "cuda")])
def test_bench_array_task_picks_its_pair_and_keeps_text_literal(tmp_path, task, batch, provider):
    model, results = HOSTILE[1], HOSTILE[0]
    job = BenchJob(resources(venv="venv"), model, results, batches=[1, 8, 32], providers=["cpu", "cuda"],
                   bench_args=HOSTILE)
    argv = _run_script(render(job), tmp_path, {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_JOB_ID": "9"})
    assert argv == ["-m", "bench", "throughput", "--model", model, "--batch", batch, "--provider", provider,
                    "--json", f"{results}/bench-9_{task}.json", "--quiet", *HOSTILE]


def test_export_script_passes_paths_literally(tmp_path):
    job = ExportJob(resources(venv="venv"), HOSTILE[1], HOSTILE[3], ["--opset", HOSTILE[2]])
    argv = _run_script(render(job), tmp_path, {})
    assert argv == ["-m", "export", HOSTILE[1], "-o", HOSTILE[3], "--opset", HOSTILE[2]]


# A stand-in venv whose `python` asks the job script to stop (as SLURM would signal it), then stops
# like the trainer: checkpoint (when CKPT is set), exit 75, which it also writes to --status-file as
# slurm.launch does.
_STOPPING_VENV = """python() {
    local status_file=/dev/null
    while (( $# )); do [[ $1 == --status-file ]] && status_file=$2; shift; done
    trap '[[ -n ${CKPT:-} ]] && echo "$CKPT" > run/checkpoint.npz; echo 75 > "$status_file"; exit 75' USR1
    kill -USR1 $$
    while :; do sleep 0.1 & wait $!; done
}
"""


# As SLURM at a time limit: SIGTERM to every process of the job at once, so the launcher ends while the
# job script's trap still waits for squeue's answer.
_TERMINATED_VENV = """python() {
    local status_file=/dev/null
    while (( $# )); do [[ $1 == --status-file ]] && status_file=$2; shift; done
    trap 'echo "$CKPT" > run/checkpoint.npz; echo 75 > "$status_file"; exit 75' TERM
    kill -TERM $$ $BASHPID
    while :; do sleep 0.1 & wait $!; done
}
"""


def _stop_script(tmp_path: Path, left: str, restarts: int, checkpoint: str, reason: str = "None",
                 venv: str = _STOPPING_VENV, **job) -> tuple[str, str]:
    """Run a train script that is signalled once; squeue says `reason`|`left` (%r|%L).
    Returns (its stderr, what scontrol got)."""
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text(venv)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.npz").write_text("old\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # The controller takes a moment to answer.
    (bin_dir / "squeue").write_text(f"#!/bin/sh\nsleep 0.1\necho '{reason}|{left}'\n")
    # As SLURM ends a requeued job: SIGTERM to each of its processes, scontrol itself too, often before it exits 0.
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.txt\nkill -TERM $PPID $$\n')
    for tool in ("squeue", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    script = tmp_path / "job.sbatch"
    script.write_text(render(TrainJob(resources(venv="venv"), ["--output-dir", "run"], signal_seconds=120, **job)))
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n1",
                               "SLURM_RESTART_COUNT": str(restarts), "CKPT": checkpoint, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 75, proc.stderr
    calls = tmp_path / "scontrol.txt"
    return proc.stderr, calls.read_text() if calls.exists() else ""


@pytest.mark.parametrize("reason,left,why", [
    ("None", "1-00:00:05", "preempted (SIGUSR1 with 86405 s left)"),
    ("None", "3:01", "preempted (SIGUSR1 with 181 s left)"),
    ("None", "3:00", "time limit (SIGUSR1 with 180 s left)"),     # --signal-seconds 120 + SLURM's 60 s
    ("None", "0:45", "time limit (SIGUSR1 with 45 s left)"),
    ("None", "UNLIMITED", "stopped by SIGUSR1 (squeue did not tell the time left)"),
    # Ending the job at its limit: squeue's time left is stale then.
    ("TimeLimit", "5:00", "time limit (SIGUSR1: SLURM is ending the job at its limit)"),
])
def test_the_time_left_tells_a_time_limit_from_a_preemption(tmp_path, reason, left, why):
    err, requeued = _stop_script(tmp_path, left, 0, "new", reason)
    # The last note: a requeue that SLURM's SIGTERM reached before scontrol exited did not fail.
    assert err.endswith(f"job script: run 0: {why}; checkpoint written; requeued (1 of at most 3) to resume from it\n")
    assert requeued == "requeue 7\n"


@pytest.mark.parametrize("restarts,checkpoint,max_requeues,note", [
    (2, "old", 3, "not requeued: run/checkpoint.npz did not change in this run, a requeue would only repeat it"),
    (3, "new", 3, "not requeued: requeued 3 time(s) already, the cap (--max-requeues 3)"),
    (0, "new", 0, "not requeued: requeued 0 time(s) already, the cap (--max-requeues 0)"),
])
def test_no_requeue_past_the_cap_or_without_progress(tmp_path, restarts, checkpoint, max_requeues, note):
    err, requeued = _stop_script(tmp_path, "9:00", restarts, checkpoint, max_requeues=max_requeues)
    assert err == (f"job script: run {restarts}: SIGUSR1: the ranks write a checkpoint and stop\n"
                   f"job script: run {restarts}: preempted (SIGUSR1 with 540 s left); {note}\n")
    assert requeued == ""


def test_the_launchers_status_survives_it_ending_while_a_trap_runs(tmp_path):
    # bash 5.2 loses the status of a child that exits while a trap runs (`wait` gives -1): without
    # --status-file the script then exited 255 without its note or requeue, in most of these runs.
    for run in range(10):
        (tmp_path / str(run)).mkdir()
        err, requeued = _stop_script(tmp_path / str(run), "9:00", 0, "new", venv=_TERMINATED_VENV)
        assert err.endswith("; checkpoint written; requeued (1 of at most 3) to resume from it\n"), (run, err)
        assert requeued == "requeue 7\n"


def test_a_run_past_the_cap_stops_before_training(tmp_path):
    # SLURM requeued it itself (e.g. PreemptMode=REQUEUE) once more than allowed.
    err, requeued = _stop_script(tmp_path, "9:00", 2, "new", max_requeues=1)
    assert err == "job script: run 2: not started: requeued 2 times, more than --max-requeues 1\n"
    assert (tmp_path / "run" / "checkpoint.npz").read_text() == "old\n"
