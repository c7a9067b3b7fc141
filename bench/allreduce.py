"""`bench allreduce`: all-reduce time and bandwidth across Horovod ranks, per message size.

    bench allreduce -np 2 --sizes 1K..256M --json ar.json          # here, 2 ranks (Gloo)
    sbatch -N 3 --wrap 'bench allreduce -np 2,3 --json ar.json'     # across a SLURM allocation's nodes
    bench allreduce -np 2 --mpi --sizes 1M,64M                      # Horovod's MPI controller instead of Gloo
    bench report ar.json --html ar.html

For each world size N it launches, as `bench train` does (one rank per allocated node first,
`-H node1:1,node2:1`; here `-H localhost:N`),

    horovodrun -np N -H HOSTS --gloo python -m bench.allreduce_worker --sizes ... --out TMP/npN.json

whose ranks all-reduce float32 TensorFlow tensors with `horovod.tensorflow` (bench/allreduce_worker.py:
the sum is checked before anything is timed; warm-up excluded; a barrier before each timed
iteration). Reported per size, as nccl-tests' all_reduce_perf does (its PERFORMANCE.md): time (the
slowest rank's, mean over iterations), algbw = bytes / time and busbw = algbw x 2(N-1)/N, the rate
each rank's link carried, comparable with the link's rate; and, as osu_allreduce does, the
average, minimum and maximum over ranks of each rank's mean latency. GB/s are 10^9 bytes/s;
sizes take K, M, G as powers of 1024 (as nccl-tests' -b/-e). On the local cluster, a link shaped
with `scripts/local-cluster.sh up --link RATE` is recorded in the result (LOCAL_CLUSTER_LINK).
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from bench.results import AllreduceRow, BenchResult
from bench.train import allocation_nodes, horovodrun, placement
from toolkit import environment
from toolkit.cli import CheckFailed, UsageError
from toolkit.files import read_json

UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
DEFAULT_SIZES = "1K..256M"
# The environment variable the local cluster's jobs carry when its links are shaped (tests/cluster/localcluster.py).
LINK_VARIABLE = "LOCAL_CLUSTER_LINK"


def _size(text: str) -> int:
    match = re.fullmatch(r"([0-9]+)([KMG]?)B?", text.strip().upper())
    if not match:
        raise UsageError(f"--sizes: {text!r} is not a size: give bytes with an optional K, M or G, e.g. 64K")
    return int(match.group(1)) * UNITS[match.group(2)]


def parse_sizes(text: str, factor: int = 4) -> tuple[int, ...]:
    """`1K,64K,1M` as given; `LOW..HIGH` from LOW up to HIGH, each `factor` times the last (nccl-tests' -b -e -f)."""
    if factor < 2:
        raise UsageError(f"--factor {factor}: give 2 or more")
    sizes: list[int] = []
    for part in text.split(","):
        low, sep, high = part.partition("..")
        size = _size(low)
        top = _size(high) if sep else size
        while size <= top:
            sizes.append(size)
            size *= factor
    return tuple(sizes)


@dataclasses.dataclass(frozen=True)
class AllreduceConfig:
    nps: tuple[int, ...] = (2,)
    sizes: tuple[int, ...] = parse_sizes(DEFAULT_SIZES)
    iterations: int = 20
    warmup: int = 5
    controller: str = "gloo"
    timeout_s: float = 1800.0
    link: str | None = None   # the local cluster's shaped link rate, where the run is on one

    def __post_init__(self):
        if not self.nps or any(n < 2 for n in self.nps) or len(set(self.nps)) != len(self.nps):
            raise UsageError(f"-np {','.join(map(str, self.nps))}: give distinct world sizes >= 2, e.g. -np 2,3")
        bad = [s for s in self.sizes if s < 4 or s % 4]
        if not self.sizes or bad:
            raise UsageError(f"--sizes: {bad or 'none'} are not whole float32 messages: give multiples of 4 bytes, "
                             "e.g. 1K..256M")
        if self.iterations < 1 or self.warmup < 0:
            raise UsageError("--iterations must be >= 1 and --warmup >= 0")
        if self.controller not in ("gloo", "mpi"):
            raise UsageError(f"controller {self.controller!r}: give gloo or mpi")

    def command(self, np: int, out: Path, nodes: Sequence[str] = ()) -> list[str]:
        # Horovod: --gloo or --mpi picks the controller and the CPU collectives' implementation.
        return ["horovodrun", "-np", str(np), "-H", placement(np, nodes), f"--{self.controller}",
                sys.executable, "-m", "bench.allreduce_worker", "--sizes", ",".join(map(str, self.sizes)),
                "--iterations", str(self.iterations), "--warmup", str(self.warmup), "--out", str(out)]


def run_one(config: AllreduceConfig, np: int, workdir: Path, nodes: Sequence[str] = ()) -> list[AllreduceRow]:
    out = workdir / f"np{np}.json"
    command = config.command(np, out, nodes)
    command[0] = horovodrun()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=config.timeout_s,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"all-reduce at -np {np} did not finish in {config.timeout_s:.0f} s: raise --timeout "
                          "or give fewer --sizes") from None
    if done.returncode != 0 or not out.is_file():
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise CheckFailed(f"all-reduce at -np {np} failed (exit {done.returncode}): {tail}")
    return rows_from(read_json(out, "all-reduce rows", "re-run bench allreduce"))


def rows_from(found: dict) -> list[AllreduceRow]:
    """The worker's file -> rows; CheckFailed where a rank summed wrong (the worker stops timing there)."""
    rows = [AllreduceRow.from_seconds(found["np"], r["bytes"], r["count"], r["wrong"], r["times_s"])
            for r in found["rows"]]
    wrong = next((r for r in rows if r.wrong), None)
    if wrong is not None:
        raise CheckFailed(f"all-reduce at -np {wrong.np}: {wrong.wrong} of {wrong.count} elements of the "
                          f"{wrong.bytes}-byte sum were wrong: the collective is broken on these hosts")
    return rows


def run(config: AllreduceConfig, on_done: Callable[[Sequence[AllreduceRow]], None] | None = None) -> BenchResult:
    rows: list[AllreduceRow] = []
    nodes = allocation_nodes()
    with tempfile.TemporaryDirectory(prefix="bench-allreduce-") as tmp:
        for np in sorted(config.nps):
            found = run_one(config, np, Path(tmp), nodes)
            rows.extend(found)
            if on_done:
                on_done(found)
    notes = [f"Horovod's {config.controller} collectives (horovodrun --{config.controller}), float32 sums",
             "time: the slowest rank's, mean over iterations; algbw = bytes / time; busbw = algbw x 2(n-1)/n "
             "(nccl-tests' PERFORMANCE.md); latency avg/min/max: over ranks of each rank's mean (osu_allreduce)"]
    if nodes:
        notes.append(f"ranks spread over the allocation's nodes {', '.join(nodes)}")
    else:
        notes.append(f"all ranks ran on this machine ({os.cpu_count()} cores, -H localhost:N): this measures "
                     "memory copies and the CPU, not a network")
    if config.link:
        notes.append(f"the local cluster's links were shaped to {config.link} (tc tbf, each direction)")
    return BenchResult(kind="allreduce", config=dataclasses.asdict(config), environment=environment.collect(),
                       allreduce=tuple(rows), notes=tuple(notes))
