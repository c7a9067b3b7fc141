"""The GPU check: onnxruntime-gpu's CUDA provider on the exported AlexNet and its float16 and int8 variants.

What scripts/gpu-check.sh runs on a GPU machine that has Python 3, NVIDIA's CUDA 13 pip libraries and
the wheels it is given (onnxruntime-gpu, numpy, scipy) and nothing else: no TensorFlow, no onnx, no
network. The models travel as their graphs (bench.graphpack, scripts/gpu-check-models/) and get their
weights regenerated from a seed. For each variant it
  * checks CUDA's outputs against the CPU's on the same inputs (max |difference| over the CPU outputs'
    largest magnitude, within a per-precision limit: TOLERANCES),
  * checks an IO-bound run (inputs from host arrays, outputs bound to GPU memory, then copied back)
    against a plain session.run on CUDA,
  * sweeps batch 1..256 on the CPU and on CUDA: throughput, latency, session creation and first-run time
    (cold start), and on CUDA where a run's time goes (host-to-device copy, compute, device-to-host copy),
and checks that float16 is faster than float32 on CUDA at the largest batch. One JSON (a bench result of
kind "gpucheck", `bench report FILE` renders it) and a plain table on stdout; exit 1 if a check failed.

    python -m bench.gpucheck scripts/gpu-check-models --json gpu-check.json          # needs CUDA
    python -m bench.gpucheck scripts/gpu-check-models --json cpu.json --cpu-only --batches 1,8
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from bench import graphpack
from bench.engines import OnnxEngine
from bench.inputs import InputConfig
from bench.measure import measure_engine
from bench.results import BenchResult, Check, Row
from bench.runner import RunConfig
from bench.session import SessionConfig, create_session
from toolkit import cli, environment
from toolkit.cli import ArgumentParser, UsageError
from toolkit.constants import PROVIDERS
from toolkit.files import write_json_atomic

# CUDA against CPU, max |diff| / max |CPU output|. float32: CUDA's convolutions may use TF32 (10-bit mantissa),
# so float16-like rounding; float16: both round, differently; int8: the CPU fuses QDQ into integer kernels
# (QLinearConv), CUDA dequantizes and computes in float, so a value may land one quantization step apart.
TOLERANCES = {"float32": 1e-3, "float16": 1e-2, "int8": 5e-2}
# An IO-bound run is the same kernels on the same inputs as session.run: it may differ only by rounding.
IO_BINDING_TOLERANCE = 1e-5
AGREEMENT_BATCH = 8
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
INPUTS = InputConfig(seed=0, distinct=2)


def relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| over max |expected|: 0 for equal arrays, scale-free."""
    expected = expected.astype(np.float64)
    scale = float(np.abs(expected).max()) or 1.0
    return float(np.abs(got.astype(np.float64) - expected).max()) / scale


def within(name: str, value: float, limit: float, detail: str) -> Check:
    return Check(name=name, passed=bool(value <= limit), value=value, limit=limit, detail=detail)


def not_run(name: str, why: str) -> Check:
    return Check(name=name, passed=None, detail=why)


def agreement_checks(variant: str, cpu: OnnxEngine, cuda: OnnxEngine) -> list[Check]:
    """CUDA vs CPU on one feed; an IO-bound CUDA run (outputs left in GPU memory, copied back) vs session.run."""
    feed = INPUTS.feeds(cpu.specs, AGREEMENT_BATCH)[0]
    expected = cpu.session.session.run(None, feed)[0]
    plain = cuda.session.session.run(None, feed)[0]
    session = cuda.session.session
    binding = session.io_binding()
    for name, array in feed.items():
        binding.bind_cpu_input(name, array)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", cuda.session.config.device_id)
    session.run_with_iobinding(binding)
    bound = binding.copy_outputs_to_cpu()[0]
    top1 = float(np.mean(plain.reshape(len(plain), -1).argmax(1) == expected.reshape(len(expected), -1).argmax(1)))
    return [within(f"{variant}: CUDA = CPU", relative_difference(plain, expected), TOLERANCES[variant],
                   f"batch {AGREEMENT_BATCH}, max |diff| / max |CPU output|; top-1 agreement {top1:.0%}"),
            within(f"{variant}: IO binding = session.run (CUDA)", relative_difference(bound, plain),
                   IO_BINDING_TOLERANCE, "inputs bound from host arrays, outputs bound to GPU memory, copied back")]


def speedup_check(rows: Sequence[Row], batch: int) -> Check:
    """float16 faster than float32 on CUDA at `batch`: the ratio of their throughputs."""
    name = f"float16 faster than float32 on CUDA at batch {batch}"
    speed = {r.label: r.throughput.samples_per_second for r in rows if r.batch == batch}
    if "float16 cuda" not in speed or "float32 cuda" not in speed:
        return not_run(name, "needs float32 and float16 measured on CUDA at that batch")
    ratio = speed["float16 cuda"] / speed["float32 cuda"]
    return Check(name=name, passed=ratio > 1, value=ratio, limit=1.0, detail="float16 / float32 samples/s")


def open_engines(model: Path, cpu_only: bool) -> tuple[OnnxEngine, OnnxEngine | None, str | None]:
    """The CPU engine, and the CUDA one (None, with the reason, where it did not come up on CUDA)."""
    cpu = OnnxEngine(create_session(model, SessionConfig(providers=("cpu",))))
    if cpu_only:
        return cpu, None, "--cpu-only"
    cuda = OnnxEngine(create_session(model, SessionConfig(providers=("cuda",))))
    if cuda.providers[0] != PROVIDERS["cuda"]:
        return cpu, None, cuda.fallback
    return cpu, cuda, None


def check_variant(graph: Path, work: Path, batches: Sequence[int], run: RunConfig,
                  cpu_only: bool) -> tuple[list[Row], list[Check]]:
    variant = graphpack.read_manifest(graph)["variant"]
    model = graphpack.unpack(graph, work)
    cpu, cuda, why = open_engines(model, cpu_only)
    if cuda is None:
        checks = [Check(f"{variant}: CUDA session", None if cpu_only else False, detail=why or "no CUDA session"),
                  not_run(f"{variant}: CUDA = CPU", "no CUDA session"),
                  not_run(f"{variant}: IO binding = session.run (CUDA)", "no CUDA session")]
    else:
        checks = [Check(f"{variant}: CUDA session", True, detail=" + ".join(cuda.providers))]
        checks += agreement_checks(variant, cpu, cuda)
    rows = []
    for engine, provider in ((cpu, "cpu"), (cuda, "cuda")):
        if engine is None:
            continue
        for batch in batches:
            rows.append(measure_engine(engine, batch=batch, inputs=INPUTS, run=run, label=f"{variant} {provider}"))
            print(f"  {rows[-1].label:14} batch {batch:4}: {rows[-1].throughput.samples_per_second:10.1f} samples/s",
                  file=sys.stderr, flush=True)
    return rows, checks


def run_check(pack: Path, batches: Sequence[int], run: RunConfig, cpu_only: bool, seed_note: str) -> BenchResult:
    graphs = sorted(pack.glob(f"*{graphpack.GRAPH_SUFFIX}"), key=lambda g: (g.name.count("."), g.name))
    if not graphs:
        raise UsageError(f"no *{graphpack.GRAPH_SUFFIX} in {pack}: pass the directory `python -m bench.graphpack` "
                         "wrote (scripts/gpu-check-models)")
    rows: list[Row] = []
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        for graph in graphs:
            print(f"{graph.name}: weights regenerated, sessions, checks, sweep", file=sys.stderr, flush=True)
            found_rows, found_checks = check_variant(graph, Path(work), batches, run, cpu_only)
            rows += found_rows
            checks += found_checks
    checks.append(speedup_check(rows, max(batches)) if not cpu_only else
                  not_run(f"float16 faster than float32 on CUDA at batch {max(batches)}", "--cpu-only"))
    providers = tuple(dict.fromkeys(p for r in rows for p in r.providers[:1]))
    notes = (seed_note, "limits: " + ", ".join(f"{v} {t:g}" for v, t in TOLERANCES.items())
             + f" (CUDA vs CPU, max |diff| / max |CPU output|); IO binding {IO_BINDING_TOLERANCE:g}",
             "CUDA rows: IO binding, inputs from host arrays in each run, outputs copied to the host; the split "
             "(H2D, compute, D2H) is sampled apart from the timed runs", "CPU rows: onnxruntime's defaults")
    return BenchResult(kind="gpucheck", config={"pack": str(pack), "batches": list(batches),
                                                "run": dataclasses.asdict(run), "cpu_only": cpu_only},
                       environment=environment.collect(), rows=tuple(rows), requested_providers=("cpu", "cuda"),
                       providers=providers, notes=notes, checks=tuple(checks))


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table (the GPU machine has no rich): columns as wide as their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in (header, *rows)]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def text_report(result: BenchResult) -> str:
    """The checks, then the sweep with cold start and (CUDA) where each run's time goes."""
    verdict = {True: "PASS", False: "FAIL", None: "not run"}
    checks = format_table(("check", "result", "value", "limit", "detail"), [
        (c.name, verdict[c.passed], _number(c.value, ".3g"), _number(c.limit, ".3g"), c.detail)
        for c in result.checks])
    rows = []
    for r in result.rows:
        used, split = r.resources, r.device_times
        h2d, compute, d2h = split.means_ms if split else (None, None, None)
        rows.append((r.label, str(r.batch), f"{r.throughput.samples_per_second:.1f}", f"{r.latency.mean:.3f}",
                     f"{r.latency.p99:.3f}", _number(used.load_seconds if used else None, ".3f"),
                     _number(used.first_run_ms if used else None, ".1f"), _number(h2d, ".3f"), _number(compute, ".3f"),
                     _number(d2h, ".3f")))
    sweep = format_table(("model + provider", "batch", "samples/s", "mean ms", "p99 ms", "session s",
                          "first run ms", "H2D ms", "compute ms", "D2H ms"), rows)
    gpus = ", ".join(g.get("name", "?") for g in result.environment.get("gpus", [])) or "no GPU"
    return f"GPU check on {gpus}\n\n{checks}\n\n{sweep}\n\n" + "\n".join(f"note: {n}" for n in result.notes)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m bench.gpucheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("pack", type=Path, help="directory of graph packs (scripts/gpu-check-models)")
    parser.add_argument("--json", required=True, type=Path, help="where the result goes (a bench result JSON)")
    parser.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)),
                        help="comma-separated batch sizes of the sweep (default: %(default)s)")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds each sweep point runs at least")
    parser.add_argument("--min-iterations", type=int, default=3, help="runs each sweep point times at least")
    parser.add_argument("--cpu-only", action="store_true", help="the CPU half only (checks needing CUDA: not run)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        batches = tuple(int(b) for b in args.batches.split(","))
    except ValueError:
        raise UsageError(f"--batches {args.batches!r} is not a comma-separated list of integers, e.g. 1,8,256") \
            from None
    if not batches or min(batches) < 1:
        raise UsageError(f"--batches {args.batches!r}: every batch size must be >= 1")
    run = RunConfig(warmup=2, min_time=args.min_time, min_iterations=args.min_iterations)
    seeds = sorted({graphpack.read_manifest(g)["seed"] for g in args.pack.glob(f"*{graphpack.GRAPH_SUFFIX}")})
    seed_note = (f"weights: random, regenerated from seed {', '.join(map(str, seeds))} with each real weight's mean "
                 "and spread (bench.graphpack): the numbers hold for speed and CUDA-vs-CPU agreement, not accuracy")
    result = run_check(args.pack, batches, run, args.cpu_only, seed_note)
    write_json_atomic(args.json, result.to_json())
    print(text_report(result))
    failed = [c.name for c in result.checks if c.passed is False]
    if failed:
        raise cli.CheckFailed(f"{len(failed)} check(s) failed: {'; '.join(failed)} (see {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("python -m bench.gpucheck", main))
