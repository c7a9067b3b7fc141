"""`bench train`: AlexNet training throughput on synthetic data under Horovod, and its scaling.

A thin layer over the training job itself (so it measures what users run): for each world
size N it launches

    horovodrun -np N -H localhost:N --gloo python -m alexnet.train --dataset synthetic \\
        --image-size S --batch-size B --train-samples M --epochs 1 --warmup-steps W \\
        --log-every K --output-dir TMP/npN

Inside a SLURM allocation of several nodes (e.g. `sbatch -N 3 --wrap 'bench train -np 1,2,3'`)
the ranks are spread over its nodes instead, one per node first (`-H node1:1,node2:1`), so the
scaling is across nodes; horovodrun reaches the other nodes over ssh.

It reads TMP/npN/summary.json's `throughput.interval_images_per_second` (total img/s over all
ranks for each K-step interval after warm-up). Reported per rank and in total: the mean over
intervals with its 95% confidence interval (Student's t), 1.96 sd of the intervals (what
Horovod's synthetic benchmark prints as "+-": the intervals' scatter, not the mean's
uncertainty), and scaling efficiency (per-rank img/s at N over per-rank img/s at the smallest
N given, i.e. one rank for -np 1,...).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from bench.results import BenchResult, TrainRow
from toolkit import environment
from toolkit.cli import CheckFailed, UsageError
from toolkit.constants import MIN_IMAGE_SIZE
from toolkit.runs import RunDir


@dataclasses.dataclass(frozen=True)
class TrainBenchConfig:
    nps: tuple[int, ...] = (1, 2)
    image_size: int = 67
    batch_size: int = 32
    steps: int = 30  # measured steps per rank, after warm-up
    warmup_steps: int = 5
    log_every: int = 5
    precision: str = "auto"
    timeout_s: float = 1800.0

    def __post_init__(self):
        if not self.nps or any(n < 1 for n in self.nps):
            raise UsageError(f"-np {','.join(map(str, self.nps))}: give world sizes >= 1, e.g. -np 1,2")
        if len(set(self.nps)) != len(self.nps):
            raise UsageError("-np lists a world size twice: give each once, e.g. -np 1,2,4")
        for name in ("batch_size", "steps", "log_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
        if self.warmup_steps < 0:
            raise UsageError("--warmup-steps must be >= 0")
        if self.steps < self.log_every:
            raise UsageError(f"--steps {self.steps} is less than --log-every {self.log_every}: no interval would "
                             "be measured; raise --steps")
        if self.image_size < MIN_IMAGE_SIZE:
            raise UsageError(f"--image-size {self.image_size} is below AlexNet's minimum of {MIN_IMAGE_SIZE}")

    def command(self, np: int, output_dir: Path, nodes: Sequence[str] = ()) -> list[str]:
        steps_per_rank = self.warmup_steps + self.steps
        # Horovod: -H localhost:N places all N ranks here; --gloo needs no MPI install.
        return ["horovodrun", "-np", str(np), "-H", placement(np, nodes), "--gloo",
                sys.executable, "-m", "alexnet.train", "--dataset", "synthetic",
                "--image-size", str(self.image_size), "--batch-size", str(self.batch_size),
                # Horovod: the synthetic epoch is shared by the ranks, so it grows with N to keep
                # the steps per rank (and so the measured intervals) the same at every world size.
                "--train-samples", str(steps_per_rank * self.batch_size * np), "--epochs", "1",
                "--precision", self.precision, "--warmup-steps", str(self.warmup_steps),
                "--log-every", str(self.log_every), "--output-dir", str(output_dir), "--no-progress"]


def placement(np: int, nodes: Sequence[str]) -> str:
    """horovodrun's -H for np ranks: all here, or over `nodes` in turn (node1 gets the first extra rank)."""
    if not nodes:
        return f"localhost:{np}"
    slots = [np // len(nodes) + (i < np % len(nodes)) for i in range(len(nodes))]
    return ",".join(f"{node}:{n}" for node, n in zip(nodes, slots) if n)


def allocation_nodes(env=os.environ) -> list[str]:
    """The nodes of the SLURM allocation this runs in, when it has several (else none: run here)."""
    if int(env.get("SLURM_JOB_NUM_NODES", "1")) < 2:
        return []
    fix = "run bench train inside a SLURM job of a working cluster (sbatch/salloc), or outside SLURM"
    if not env.get("SLURM_JOB_NODELIST"):
        raise UsageError(f"SLURM_JOB_NUM_NODES is {env['SLURM_JOB_NUM_NODES']} but SLURM_JOB_NODELIST is not set: "
                         f"{fix}")
    from slurm.launch import scontrol_hostnames
    return scontrol_hostnames(env["SLURM_JOB_NODELIST"], "SLURM_JOB_NODELIST", fix)


def horovodrun() -> str:
    found = shutil.which("horovodrun") or shutil.which("horovodrun", path=str(Path(sys.executable).parent))
    if not found:
        raise UsageError("horovodrun not found: install Horovod (scripts/setup.sh) or activate the venv")
    return found


def run_one(config: TrainBenchConfig, np: int, workdir: Path, nodes: Sequence[str] = ()) -> list[float]:
    """Total img/s per interval for one world size, from the training job's own summary."""
    output_dir = workdir / f"np{np}"
    command = config.command(np, output_dir, nodes)
    command[0] = horovodrun()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=config.timeout_s)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"training at -np {np} did not finish in {config.timeout_s:.0f} s") from None
    run_dir = RunDir(output_dir)
    if done.returncode != 0 or not run_dir.summary.is_file():
        tail = " | ".join(line for line in (done.stderr or done.stdout).strip().splitlines()[-3:])
        raise CheckFailed(f"training at -np {np} failed (exit {done.returncode}): {tail}")
    intervals = run_dir.read_summary().throughput.interval_images_per_second
    if not intervals:
        raise CheckFailed(f"training at -np {np} logged no throughput interval after warm-up: raise --steps")
    return [float(v) for v in intervals]


def run(config: TrainBenchConfig, keep_dir: str | None = None,
        on_done: Callable[[int, Sequence[float]], None] | None = None) -> BenchResult:
    rows: list[TrainRow] = []
    nodes = allocation_nodes()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        workdir = Path(keep_dir) if keep_dir else Path(tmp)
        if not workdir.is_dir():
            raise UsageError(f"--keep-dir {workdir} does not exist: create it or choose another")
        for np in sorted(config.nps):
            intervals = run_one(config, np, workdir, nodes)
            rows.append(TrainRow.from_intervals(np, intervals, base=rows[0] if rows else None))
            if on_done:
                on_done(np, intervals)
    notes = [f"efficiency: per-rank img/s relative to -np {rows[0].np}"]
    if nodes:
        notes.append(f"ranks spread over the allocation's nodes {', '.join(nodes)} "
                     f"({'; '.join(f'-np {n}: -H {placement(n, nodes)}' for n in sorted(config.nps))})")
    elif max(config.nps) > 1:
        notes.append(f"all ranks ran on this machine's {os.cpu_count()} cores (-H localhost:N): with fewer cores "
                     "or accelerators than ranks, they compete, so efficiency here says little about a cluster")
    return BenchResult(kind="train", config=dataclasses.asdict(config), environment=environment.collect(),
                       train=tuple(rows), notes=tuple(notes))
