"""Render the SLURM job scripts in slurm/templates/ from validated options, with every user value quoted.

Pure: no SLURM, no files written. `python -m slurm.submit ... --dry-run` prints what this renders.
Every value that came from the user goes through `shlex.quote`, so a job name like `x; rm -rf ~` or
`$(id)` stays literal text for bash. sbatch reads the `#SBATCH` lines with a tokenizer of its own,
though: quotes and whitespace as in the shell, an unquoted `#` starts a comment, and a backslash
escapes the next character even inside single quotes, so a value holding one could close its quotes
and add options of its own. Values on `#SBATCH` lines are therefore printable ASCII without a
backslash (then sbatch reads `shlex.quote`'s output as bash does), and partitions, accounts and
node lists must follow SLURM's grammar for them. Values are checked here, on construction, so a
wrong script fails at submit time, not after a queue wait.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from toolkit.cli import UsageError
from toolkit.constants import PROVIDERS
from toolkit.runs import RunDir

LAUNCHERS = ("horovodrun", "srun-pmi2", "srun-pmix")
SIGNALS = ("USR1", "USR2", "TERM")
MODES = ("throughput", "latency")
MAX_ARRAY_TASKS = 1000
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
TEMPLATES = Path(__file__).parent / "templates"
# `python -m alexnet.train`'s default --output-dir: where export and bench look by default.
DEFAULT_RUN = RunDir("runs/alexnet")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# SLURM's names of partitions and accounts; --partition takes a comma-separated list of them.
_NAME = r"[A-Za-z0-9_.-]+"
_PARTITIONS = re.compile(rf"{_NAME}(?:,{_NAME})*")
_ACCOUNT = re.compile(_NAME)
# A SLURM host list: host names, each with optional [ranges], comma-separated, e.g. gpu[01-02,07],cpu3.
_HOST = r"(?:[A-Za-z0-9_.-]|\[\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*\])+"
_HOSTLIST = re.compile(rf"{_HOST}(?:,{_HOST})*")


def time_limit_seconds(value: str) -> int:
    """SLURM's --time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    match = _TIME.match(value)
    if not match:
        raise UsageError(f"--time {value!r} is not a SLURM time: use MINUTES, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = match.groups()
    if days is not None:
        parts = [int(a), int(b or 0), int(c or 0)]  # D-HH[:MM[:SS]]
    elif c is not None:
        parts = [int(a), int(b), int(c)]            # HH:MM:SS
    else:
        parts = [0, int(a), int(b or 0)]            # MM[:SS]
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def _check_text(name: str, value: str | None) -> None:
    # Quoting makes any text inert for bash; a line break would still end an #SBATCH line early, and
    # an empty name or path is always a mistake.
    if value is not None and (not value or any(ch in value for ch in "\n\r\0")):
        raise UsageError(f"{name} must be one non-empty line of text, got {value!r}")


def _check_sbatch_text(name: str, value: str | None) -> None:
    """A value for an #SBATCH line: sbatch's own tokenizer reads it as bash reads shlex.quote's output."""
    _check_text(name, value)
    if value is not None and ("\\" in value or not (value.isascii() and value.isprintable())):
        raise UsageError(f"{name} {value!r} holds a backslash or a character outside printable ASCII, which sbatch "
                         f"would not read as written on its #SBATCH line: give {name} without them")


def _check_grammar(name: str, value: str | None, grammar: re.Pattern, what: str) -> None:
    if value is not None and not grammar.fullmatch(value):
        raise UsageError(f"{name} {value!r} is not {what}")


def check_hostlist(name: str, value: str | None) -> None:
    """A SLURM host list (`name`: where it came from), e.g. gpu[01-02],gpu07."""
    _check_grammar(name, value, _HOSTLIST, "a SLURM host list: write host names of letters, digits, '_', '.' and "
                   "'-', each with optional [ranges], comma-separated, like gpu[01-02],gpu07")


def _check_path(name: str, value: str, sbatch: bool = True) -> None:
    (_check_sbatch_text if sbatch else _check_text)(name, value)
    # SLURM expands %j, %x, ... in --output/--error/--chdir paths.
    if "%" in value:
        raise UsageError(f"{name} {value!r} contains '%', which SLURM expands in file names: choose another path")


def _check_positive(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Resources:
    """What every job asks SLURM for, and where it runs."""
    job_name: str
    workdir: str
    time: str = "01:00:00"
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    partition: str | None = None
    account: str | None = None
    log_dir: str = "slurm-logs"
    venv: str = ".venv"
    nodelist: str | None = None      # SLURM hostlist expressions, comma-separated, e.g. "gpu[01-02],gpu07"

    def __post_init__(self) -> None:
        _check_sbatch_text("--job-name", self.job_name)
        for name, value in (("--partition", self.partition), ("--account", self.account),
                            ("--nodelist", self.nodelist)):
            _check_text(name, value)
        _check_grammar("--partition", self.partition, _PARTITIONS, "a SLURM partition name (or a comma-separated "
                       "list of them): use letters, digits, '_', '.' and '-', like gpu or gpu,cpu")
        _check_grammar("--account", self.account, _ACCOUNT, "a SLURM account name: use letters, digits, '_', '.' "
                       "and '-', like proj123")
        check_hostlist("--nodelist", self.nodelist)
        _check_path("--workdir", self.workdir)
        _check_path("--log-dir", self.log_dir)
        # The venv is only on the script's bash lines, which sbatch does not read.
        _check_path("--venv", self.venv, sbatch=False)
        time_limit_seconds(self.time)
        _check_positive("--nodes", self.nodes)
        _check_positive("tasks per node", self.tasks_per_node)
        _check_positive("--gpus-per-task", self.gpus_per_task, minimum=0)
        _check_positive("--cpus-per-task", self.cpus_per_task)


@dataclass(frozen=True)
class TrainJob:
    """Multi-node, multi-GPU Horovod training: one rank per GPU (or `tasks_per_node` ranks without GPUs)."""
    resources: Resources
    train_args: Sequence[str] = ()
    launcher: str = "horovodrun"
    signal: str = "USR1"
    signal_seconds: int = 120
    network_interface: str | None = None
    max_requeues: int = 3
    elastic: bool = False
    kind: str = field(default="train", init=False)

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise UsageError(f"--launcher {self.launcher!r} is unknown: choose one of {', '.join(LAUNCHERS)}")
        _check_text("--network-interface", self.network_interface)
        if self.signal not in SIGNALS:
            raise UsageError(f"--signal {self.signal!r} is unknown: choose one of {', '.join(SIGNALS)}")
        _check_positive("--signal-seconds", self.signal_seconds)
        _check_positive("--max-requeues", self.max_requeues, minimum=0)
        limit = time_limit_seconds(self.resources.time)
        # SLURM would send the signal at once: the ranks could not even start before checkpointing.
        if self.signal_seconds * 2 > limit:
            raise UsageError(f"--signal-seconds {self.signal_seconds} is more than half of --time "
                             f"{self.resources.time}: lower it or raise --time")

    @property
    def launch_args(self) -> list[str]:
        """python -m slurm.launch's options besides --launcher."""
        interface = [] if self.network_interface is None else ["--network-interface", self.network_interface]
        return (["--elastic"] if self.elastic else []) + interface

    @property
    def args(self) -> list[str]:
        # Always --resume: a requeued job must continue from its checkpoint, and a fresh one starts clean.
        resume = [] if "--resume" in self.train_args else ["--resume"]
        return (["--elastic"] if self.elastic and "--elastic" not in self.train_args else []) + [
            *self.train_args, *resume]

    @property
    def run_dir(self) -> RunDir:
        """The trainer's --output-dir (its last one, as argparse takes it), relative to the job's --chdir."""
        output_dir = str(DEFAULT_RUN.root)
        args = list(self.train_args)
        for i, arg in enumerate(args):
            if arg == "--output-dir" and i + 1 < len(args):
                output_dir = args[i + 1]
            elif arg.startswith("--output-dir="):
                output_dir = arg.partition("=")[2]
        return RunDir(output_dir)


@dataclass(frozen=True)
class ExportJob:
    """Keras -> ONNX export (`python -m export MODEL -o OUT`), one task."""
    resources: Resources
    model: str
    output: str
    export_args: Sequence[str] = ()
    kind: str = field(default="export", init=False)

    def __post_init__(self) -> None:
        _check_text("--model", self.model)
        _check_text("--output", self.output)


@dataclass(frozen=True)
class BenchJob:
    """A job array: one `python -m bench MODE` run per (provider, batch size), one JSON result each."""
    resources: Resources
    model: str
    results_dir: str
    batches: Sequence[int] = (1, 8, 32)
    providers: Sequence[str] = ("cpu",)
    mode: str = "throughput"
    bench_args: Sequence[str] = ()
    max_parallel: int | None = None     # the array's %N: at most this many tasks at once (None: no cap)
    kind: str = field(default="bench", init=False)

    def __post_init__(self) -> None:
        _check_text("--model", self.model)
        _check_text("--results-dir", self.results_dir)
        if not self.batches or not self.providers:
            raise UsageError("--batch and --provider need at least one value each, e.g. --batch 1,8,32")
        for batch in self.batches:
            _check_positive("every --batch value", batch)
        for provider in self.providers:
            if provider not in PROVIDERS:
                raise UsageError(f"--provider {provider!r} is unknown: choose from {', '.join(PROVIDERS)}")
        if self.mode not in MODES:
            raise UsageError(f"--mode {self.mode!r} is unknown: choose one of {', '.join(MODES)}")
        if self.max_parallel is not None:
            _check_positive("--max-parallel", self.max_parallel)
        if self.tasks > MAX_ARRAY_TASKS:
            raise UsageError(f"{self.tasks} array tasks is too many: at most {MAX_ARRAY_TASKS}")

    @property
    def tasks(self) -> int:
        return len(self.batches) * len(self.providers)


Job = TrainJob | ExportJob | BenchJob


def _q(values: Sequence[str | int]) -> str:
    return " ".join(shlex.quote(str(v)) for v in values)


def sbatch_header(job: Job) -> str:
    """The #SBATCH block: one option per line, each with the reason it is there."""
    res = job.resources
    array = isinstance(job, BenchJob)
    # %A_%a (array job id, task index) for arrays, %j (job id) otherwise.
    log_id = "%A_%a" if array else "%j"
    lines: list[tuple[str, str | int | None, str]] = [("job-name", res.job_name, "the name squeue and sacct show")]
    if res.partition is not None:
        lines.append(("partition", res.partition, "the queue to run in"))
    if res.account is not None:
        lines.append(("account", res.account, "the allocation charged for the run"))
    if res.nodelist is not None:
        lines.append(("nodelist", res.nodelist, "run on these machines"))
    lines += [
        ("time", res.time, "wall-clock limit; SLURM stops the job after it"),
        ("nodes", res.nodes, "machines in the allocation"),
        ("ntasks-per-node", res.tasks_per_node,
         "one Horovod rank per GPU" if res.gpus_per_task else "tasks (ranks) on each machine"),
    ]
    if res.gpus_per_task:
        lines.append(("gpus-per-task", res.gpus_per_task, "each rank gets its own GPU"))
    lines += [
        ("cpus-per-task", res.cpus_per_task, "CPU cores per rank (input pipeline, host-side ops)"),
        ("chdir", res.workdir, "relative paths below are relative to this directory"),
        ("output", f"{res.log_dir}/{job.kind}-{log_id}.out", "stdout, named by job id"),
        ("error", f"{res.log_dir}/{job.kind}-{log_id}.err", "stderr, named by job id"),
    ]
    if isinstance(job, TrainJob):
        lines += [
            ("signal", f"B:{job.signal}@{job.signal_seconds}",
             f"SIG{job.signal} to this script {job.signal_seconds} s before the time limit"),
            ("requeue", None, "allow the job to be requeued after preemption"),
            ("open-mode", "append", "a requeued run appends to the same log files"),
        ]
        if job.elastic:
            lines.append(("no-kill", None, "a lost node does not end the job: elastic training goes on without it"))
    if isinstance(job, BenchJob):
        cap = "" if job.max_parallel is None else f"%{job.max_parallel}"
        why = "" if job.max_parallel is None else f", at most {job.max_parallel} at a time"
        lines.append(("array", f"0-{job.tasks - 1}{cap}", f"one task per (provider, batch size) pair{why}"))
    options = [f"#SBATCH --{opt}" if value is None else f"#SBATCH --{opt}={shlex.quote(str(value))}"
               for opt, value, _ in lines]
    width = max(len(o) for o in options) + 2
    return "\n".join(f"{o:<{width}}# {comment}" for o, (_, _, comment) in zip(options, lines))


def _fields(job: Job) -> dict[str, str]:
    res = job.resources
    common = {"header": sbatch_header(job), "venv": shlex.quote(res.venv)}
    if isinstance(job, TrainJob):
        launch_args = "".join(f" {shlex.quote(a)}" for a in job.launch_args)
        # The time-limit warning's signal, and SIGTERM, which the scheduler sends when it preempts the job.
        traps = "\n".join(f"trap 'on_signal {s}' {s}" for s in dict.fromkeys((job.signal, "TERM")))
        return {**common, "launcher": job.launcher, "launch_args": launch_args, "signal": job.signal,
                "signal_seconds": str(job.signal_seconds), "max_requeues": str(job.max_requeues), "traps": traps,
                "checkpoint": shlex.quote(str(job.run_dir.checkpoint)),
                "ranks": str(res.nodes * res.tasks_per_node), "nodes": str(res.nodes), "train_args": _q(job.args)}
    if isinstance(job, ExportJob):
        return {**common, "model": shlex.quote(job.model), "output": shlex.quote(job.output),
                "export_args": _q(job.export_args)}
    return {**common, "model": shlex.quote(job.model), "results_dir": shlex.quote(job.results_dir),
            "batches": _q(job.batches), "providers": _q(job.providers), "mode": job.mode,
            "bench_args": _q(job.bench_args)}


def render(job: Job) -> str:
    """The complete job script for `job`, ready for sbatch."""
    template = (TEMPLATES / f"{job.kind}.sbatch").read_text()
    fields = _fields(job)
    # Substituted in one pass, so a value that looks like {{name}} is never expanded again.
    return _PLACEHOLDER.sub(lambda m: fields[m.group(1)], template)
