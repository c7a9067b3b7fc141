"""Requeue limits, timeouts and pipelines on a real one-node SLURM (the slurm_cluster fixture).

The scheduler, the job scripts slurm.submit renders, their traps, requeues and dependencies are
real; the programs they start are not: the job's venv is a stand-in whose activate script defines
`python` as a shell function (FAKE_VENV below) that "trains" until a signal, then writes its
checkpoint and exits 75 as alexnet.train does, so each job takes seconds. Real training under
SLURM is tested in test_slurm_jobs.py.

    .venv/bin/pytest tests/slurm/test_slurm_requeue.py
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

# The job script runs `python -m slurm.launch ... --status-file FILE -- python -m alexnet.train ARGS` (the
# stand-in writes its exit status to FILE, as slurm.launch does), `python -m export
# MODEL -o ONNX ...` and `python -m bench MODE --model ONNX ... --json RESULT ...`.
# --fake-progress: advance (each stop appends to the checkpoint), constant (each stop writes the
# same bytes: no training since the last start), finish (write model.keras and exit 0), finish-when-resumed
# (advance in the first run, finish in a requeued one).
FAKE_VENV = r"""
_train() {
    local out=runs/alexnet progress=advance status_file=/dev/null
    while (( $# )); do
        case $1 in
            --output-dir) out=$2; shift;;
            --status-file) status_file=$2; shift;;
            --fake-progress) progress=$2; shift;;
            --dataset) [[ $2 == nope ]] && { echo "alexnet.train: error: unknown dataset 'nope'" >&2
                                            echo 2 > "$status_file"; return 2; }
                       shift;;
        esac
        shift
    done
    mkdir -p "$out"
    if [[ $progress == finish-when-resumed ]]; then
        (( ${SLURM_RESTART_COUNT:-0} )) && progress=finish || progress=advance
    fi
    if [[ $progress == finish ]]; then echo model > "$out/model.keras"; echo 0 > "$status_file"; return 0; fi
    _stop() {
        if [[ $progress == advance ]]; then echo "run ${SLURM_RESTART_COUNT:-0}" >> "$out/checkpoint.npz"
        else echo "epoch 0 step 0" > "$out/checkpoint.npz"; fi
        echo 75 > "$status_file"
        exit 75
    }
    trap _stop USR1 TERM
    touch "$out/running-${SLURM_RESTART_COUNT:-0}"
    while :; do sleep 0.2 & wait $!; done
}
python() {
    case $2 in
        slurm.launch) _train "$@";;
        export) [[ -f $3 ]] || { echo "export: error: no model at $3" >&2; return 2; }; echo onnx > "$5";;
        bench) [[ -f $5 ]] || { echo "bench: error: no model at $5" >&2; return 2; }; echo '{}' > "${11}";;
    esac
}
"""
TIMEOUT_S = 120
# How long a SLURM client waits for the controller's answer (slurm.conf's MessageTimeout, default 10 s).
MESSAGE_TIMEOUT_S = 10
TIME = ("--time", "10", "--signal-seconds", "60")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text(FAKE_VENV)
    return tmp_path


def submit(cluster, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """slurm.submit SUBCOMMAND ARGS with the stand-in venv; ARGS may hold `--` and the program's arguments."""
    subcommand, *rest = args
    own = rest[:rest.index("--")] if "--" in rest else rest
    command = [sys.executable, "-m", "slurm.submit", subcommand, *own, "--workdir", str(workdir), "--venv", "venv",
               "--cpus-per-task", "1", *rest[len(own):]]
    return subprocess.run(command, env=cluster.env, capture_output=True, text=True)


def train(cluster, workdir: Path, *args: str) -> str:
    proc = submit(cluster, workdir, "train", "--gpus-per-node", "0", *TIME, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name} after {TIMEOUT_S} s"
        time.sleep(0.2)


def preempt(cluster, job_id: str, run_dir: Path, run: int) -> None:
    """Signal the job as the scheduler's warning would, once run `run` of it is training."""
    wait_for(run_dir / f"running-{run}")
    cluster.run("scancel", "--signal=USR1", "--batch", job_id)


def notes(workdir: Path, job_id: str) -> list[str]:
    err = (workdir / "slurm-logs" / f"train-{job_id}.err").read_text()
    return [line for line in err.splitlines() if line.startswith("job script: ")]


def test_a_job_preempted_more_often_than_the_cap_is_not_requeued_again(slurm_cluster, workdir):
    job_id = train(slurm_cluster, workdir, "--max-requeues", "1", "--", "--output-dir", "run")
    preempt(slurm_cluster, job_id, workdir / "run", 0)
    preempt(slurm_cluster, job_id, workdir / "run", 1)
    result = slurm_cluster.status(job_id, "--wait", "--timeout", str(TIMEOUT_S))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(f"job {job_id}: FAILED, exit code 75:0, restarts 1, ")
    lines = notes(workdir, job_id)
    assert len(lines) == 4, lines
    assert lines[0] == "job script: run 0: SIGUSR1: the ranks write a checkpoint and stop"
    assert lines[1].startswith("job script: run 0: preempted (SIGUSR1 with ")
    assert lines[1].endswith("; checkpoint written; requeued (1 of at most 1) to resume from it")
    assert lines[3].endswith("; not requeued: requeued 1 time(s) already, the cap (--max-requeues 1)")
    # status ends with the end of the error file, whose last line says why the job stopped for good.
    assert result.stdout.endswith(lines[3] + "\n")
    assert (workdir / "run" / "checkpoint.npz").read_text() == "run 0\nrun 1\n"


def test_no_requeue_when_the_checkpoint_did_not_advance_since_the_last_start(slurm_cluster, workdir):
    job_id = train(slurm_cluster, workdir, "--", "--output-dir", "run", "--fake-progress", "constant")
    preempt(slurm_cluster, job_id, workdir / "run", 0)
    preempt(slurm_cluster, job_id, workdir / "run", 1)
    result = slurm_cluster.status(job_id, "--wait", "--timeout", str(TIMEOUT_S))
    assert result.returncode == 1
    assert result.stdout.startswith(f"job {job_id}: FAILED, exit code 75:0, restarts 1, ")
    lines = notes(workdir, job_id)
    # The first run wrote the first checkpoint: progress. The second rewrote it unchanged.
    assert lines[1].endswith("; checkpoint written; requeued (1 of at most 3) to resume from it")
    assert lines[3].endswith("; not requeued: run/checkpoint.npz did not change in this run, a requeue "
                             "would only repeat it")


def test_a_timeout_is_told_apart_from_a_preemption(slurm_cluster, workdir):
    timed_out = train(slurm_cluster, workdir, "--max-requeues", "0", "--", "--output-dir", "a")
    preempted = train(slurm_cluster, workdir, "--max-requeues", "0", "--", "--output-dir", "b")
    wait_for(workdir / "a" / "running-0")
    # The time limit, soon: SLURM ends the job at its first periodic check after it (up to 30 s), without
    # waiting for the 1-minute minimum --time allows. Not EndTime=now: scontrol resolves "now" itself,
    # and the controller refuses an end time already past when it handles the request ("Invalid time
    # specified"), which on a busy machine is often a second later. The margin is MessageTimeout's
    # default (10 s): a request that takes longer fails anyway.
    ended = slurm_cluster.run("scontrol", "update", f"JobId={timed_out}", f"EndTime=now+{MESSAGE_TIMEOUT_S}",
                              check=False)
    assert ended.returncode == 0, ended.stderr
    preempt(slurm_cluster, preempted, workdir / "b", 0)

    result = slurm_cluster.status(timed_out, "--wait", "--timeout", str(TIMEOUT_S))
    assert result.returncode == 1
    # Which state SLURM records is its race, not the toolkit's: the limit's warning (SIGUSR1) comes at once
    # with 10 s left, and the script, not requeued (cap 0), exits 75 (FAILED) unless SLURM's own check ends
    # the job first (TIMEOUT). On a real cluster the warning comes 60 s early, so FAILED with exit 75 is the
    # usual end. The notes below tell the time limit from the preemption either way.
    assert result.stdout.startswith((f"job {timed_out}: TIMEOUT (its time limit ended it), exit code ",
                                     f"job {timed_out}: FAILED, exit code 75:0, restarts 0, ")), result.stdout
    last = notes(workdir, timed_out)[-1]
    # At the limit SLURM sends the warning (SIGUSR1) and SIGTERM together: either may come first.
    assert last.startswith("job script: run 0: time limit (SIG"), last
    assert last.endswith("; not requeued: requeued 0 time(s) already, the cap (--max-requeues 0)")

    result = slurm_cluster.status(preempted, "--wait", "--timeout", str(TIMEOUT_S))
    assert result.stdout.startswith(f"job {preempted}: FAILED, exit code 75:0, restarts 0, ")
    last = notes(workdir, preempted)[-1]
    # Ten minutes left: not the warning before the limit.
    assert last.startswith("job script: run 0: preempted (SIGUSR1 with "), last
    assert int(last.split(" with ")[1].split(" s left")[0]) > 500


def test_a_requeued_job_that_completes_shows_why_it_was_requeued(slurm_cluster, workdir):
    job_id = train(slurm_cluster, workdir, "--", "--output-dir", "run", "--fake-progress", "finish-when-resumed")
    preempt(slurm_cluster, job_id, workdir / "run", 0)
    result = slurm_cluster.status(job_id, "--wait", "--timeout", str(TIMEOUT_S))
    assert result.returncode == 0, result.stdout
    err = workdir / "slurm-logs" / f"train-{job_id}.err"
    assert result.stdout.splitlines() == [
        f"job {job_id}: COMPLETED, exit code 0:0, restarts 1, stdout {workdir}/slurm-logs/train-{job_id}.out, "
        f"stderr {err}", f"--- the job script's notes in {err}:", *notes(workdir, job_id)]
    assert len(notes(workdir, job_id)) == 2
    assert (workdir / "run" / "model.keras").exists()


def _pipeline(cluster, workdir: Path, *args: str) -> list[str]:
    proc = submit(cluster, workdir, "pipeline", "--gpus-per-node", "0", *TIME, "--stage-time", "5",
                  "--batch", "1,4", "--max-parallel", "1", *args)
    assert proc.returncode == 0, proc.stderr
    ids = proc.stdout.split()
    assert len(ids) == 3 and all(i.isdigit() for i in ids), proc.stdout
    assert f"check it with: python -m slurm.submit status {' '.join(ids)}" in proc.stderr
    return ids


def test_a_pipeline_runs_its_links_in_order(slurm_cluster, workdir):
    train_id, export_id, bench_id = _pipeline(slurm_cluster, workdir, "--results-dir", "results",
                                              "--", "--output-dir", "run", "--fake-progress", "finish")
    result = slurm_cluster.status(train_id, export_id, bench_id, "--wait", "--timeout", str(TIMEOUT_S))
    assert result.returncode == 0, result.stdout
    chain = f"chain {train_id} COMPLETED -> {export_id} COMPLETED -> {bench_id} COMPLETED"
    assert result.stdout.splitlines()[-1] == chain
    # Each link found what the one before it wrote: the stand-ins fail without it.
    assert (workdir / "run" / "alexnet.onnx").read_text() == "onnx\n"
    assert sorted(p.name for p in (workdir / "results").iterdir()) == [f"bench-{bench_id}_{i}.json" for i in (0, 1)]
    assert all(json.loads(p.read_text()) == {} for p in (workdir / "results").iterdir())
    # The array ran one task at a time (%1).
    assert "#SBATCH --array=0-1%1 " in (workdir / "slurm-logs" / f"bench-{bench_id}.sbatch").read_text()


def test_a_pipeline_whose_first_link_fails_cancels_the_rest_with_its_error_line(slurm_cluster, workdir):
    train_id, export_id, bench_id = _pipeline(slurm_cluster, workdir, "--", "--dataset", "nope")
    result = slurm_cluster.status(train_id, export_id, bench_id, "--wait", "--timeout", str(TIMEOUT_S))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"job {train_id}: FAILED, exit code 2:0, ")
    never_ran = "CANCELLED (never ran: a job it depends on did not complete), exit code 0:0"
    assert f"job {export_id}: {never_ran}" in result.stdout
    assert f"job {bench_id}_[0-1%1]: {never_ran}" in result.stdout
    assert lines[-1] == (f"chain {train_id} FAILED -> {export_id} CANCELLED -> {bench_id} CANCELLED; "
                         f"failed first: job {train_id}: alexnet.train: error: unknown dataset 'nope'")
    assert not (workdir / "runs" / "alexnet").exists()


@pytest.mark.parametrize("args,message", [
    (("pipeline", "--from-model", "runs/x/model.keras"), "--from-model runs/x/model.keras does not exist in --workdir"),
    (("pipeline", "--max-requeues", "-1"), "--max-requeues must be an integer >= 0, got -1"),
    (("train", "--max-requeues", "-1"), "--max-requeues must be an integer >= 0, got -1"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_submitted(slurm_cluster, workdir, args, message):
    before = len(slurm_cluster.jobs())
    proc = submit(slurm_cluster, workdir, *args)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("slurm-submit: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert len(slurm_cluster.jobs()) == before
    assert not (workdir / "slurm-logs").exists()


def test_a_link_sbatch_refuses_cancels_the_links_queued_before_it(slurm_cluster, workdir):
    # No GPUs on this cluster: sbatch refuses the bench link, after train and export were queued (held).
    proc = submit(slurm_cluster, workdir, "pipeline", "--gpus-per-node", "0", *TIME, "--bench-gpus", "1",
                  "--", "--output-dir", "run", "--fake-progress", "finish")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("slurm-submit: error: sbatch rejected the bench job: ")
    queued = proc.stderr.split("the pipeline's jobs queued so far were cancelled (")[1].rstrip(")\n").split(", ")
    assert len(queued) == 2
    assert [slurm_cluster.job(job_id)["job_state"] for job_id in queued] == ["CANCELLED", "CANCELLED"]
    # They never ran: no output file, no model.
    assert [p.name for p in (workdir / "slurm-logs").iterdir() if not p.name.endswith(".sbatch")] == []
    assert not (workdir / "run").exists()
