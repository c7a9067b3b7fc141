"""Submit AlexNet training, export and benchmark jobs to SLURM, and report how they ended.

    python -m slurm.submit train --nodes 2 --gpus-per-node 4 --time 12:00:00 --dry-run \\
        -- --dataset fashion_mnist --epochs 50 --batch-size 32
    python -m slurm.submit export --model runs/alexnet/model.keras --output runs/alexnet/alexnet.onnx
    python -m slurm.submit bench --model runs/alexnet/alexnet.onnx --batch 1,8,32,128 --provider cpu,cuda \
        --gpus 1 --max-parallel 2
    python -m slurm.submit train --nodes 3 --gpus-per-node 0 --ntasks-per-node 1 --nodelist 'node[1-3]' \\
        --launcher srun-pmix -- --dataset fashion_mnist --image-size 67
    python -m slurm.submit train --elastic --nodes 3 --gpus-per-node 0 --max-requeues 1 -- --dataset fashion_mnist
    python -m slurm.submit pipeline --nodes 2 --gpus-per-node 4 --batch 1,8,32 --bench-gpus 1 --provider cuda \
        -- --dataset fashion_mnist --epochs 50 --output-dir runs/fm
    python -m slurm.submit pipeline --from-model runs/fm/model.keras     # export -> bench of a trained model
    python -m slurm.submit status 1234 [1235 1236] [--wait [--timeout 600]]

(`slurm-submit` is the same command.) Arguments after `--` go to the job's program unchanged.
`--dry-run` prints the job script; otherwise it is submitted with sbatch, a copy is kept as
LOG_DIR/KIND-JOBID.sbatch beside the job's .out/.err files, and the job id is printed on stdout.
Before submitting it asks the cluster what sbatch would only find out later, or never: that every
host `--nodelist` names exists, and for `--launcher srun-pmi2/srun-pmix` that srun has that MPI
plugin and that the venv's Horovod was built with MPI (without it, each rank srun starts would
train alone). `--dry-run` asks nothing.

A train job stopped by its time limit's warning or by a preemption writes a checkpoint and requeues
itself, at most `--max-requeues` times (default 3), and not when the checkpoint did not change
during the run; its error log says which it was (slurm/templates/train.sbatch). The bench sweep is
a job array, one task per (provider, batch size); `--max-parallel N` runs at most N at once (%N).
`pipeline` queues train -> export -> bench as one chain: each link starts when the one before it
completed (`--dependency=afterok`), a failed link cancels the rest (`--kill-on-invalid-dep=yes`),
and nothing is queued unless every link is (the first is held until the last is in). It prints
the job ids in order; `status` with those ids shows the chain and the first failure's error line.

`status` prints each job's (or array task's) state, exit code, restarts and log files, for a
failed job the end of its error file, and for a requeued one the job script's notes on why; it
exits 1 when a job failed, 0 otherwise, 2 when SLURM cannot tell. States and exit codes come
only from SLURM's machine-readable records, never from text a job name, path or comment could
imitate (log lines are shown as quotes from the named file): `squeue --json` while the
controller holds the job (queued, running, or ended less than MinJobAge ago; Slurm 22.05's
format), then `sacct --parsable2` with fields that hold no user text (JobID, State, ExitCode: no
restarts or log paths), which needs an accounting database.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from slurm.launch import scontrol_hostnames
from slurm.render import (
    DEFAULT_RUN,
    LAUNCHERS,
    MODES,
    SIGNALS,
    BenchJob,
    ExportJob,
    Job,
    Resources,
    TrainJob,
    check_hostlist,
    render,
)
from toolkit import cli
from toolkit.cli import ArgumentParser, CheckFailed, UsageError
from toolkit.files import write_text_atomic
from toolkit.runs import RunDir

ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE"}
# horovodrun adds a ~25-line traceback after the failing rank's own message.
ERROR_TAIL_LINES = 40
# Slurm 22.05's `squeue --json` lists every job the controller holds, whoever's (it ignores -j,
# -u, --me): a long wait backs off so as not to load a busy controller.
POLL_S = 1.0
MAX_POLL_S = 10.0
# The only `squeue --json` layout read here (Slurm 22.05); 23.02 and later changed the job fields.
SQUEUE_FORMAT = "openapi/v0.0.38"
# Fields that cannot hold user text, so `|` splits them safely (JobName, WorkDir, Comment could hold one).
SACCT = ["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State,ExitCode", "--jobs"]
# What slurmd expands in --output/--error file names that status can know: %% %A %a %j %u %x, with widths.
_LOG_PATTERN = re.compile(r"%(\d*)([%Aajux])")
# Why a job ended in a state whose name alone does not say (squeue --json's job_state, state_reason).
STATE_NOTES = {"TIMEOUT": "its time limit ended it", "PREEMPTED": "the scheduler preempted it",
               "REQUEUED": "requeued: it runs again", "NODE_FAIL": "a node it ran on failed"}
NEVER_RAN = "DependencyNeverSatisfied"
# What the train job script writes on stderr about stops and requeues (slurm/templates/train.sbatch).
NOTE_PREFIX = "job script: "
# A pipeline's links are chained with these: a link starts only after the one before it completed
# (exit 0), and a failed link cancels every link after it instead of leaving them pending forever.
CHAIN = ("--dependency=afterok:{}", "--kill-on-invalid-dep=yes")


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
    parser.add_argument("--nodelist", help="run on these nodes: a SLURM host list like 'gpu[01-02],gpu07', or a "
                        "file (a path with '/') with one host list per line, as sbatch takes it")
    parser.add_argument("--dry-run", action="store_true", help="print the job script instead of submitting it")


def _train_options(train: argparse.ArgumentParser) -> None:
    train.add_argument("--nodes", type=int, default=1, help="machines (default 1)")
    train.add_argument("--gpus-per-node", type=int, default=1,
                       help="GPUs per machine, one rank each (default 1; 0 for CPU-only ranks)")
    train.add_argument("--ntasks-per-node", "--ranks-per-node", dest="ntasks_per_node", type=int,
                       help="ranks per machine: with --gpus-per-node 0 (default 1); with GPUs it must equal "
                       "--gpus-per-node (one rank per GPU)")
    train.add_argument("--launcher", default="horovodrun", choices=LAUNCHERS,
                       help="horovodrun for Horovod built with Gloo (default); srun-pmi2/srun-pmix for MPI builds")
    train.add_argument("--network-interface",
                       help="the interface the ranks talk over, e.g. eth0 or ib0 (default: horovodrun probes for one "
                       "every node can use; srun launchers use the network of the node's SLURM address)")
    train.add_argument("--signal", default="USR1", choices=SIGNALS,
                       help="signal SLURM sends before the time limit (default USR1)")
    train.add_argument("--signal-seconds", type=int, default=120,
                       help="how long before the time limit (default 120 s: enough to write a checkpoint)")
    train.add_argument("--max-requeues", type=int, default=3,
                       help="requeue after a time limit or preemption at most this often (default 3; 0: never)")
    train.add_argument("--elastic", action="store_true",
                       help="Horovod elastic training: the job goes on when a node is lost (slurm.launch --elastic)")


def _bench_options(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--batch", type=_int_list, default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    bench.add_argument("--provider", type=lambda s: s.split(","), default=["cpu"],
                       help="providers, e.g. cpu,cuda (default cpu)")
    bench.add_argument("--mode", default="throughput", choices=MODES, help="default: throughput")
    bench.add_argument("--results-dir", default="runs/bench",
                       help="one JSON per array task, relative to --workdir (default runs/bench; created at submit)")
    bench.add_argument("--max-parallel", type=int,
                       help="run at most N array tasks at once (the array's %%N; default: as many as fit), e.g. "
                       "to keep timings apart or leave GPUs to others")


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m slurm.submit", description=__doc__.split("\n\n")[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="Horovod training over NODES x GPUS-PER-NODE ranks (args after -- go "
                           "to python -m alexnet.train)")
    _common(train, "alexnet-train", "12:00:00")
    _train_options(train)
    export = sub.add_parser("export", help="Keras -> ONNX export (args after -- go to python -m export)")
    _common(export, "alexnet-export", "01:00:00")
    export.add_argument("--gpus", type=int, default=0, help="GPUs for the export (default 0)")
    export.add_argument("--model", default=str(DEFAULT_RUN.model), help=f"default: {DEFAULT_RUN.model}")
    export.add_argument("--output", default=str(DEFAULT_RUN.onnx), help=f"default: {DEFAULT_RUN.onnx}")
    bench = sub.add_parser("bench", help="benchmark job array over batch sizes x providers (args after -- go to "
                           "python -m bench MODE)")
    _common(bench, "alexnet-bench", "01:00:00")
    bench.add_argument("--gpus", type=int, default=0, help="GPUs per array task (default 0; 1 for cuda/tensorrt)")
    bench.add_argument("--model", default=str(DEFAULT_RUN.onnx), help=f"default: {DEFAULT_RUN.onnx}")
    _bench_options(bench)
    pipeline = sub.add_parser("pipeline", help="train -> export -> bench as one chain of jobs, each starting when "
                              "the one before it completed (args after -- go to python -m alexnet.train)")
    _common(pipeline, "alexnet", "12:00:00")
    _train_options(pipeline)
    _bench_options(pipeline)
    pipeline.add_argument("--from-model", help="a trained model.keras: export and bench it, no training link")
    pipeline.add_argument("--stage-time", default="01:00:00", help="time limit of the export job and of each "
                          "bench task (default 01:00:00; --time is the training job's)")
    pipeline.add_argument("--bench-gpus", type=int, default=0, help="GPUs per bench task (default 0)")
    status = sub.add_parser("status", help="state and exit code of jobs; the end of the error file of a failed one")
    status.add_argument("job_id", nargs="+", help="the number sbatch printed (for an array: every task); several "
                        "for a pipeline, in its order")
    status.add_argument("--wait", action="store_true", help="poll until every task of the jobs has ended")
    status.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")
    return parser


def _nodelist(value: str | None) -> str | None:
    """--nodelist as sbatch takes it: host lists, or a file of them (sbatch's rule: a path has a '/')."""
    if value is None or "/" not in value:
        return value
    try:
        lines = Path(value).read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"--nodelist file {value} cannot be read ({exc.strerror}): give a host list or a "
                         "readable file") from None
    hosts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not hosts:
        raise UsageError(f"--nodelist file {value} names no hosts: one host list per line, e.g. gpu[01-02]")
    # Each line on its own, so that the error names the line (the joined list goes onto an #SBATCH line).
    for host in hosts:
        check_hostlist(f"--nodelist file {value}: line", host)
    return ",".join(hosts)


def _resources(args: argparse.Namespace, tasks_per_node: int = 1, gpus_per_task: int = 0,
               nodes: int = 1, job_name: str | None = None, time_limit: str | None = None) -> Resources:
    return Resources(job_name=job_name or args.job_name, workdir=args.workdir, time=time_limit or args.time,
                     nodes=nodes, tasks_per_node=tasks_per_node, gpus_per_task=gpus_per_task,
                     cpus_per_task=args.cpus_per_task, partition=args.partition, account=args.account,
                     log_dir=args.log_dir, venv=args.venv, nodelist=_nodelist(args.nodelist))


def _train_job(args: argparse.Namespace, passthrough: list[str], job_name: str | None = None) -> TrainJob:
    gpus, tasks = args.gpus_per_node, args.ntasks_per_node
    if gpus < 0:
        raise UsageError(f"--gpus-per-node must be >= 0, got {gpus}")
    # Horovod: one rank per GPU; a different count would leave GPUs idle or share one between ranks.
    if gpus and tasks is not None and tasks != gpus:
        raise UsageError(f"--ntasks-per-node {tasks} does not match --gpus-per-node {gpus}: Horovod runs one "
                         f"rank per GPU; set --ntasks-per-node {gpus} or leave it out")
    ranks = gpus or (tasks if tasks is not None else 1)
    resources = _resources(args, tasks_per_node=ranks, gpus_per_task=1 if gpus else 0, nodes=args.nodes,
                           job_name=job_name)
    return TrainJob(resources, passthrough, launcher=args.launcher, signal=args.signal,
                    signal_seconds=args.signal_seconds, network_interface=args.network_interface,
                    max_requeues=args.max_requeues, elastic=args.elastic)


def build_job(args: argparse.Namespace, passthrough: list[str]) -> Job:
    """The validated job the parsed command line describes."""
    if args.command == "train":
        return _train_job(args, passthrough)
    resources = _resources(args, gpus_per_task=args.gpus)
    if args.command == "export":
        return ExportJob(resources, args.model, args.output, passthrough)
    return BenchJob(resources, args.model, args.results_dir, args.batch, args.provider, args.mode, passthrough,
                    args.max_parallel)


def build_pipeline(args: argparse.Namespace, passthrough: list[str]) -> list[Job]:
    """The pipeline's links in order: train (unless --from-model), export of its model, bench of the ONNX file."""
    links: list[Job] = []
    if args.from_model is None:
        train = _train_job(args, passthrough, job_name=f"{args.job_name}-train")
        links.append(train)
        model = train.run_dir.model
    else:
        model = Path(args.from_model)
        # The only link that could make it is not in this pipeline: refused now, not after a queue wait.
        if not Path(args.workdir, model).is_file():
            raise UsageError(f"--from-model {model} does not exist in --workdir {args.workdir}: give the path of a "
                             "trained model.keras, or leave --from-model out to train one in the pipeline")
        if passthrough:
            raise UsageError("arguments after -- go to the training link, and --from-model has none: leave them out")
    onnx = RunDir.of(model).onnx
    stage = {"time_limit": args.stage_time}
    links.append(ExportJob(_resources(args, job_name=f"{args.job_name}-export", **stage), str(model), str(onnx)))
    links.append(BenchJob(_resources(args, gpus_per_task=args.bench_gpus, job_name=f"{args.job_name}-bench", **stage),
                          str(onnx), args.results_dir, args.batch, args.provider, args.mode,
                          max_parallel=args.max_parallel))
    return links


def _in_workdir(job: Job, path: str) -> Path:
    return Path(job.resources.workdir, path)


def _slurm(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True)
    except FileNotFoundError:
        raise UsageError(f"{argv[0]} not found: run this on a SLURM login node") from None


def _prepare(job: Job) -> Path:
    """Refuse the job if the cluster or the job's directory would; return its log directory."""
    workdir = Path(job.resources.workdir)
    if not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} does not exist: create it or pass another")
    if not _in_workdir(job, job.resources.venv).joinpath("bin", "activate").is_file():
        raise UsageError(f"no virtual environment at {_in_workdir(job, job.resources.venv)}: run scripts/setup.sh "
                         "or pass --venv")
    check_with_cluster(job)
    return _in_workdir(job, job.resources.log_dir)


def _sbatch(job: Job, script: str, log_dir: Path, options: Sequence[str] = ()) -> str:
    """sbatch the script (on stdin) with `options`; keep a copy beside its logs; return the job id."""
    # SLURM does not create the directories of --output/--error: a job with a missing log directory
    # fails without a word.
    log_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(job, BenchJob):
        _in_workdir(job, job.results_dir).mkdir(parents=True, exist_ok=True)
    proc = _slurm(["sbatch", "--parsable", *options], script)
    if proc.returncode != 0:
        why = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise UsageError(f"sbatch rejected the {job.kind} job: {'; '.join(why)}")
    job_id = proc.stdout.strip().split(";")[0]
    write_text_atomic(log_dir / f"{job.kind}-{job_id}.sbatch", script)
    return job_id


def submit(job: Job, script: str) -> str:
    """Check, sbatch and keep a copy of one job; return its id."""
    return _sbatch(job, script, _prepare(job))


def submit_pipeline(links: Sequence[Job], scripts: Sequence[str]) -> list[str]:
    """Queue the links as one chain (each after the one before it completed); return their ids in order.

    Every check runs before the first sbatch, and the first link is held until the last is queued:
    a link sbatch refuses cancels those already queued, so nothing runs half a pipeline."""
    log_dirs = [_prepare(job) for job in links]
    ids: list[str] = []
    try:
        for job, script, log_dir in zip(links, scripts, log_dirs):
            options = [option.format(ids[-1]) for option in CHAIN] if ids else ["--hold"]
            ids.append(_sbatch(job, script, log_dir, options))
        release = _slurm(["scontrol", "release", ids[0]])
        if release.returncode != 0:
            raise UsageError(f"scontrol release {ids[0]} failed ({release.stderr.strip() or release.returncode})")
    except UsageError as exc:
        if ids:
            _slurm(["scancel", *ids])
            raise UsageError(f"{exc}; the pipeline's jobs queued so far were cancelled ({', '.join(ids)})") from None
        raise
    return ids


def horovod_has_mpi(python: Path) -> bool:
    """Whether the Horovod that `python` imports was built with MPI (it imports TensorFlow: seconds)."""
    probe = "import horovod.tensorflow as hvd; print(int(hvd.mpi_built()))"
    proc = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return proc.returncode == 0 and proc.stdout.strip().endswith("1")


def check_with_cluster(job: Job) -> None:
    """What only the cluster (or the job's venv) can tell: refused here, before anything is queued."""
    res = job.resources
    if res.nodelist is not None:
        names = scontrol_hostnames(res.nodelist, "--nodelist", "write it like gpu[01-02],gpu07")
        known = set(_slurm(["sinfo", "--noheader", "--all", "--Node", "--format=%N"]).stdout.split())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"--nodelist names {', '.join(unknown)}, which this cluster does not have: "
                             "choose from the nodes `sinfo -N` lists")
        if len(names) > res.nodes:
            raise UsageError(f"--nodelist names {len(names)} nodes but --nodes is {res.nodes}: "
                             f"set --nodes {len(names)} or list fewer")
    if isinstance(job, TrainJob) and job.launcher != "horovodrun":
        plugin = job.launcher.removeprefix("srun-")
        plugins = _slurm(["srun", "--mpi=list"])
        if plugin not in (plugins.stdout + plugins.stderr).split():
            raise UsageError(f"--launcher {job.launcher}: this SLURM's srun has no {plugin} plugin (`srun --mpi=list`):"
                             " choose another --launcher")
        python = _in_workdir(job, res.venv) / "bin" / "python"
        if not horovod_has_mpi(python):
            raise UsageError(f"--launcher {job.launcher} needs Horovod built with MPI, and the one in "
                             f"{_in_workdir(job, res.venv)} has none (each rank would train alone): rebuild it "
                             "with HOROVOD_WITH_MPI=1, or use --launcher horovodrun")


@dataclass(frozen=True)
class Task:
    """One job, or one array task, as SLURM records it."""

    job_id: str                # 1234; 1234_5 for an array task; 1234_[6-9%2] for array tasks not started
    state: str
    exit_code: str             # EXIT:SIGNAL, as scontrol and sacct print it
    restarts: int | None       # None: not recorded (sacct)
    stdout: str | None         # None: no file (tasks not started, not a batch job) or not recorded (sacct)
    stderr: str | None
    reason: str | None = None  # the controller's state_reason, e.g. DependencyNeverSatisfied; None from sacct

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def failed(self) -> bool:
        return self.ended and self.state != "COMPLETED"

    @property
    def never_ran(self) -> bool:
        """Cancelled because a job it depends on (a pipeline's earlier link) did not complete."""
        return self.state == "CANCELLED" and self.reason == NEVER_RAN

    @property
    def described_state(self) -> str:
        if self.never_ran:
            return "CANCELLED (never ran: a job it depends on did not complete)"
        return f"{self.state} ({STATE_NOTES[self.state]})" if self.state in STATE_NOTES else self.state


def _job_number(job_id: str) -> int:
    if not (job_id.isascii() and job_id.isdigit() and int(job_id) > 0):
        raise UsageError(f"{job_id!r} is not a job id: give the number sbatch printed, e.g. 1234 "
                         "(for an array job, status shows every task)")
    return int(job_id)


def _log_path(pattern: str, record: dict[str, Any]) -> str:
    """An --output/--error pattern of a `squeue --json` job record as the file name slurmd writes."""
    def expand(match: re.Match) -> str:
        width, key = match.groups()
        if key == "%":
            return "%"
        if key in "ux":
            return record["user_name" if key == "u" else "name"]
        number = {"A": record["array_job_id"] or record["job_id"], "a": record["array_task_id"],
                  "j": record["job_id"]}[key]
        # %a of a job that is not an array is left as written.
        return match.group(0) if number is None else str(number).zfill(min(int(width or 0), 10))

    path = _LOG_PATTERN.sub(expand, pattern)
    return path if path.startswith("/") else f"{record['current_working_directory']}/{path}"


def _controller_task(record: dict[str, Any]) -> Task:
    code = record["exit_code"]
    array_job, array_task, pending = record["array_job_id"], record["array_task_id"], record["array_task_string"]
    if array_task is not None:
        job_id = f"{array_job}_{array_task}"
    elif pending:
        job_id = f"{array_job}_[{pending}]"
    else:
        job_id = str(record["job_id"])
    stdout = stderr = None
    # Array tasks that have not started share one record and have no files yet; jobs started by
    # srun or salloc write none.
    if record["batch_flag"] and not pending:
        default = "slurm-%A_%a.out" if array_task is not None else "slurm-%j.out"
        stdout = _log_path(record["standard_output"] or default, record)
        stderr = _log_path(record["standard_error"], record) if record["standard_error"] else stdout
    return Task(job_id, record["job_state"], f"{os.WEXITSTATUS(code)}:{os.WTERMSIG(code)}", record["restart_cnt"],
                stdout, stderr, record["state_reason"])


def _controller_tasks(job: int) -> tuple[list[Task], str]:
    """The job's (or array's) tasks as the controller lists them; when there are none, why not."""
    proc = _slurm(["squeue", "--json"])
    if proc.returncode != 0:
        return [], f"squeue --json failed ({proc.stderr.strip() or proc.returncode})"
    try:
        doc = json.loads(proc.stdout)
        layout = doc["meta"]["plugin"]["type"]
    except (json.JSONDecodeError, KeyError, TypeError):
        layout = "an unknown layout"
    if layout != SQUEUE_FORMAT:
        return [], f"squeue --json prints {layout}, not {SQUEUE_FORMAT} (Slurm 22.05's), the only one read here"
    # The job itself, or every task of the array it is the id of.
    tasks = [_controller_task(r) for r in doc["jobs"] if job in (r["job_id"], r["array_job_id"])]
    return tasks, "the controller does not list it (it forgets ended jobs MinJobAge after they end)"


def _accounting_tasks(text: str) -> list[Task]:
    """`sacct` lines of the fields in SACCT."""
    tasks = []
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) != 3:
            raise UsageError(f"unexpected sacct output {line!r}: expected JobID|State|ExitCode")
        job_id, state, exit_code = fields
        # "CANCELLED by 1000": the state is the first word.
        tasks.append(Task(job_id, state.split(" ")[0], exit_code, None, None, None))
    return tasks


def job_tasks(job_id: str) -> list[Task]:
    """The job's (or array's) tasks: from the controller while it holds the job, else from accounting."""
    job = _job_number(job_id)
    tasks, why = _controller_tasks(job)
    if tasks:
        return tasks
    proc = _slurm([*SACCT, str(job)])
    if proc.returncode != 0:
        raise UsageError(f"job {job}: {why}, and sacct cannot tell ({proc.stderr.strip() or proc.returncode}): "
                         f"look at its log files (LOG_DIR/KIND-{job}[_TASK].out and .err for jobs submitted here)")
    tasks = _accounting_tasks(proc.stdout)
    if not tasks:
        raise UsageError(f"job {job}: {why}, and sacct does not know it either: check the id sbatch printed")
    return tasks


def _lines(path: str) -> list[str]:
    """The file's lines; one line saying why when it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError as exc:
        return [f"(cannot read {_shown(path)}: {exc.strerror})"]


def _shown(path: str | None) -> str:
    # A path with a line break (sbatch accepts one) would print a line that looks like another job's.
    if path is None:
        return "unknown"
    return path if path.isprintable() else repr(path)


def _error_line(task: Task) -> str:
    """The last line of a failed task's error file: what a failed link of a pipeline died of."""
    if task.stderr is None:
        return "no error file"
    return next((line for line in reversed(_lines(task.stderr)) if line.strip()), "(its error file is empty)")


def _print_task(t: Task) -> None:
    restarts = "unknown" if t.restarts is None else t.restarts
    print(f"job {t.job_id}: {t.described_state}, exit code {t.exit_code}, restarts {restarts}, "
          f"stdout {_shown(t.stdout)}, stderr {_shown(t.stderr)}")
    if t.failed and not t.never_ran:
        if t.stderr is None:
            print("--- no error file to show: SLURM does not record one for this job")
        else:
            print(f"--- last {ERROR_TAIL_LINES} lines of {_shown(t.stderr)}:")
            print("".join(f"{line}\n" for line in _lines(t.stderr)[-ERROR_TAIL_LINES:]), end="")
    elif t.stderr is not None and t.restarts:
        # Why each earlier run stopped (time limit or preemption) and was requeued: the train script's notes.
        notes = [line for line in _lines(t.stderr) if line.startswith(NOTE_PREFIX)]
        if notes:
            print(f"--- the job script's notes in {_shown(t.stderr)}:")
            print("".join(f"{line}\n" for line in notes), end="")


def _chain_line(chain: Sequence[tuple[str, list[Task]]]) -> str:
    """One line for jobs given in a pipeline's order: each job's state, and the first failure's error line."""
    def state(tasks: list[Task]) -> str:
        failed = [t for t in tasks if t.failed]
        running = [t for t in tasks if not t.ended]
        return (failed or running or tasks)[0].state
    line = "chain " + " -> ".join(f"{job_id} {state(tasks)}" for job_id, tasks in chain)
    first = next((t for _, tasks in chain for t in tasks if t.failed and not t.never_ran), None)
    return line if first is None else f"{line}; failed first: job {first.job_id}: {_error_line(first)}"


def status(job_ids: Sequence[str], wait: bool = False, timeout: float | None = None) -> int:
    """Print every task of the jobs (a pipeline's in its order); 1 when one failed, else 0."""
    deadline = None if timeout is None else time.monotonic() + timeout
    chain, pause = [(j, job_tasks(j)) for j in job_ids], POLL_S
    while wait and not all(t.ended for _, tasks in chain for t in tasks):
        if deadline is not None and time.monotonic() > deadline:
            raise CheckFailed(f"job {' '.join(job_ids)} has not ended after {timeout:g} s")
        time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
        chain, pause = [(j, job_tasks(j)) for j in job_ids], min(pause * 1.5, MAX_POLL_S)
    for _, tasks in chain:
        for t in tasks:
            _print_task(t)
    if len(chain) > 1:
        print(_chain_line(chain))
    return 1 if any(t.failed for _, tasks in chain for t in tasks) else 0


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` belongs to the job's program, never to this parser.
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    args = _parser().parse_args(own)
    if args.command == "status":
        return status(args.job_id, args.wait, args.timeout)
    if args.command == "pipeline":
        return _pipeline(args, passthrough)
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


def _pipeline(args: argparse.Namespace, passthrough: list[str]) -> int:
    links = build_pipeline(args, passthrough)
    scripts = [render(job) for job in links]
    if args.dry_run:
        for i, (job, script) in enumerate(zip(links, scripts)):
            how = "sbatch --hold (released once every link is queued)" if i == 0 else \
                f"sbatch {' '.join(CHAIN).format(f'<{links[i - 1].kind} job id>')}"
            sys.stdout.write(f"# ===== pipeline link {i + 1} of {len(links)}: {job.kind}, submitted with {how}\n")
            sys.stdout.write(script)
        return 0
    ids = submit_pipeline(links, scripts)
    print(" ".join(ids))
    chain = " -> ".join(f"{job.kind} {job_id}" for job, job_id in zip(links, ids))
    print(f"slurm-submit: submitted pipeline {chain}; logs in {args.log_dir}; check it with: "
          f"python -m slurm.submit status {' '.join(ids)}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run("slurm-submit", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
