"""Submit AlexNet training, export and benchmark jobs to SLURM, and report how they ended.

    python -m slurm.submit train --nodes 2 --gpus-per-node 4 --time 12:00:00 --dry-run \\
        -- --dataset fashion_mnist --epochs 50 --batch-size 32
    python -m slurm.submit export --model runs/alexnet/model.keras --output runs/alexnet/alexnet.onnx
    python -m slurm.submit bench --model runs/alexnet/alexnet.onnx --batch 1,8,32,128 --provider cuda
    python -m slurm.submit status 1234 [--wait]

(`slurm-submit` is the same command.) Arguments after `--` go to the job's program unchanged.
`--dry-run` prints the job script; otherwise it is submitted with sbatch, a copy is kept as
LOG_DIR/KIND-JOBID.sbatch beside the job's .out/.err files, and the job id is printed on stdout.
`status` prints each job's (or array task's) state and exit code, and for a failed job the end of
its error file; it exits 1 when a job failed, 0 otherwise.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from slurm.render import (
    LAUNCHERS,
    MODES,
    SIGNALS,
    BenchJob,
    ExportJob,
    Job,
    Resources,
    TrainJob,
    render,
)
from toolkit import cli
from toolkit.cli import CheckFailed, UsageError
from toolkit.files import write_text_atomic

ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE"}
# horovodrun adds a ~25-line traceback after the failing rank's own message.
ERROR_TAIL_LINES = 40
POLL_S = 1.0
# `scontrol show job -o` prints Key=Value pairs separated by spaces; values (JobName) may hold spaces.
_KEY = re.compile(r" (?=[A-Za-z][\w/:]*=)")


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8,32, got {text!r}") from None


def _common(parser: argparse.ArgumentParser, job_name: str, time_limit: str) -> None:
    parser.add_argument("--job-name", default=job_name, help=f"default: {job_name}")
    parser.add_argument("--partition", help="default: the cluster's default partition")
    parser.add_argument("--account", help="default: your default account")
    parser.add_argument("--time", default=time_limit, help=f"wall-clock limit (default {time_limit})")
    parser.add_argument("--cpus-per-task", type=int, default=4, help="CPU cores per task (default 4)")
    parser.add_argument("--workdir", default=os.getcwd(), help="where the job runs (default: here)")
    parser.add_argument("--log-dir", default="slurm-logs", help="job .out/.err files, relative to --workdir "
                        "(default slurm-logs; created at submit)")
    parser.add_argument("--venv", default=".venv", help="virtual environment the job activates, relative to "
                        "--workdir (default .venv)")
    parser.add_argument("--dry-run", action="store_true", help="print the job script instead of submitting it")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m slurm.submit", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="Horovod training over NODES x GPUS-PER-NODE ranks (args after -- go "
                           "to python -m alexnet.train)")
    _common(train, "alexnet-train", "12:00:00")
    train.add_argument("--nodes", type=int, default=1, help="machines (default 1)")
    train.add_argument("--gpus-per-node", type=int, default=1,
                       help="GPUs per machine, one rank each (default 1; 0 for CPU-only ranks)")
    train.add_argument("--ranks-per-node", type=int,
                       help="ranks per machine with --gpus-per-node 0 (default 1)")
    train.add_argument("--launcher", default="horovodrun", choices=LAUNCHERS,
                       help="horovodrun for Horovod built with Gloo (default); srun-pmi2/srun-pmix for MPI builds")
    train.add_argument("--signal", default="USR1", choices=SIGNALS,
                       help="signal SLURM sends before the time limit (default USR1)")
    train.add_argument("--signal-seconds", type=int, default=120,
                       help="how long before the time limit (default 120 s: enough to write a checkpoint)")
    export = sub.add_parser("export", help="Keras -> ONNX export (args after -- go to python -m export)")
    _common(export, "alexnet-export", "01:00:00")
    export.add_argument("--gpus", type=int, default=0, help="GPUs for the export (default 0)")
    export.add_argument("--model", default="runs/alexnet/model.keras", help="default: runs/alexnet/model.keras")
    export.add_argument("--output", default="runs/alexnet/alexnet.onnx", help="default: runs/alexnet/alexnet.onnx")
    bench = sub.add_parser("bench", help="benchmark job array over batch sizes x providers (args after -- go to "
                           "python -m bench MODE)")
    _common(bench, "alexnet-bench", "01:00:00")
    bench.add_argument("--gpus", type=int, default=0, help="GPUs per array task (default 0; 1 for cuda/tensorrt)")
    bench.add_argument("--model", default="runs/alexnet/alexnet.onnx", help="default: runs/alexnet/alexnet.onnx")
    bench.add_argument("--batch", type=_int_list, default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    bench.add_argument("--provider", type=lambda s: s.split(","), default=["cpu"],
                       help="providers, e.g. cpu,cuda (default cpu)")
    bench.add_argument("--mode", default="throughput", choices=MODES, help="default: throughput")
    bench.add_argument("--results-dir", default="runs/bench",
                       help="one JSON per array task, relative to --workdir (default runs/bench; created at submit)")
    status = sub.add_parser("status", help="state and exit code of a job; the end of its error file if it failed")
    status.add_argument("job_id")
    status.add_argument("--wait", action="store_true", help="poll until every task of the job has ended")
    status.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")
    return parser


def _resources(args: argparse.Namespace, tasks_per_node: int = 1, gpus_per_task: int = 0,
               nodes: int = 1) -> Resources:
    return Resources(job_name=args.job_name, workdir=args.workdir, time=args.time, nodes=nodes,
                     tasks_per_node=tasks_per_node, gpus_per_task=gpus_per_task, cpus_per_task=args.cpus_per_task,
                     partition=args.partition, account=args.account, log_dir=args.log_dir, venv=args.venv)


def build_job(args: argparse.Namespace, passthrough: list[str]) -> Job:
    """The validated job the parsed command line describes."""
    if args.command == "train":
        if args.gpus_per_node < 0:
            raise UsageError(f"--gpus-per-node must be >= 0, got {args.gpus_per_node}")
        if args.gpus_per_node and args.ranks_per_node is not None:
            raise UsageError("--ranks-per-node is for CPU-only jobs: with GPUs there is one rank per GPU "
                             "(set --gpus-per-node instead)")
        ranks = args.gpus_per_node or (args.ranks_per_node if args.ranks_per_node is not None else 1)
        resources = _resources(args, tasks_per_node=ranks, gpus_per_task=1 if args.gpus_per_node else 0,
                               nodes=args.nodes)
        return TrainJob(resources, passthrough, launcher=args.launcher, signal=args.signal,
                        signal_seconds=args.signal_seconds)
    resources = _resources(args, gpus_per_task=args.gpus)
    if args.command == "export":
        return ExportJob(resources, args.model, args.output, passthrough)
    return BenchJob(resources, args.model, args.results_dir, args.batch, args.provider, args.mode, passthrough)


def _in_workdir(job: Job, path: str) -> Path:
    return Path(job.resources.workdir, path)


def submit(job: Job, script: str) -> str:
    """sbatch the script (on stdin); keep a copy beside its logs; return the job id."""
    workdir = Path(job.resources.workdir)
    if not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} does not exist: create it or pass another")
    if not _in_workdir(job, job.resources.venv).joinpath("bin", "activate").is_file():
        raise UsageError(f"no virtual environment at {_in_workdir(job, job.resources.venv)}: run scripts/setup.sh "
                         "or pass --venv")
    # SLURM does not create the directories of --output/--error: a job with a missing log directory
    # fails without a word.
    log_dir = _in_workdir(job, job.resources.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(job, BenchJob):
        _in_workdir(job, job.results_dir).mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True)
    except FileNotFoundError:
        raise UsageError("sbatch not found: run this on a SLURM login node (or use --dry-run)") from None
    if proc.returncode != 0:
        raise UsageError(f"sbatch rejected the job: {proc.stderr.strip() or proc.stdout.strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    write_text_atomic(log_dir / f"{job.kind}-{job_id}.sbatch", script)
    return job_id


def parse_scontrol_record(line: str) -> dict[str, str]:
    """One `scontrol show job -o` line as a dict; on repeated keys (a JobName holding `Key=`) the last wins."""
    record = {}
    for token in _KEY.split(line.strip()):
        key, _, value = token.partition("=")
        record[key] = value
    return record


def job_records(job_id: str) -> list[dict[str, str]]:
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"job {job_id}: {proc.stderr.strip() or 'unknown'} "
                         "(finished jobs leave scontrol after MinJobAge: try sacct -j JOB)")
    return [parse_scontrol_record(line) for line in proc.stdout.splitlines() if line.strip()]


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})\n"


def status(job_id: str, wait: bool = False, timeout: float | None = None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    records = job_records(job_id)
    while wait and not all(r.get("JobState") in ENDED for r in records):
        if deadline is not None and time.monotonic() > deadline:
            raise CheckFailed(f"job {job_id} has not ended after {timeout:g} s")
        time.sleep(POLL_S)
        records = job_records(job_id)
    failed = 0
    for r in records:
        state = r.get("JobState", "?")
        print(f"job {r.get('JobId')}{'_' + r['ArrayTaskId'] if 'ArrayTaskId' in r else ''}: {state}, "
              f"exit code {r.get('ExitCode', '?')}, restarts {r.get('Restarts', '0')}, "
              f"stdout {r.get('StdOut')}, stderr {r.get('StdErr')}")
        if state in ENDED and state != "COMPLETED":
            failed += 1
            print(f"--- last {ERROR_TAIL_LINES} lines of {r.get('StdErr')}:")
            print(_tail(r.get("StdErr", ""), ERROR_TAIL_LINES), end="")
    return 1 if failed else 0


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` belongs to the job's program, never to this parser.
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    args = _parser().parse_args(own)
    if args.command == "status":
        return status(args.job_id, args.wait, args.timeout)
    job = build_job(args, passthrough)
    script = render(job)
    if args.dry_run:
        sys.stdout.write(script)
        return 0
    job_id = submit(job, script)
    print(job_id)
    log = f"{job.resources.log_dir}/{job.kind}-{job_id}{'_TASK' if isinstance(job, BenchJob) else ''}"
    print(f"slurm-submit: submitted {job.kind} job {job_id}; logs in {log}.out and .err; "
          f"check it with: python -m slurm.submit status {job_id}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run("slurm-submit", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
