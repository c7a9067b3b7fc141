"""Measuring an ONNX model: session + generated inputs + timing loop -> result rows.

This is the library behind `bench throughput|latency|sweep|overhead`; the CLI only parses.

    from bench.measure import InputConfig, measure_onnx
    from bench.runner import RunConfig
    from bench.session import SessionConfig, open_session
    bs = open_session("runs/alexnet/alexnet.onnx", SessionConfig())
    row = measure_onnx(bs, batch=32, inputs=InputConfig(), run=RunConfig())
    row.throughput.samples_per_second, row.latency.p99
"""
from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from bench import inputs as inputs_lib
from bench.results import BenchResult, Row
from bench.runner import Progress, RunConfig, measure
from bench.session import BenchSession
from toolkit import environment
from toolkit.cli import UsageError

DEFAULT_MODEL = Path("runs/alexnet/alexnet.onnx")


def default_model() -> Path:
    if not DEFAULT_MODEL.is_file():
        raise UsageError(f"no model at {DEFAULT_MODEL} (the default: where the main training job exports, "
                         "relative to the current directory): export one first or pass --model PATH")
    return DEFAULT_MODEL


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """How inputs are made: dynamic dims, shapes, seed, how many distinct feeds, int range, real images."""

    dims: tuple[tuple[str, int], ...] = ()
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    seed: int = 0
    distinct: int = 4
    int_range: tuple[int, int] = (1, 100)
    images: str | None = None

    def __post_init__(self):
        if self.distinct < 1:
            raise UsageError(f"--distinct-inputs {self.distinct} must be >= 1")

    def feeds(self, specs: Sequence[inputs_lib.InputSpec], batch: int) -> list[dict]:
        shapes = inputs_lib.resolve_shapes(specs, batch, dict(self.dims), dict(self.shapes))
        images = inputs_lib.read_idx_images(self.images) if self.images else None
        return inputs_lib.make_feeds(specs, shapes, seed=self.seed, distinct=self.distinct,
                                     int_range=self.int_range, images=images)


def measure_onnx(bs: BenchSession, *, batch: int, inputs: InputConfig, run: RunConfig, label: str = "onnxruntime",
                 progress: Progress | None = None) -> Row:
    specs = inputs_lib.input_specs(bs.session)
    pool = inputs.feeds(specs, batch)
    samples = inputs_lib.batch_of(specs, {name: a.shape for name, a in pool[0].items()})
    times = measure(bs.runner(pool), run, progress)
    return Row.from_times(label=label, engine="onnxruntime", model=str(bs.model_path), batch=samples,
                          providers=bs.providers, times_s=times)


def session_environment(bs: BenchSession) -> dict[str, Any]:
    import onnxruntime as ort
    return environment.collect(onnxruntime={
        "version": ort.__version__, "device": ort.get_device(), "providers": list(bs.providers),
        "available_providers": ort.get_available_providers(),
        "intra_op_threads": bs.config.intra_op_threads, "inter_op_threads": bs.config.inter_op_threads,
        "io_binding": bs.io_binding})


def model_record(bs: BenchSession) -> dict[str, Any]:
    return {"path": str(bs.model_path),
            "inputs": [s.to_json() for s in inputs_lib.input_specs(bs.session)],
            "outputs": [o.name for o in bs.session.get_outputs()]}


def onnx_result(kind: str, bs: BenchSession, rows: Sequence[Row], config: dict[str, Any],
                notes: Sequence[str] = ()) -> BenchResult:
    return BenchResult(kind=kind, config=config, environment=session_environment(bs), rows=tuple(rows),
                       model=model_record(bs), requested_providers=bs.config.providers,
                       providers=bs.providers, fallback=bs.fallback, notes=tuple(notes))


def bare_loop_seconds(bs: BenchSession, pool: Sequence[dict], iterations: int) -> float:
    """The reference for the harness-overhead check: nothing but `session.run` in a for loop."""
    run = bs.session.run
    feeds = [pool[i % len(pool)] for i in range(iterations)]
    start = time.perf_counter()
    for feed in feeds:
        run(None, feed)
    return time.perf_counter() - start


def harness_cost_seconds(pool: Sequence[dict], iterations: int = 100_000) -> float:
    """Mean per-iteration cost of the timing loop around a no-op shaped like `BenchSession.runner`'s step.

    A bound that load on the machine cannot blur: what the harness adds to every measured run.
    """
    def noop(names, feed):
        return None
    feeds = itertools.cycle(pool)
    times = measure(lambda: noop(None, next(feeds)), RunConfig(warmup=0, min_time=0, min_iterations=iterations))
    return statistics.fmean(times)


def measure_overhead(bs: BenchSession, *, batch: int, inputs: InputConfig, run: RunConfig, rounds: int,
                     progress: Progress | None = None) -> tuple[list[Row], list[float]]:
    """Harness vs bare loop, interleaved `rounds` times on the same feeds; returns rows and per-round ratios.

    Interleaving, in alternating order (ABBA...), spreads any drift of the machine (turbo, a
    neighbour's job) over both sides; the median ratio resists a round hit by a burst of load.
    """
    if rounds < 1:
        raise UsageError(f"--rounds {rounds} must be >= 1")
    specs = inputs_lib.input_specs(bs.session)
    pool = inputs.feeds(specs, batch)
    samples = inputs_lib.batch_of(specs, {name: a.shape for name, a in pool[0].items()})
    harness_times: list[float] = []
    bare_times: list[float] = []
    ratios = []
    for index in range(rounds):
        if index % 2:
            bare = bare_loop_seconds(bs, pool, len(times))
            times = measure(bs.runner(pool), dataclasses.replace(run, min_time=0, min_iterations=len(times)),
                            progress)
        else:
            times = measure(bs.runner(pool), run, progress)
            bare = bare_loop_seconds(bs, pool, len(times))
        harness_times.extend(times)
        # One bare "iteration" per run: the mean, since the bare loop does not time each run.
        bare_times.extend([bare / len(times)] * len(times))
        ratios.append((samples * len(times) / sum(times)) / (samples * len(times) / bare))
    rows = [Row.from_times(label=label, engine="onnxruntime", model=str(bs.model_path), batch=samples,
                           providers=bs.providers, times_s=times)
            for label, times in (("bench harness", harness_times), ("bare session.run loop", bare_times))]
    rows[0] = dataclasses.replace(rows[0], ratio=statistics.median(ratios))
    rows[1] = dataclasses.replace(rows[1], ratio=1.0)
    return rows, ratios

