"""Measuring an engine: prepared inputs + timing loop -> result rows; the harness-overhead check.

This is the library behind `bench throughput|latency|sweep|overhead`; the CLI only parses.

    from bench.engines import OnnxEngine
    from bench.inputs import InputConfig
    from bench.measure import measure_engine, measure_overhead
    from bench.runner import RunConfig
    from bench.session import SessionConfig
    engine = OnnxEngine.open("runs/alexnet/alexnet.onnx", SessionConfig())
    row = measure_engine(engine, batch=32, inputs=InputConfig(), run=RunConfig())
    row.throughput.samples_per_second, row.latency.p99
    rows, ratios = measure_overhead(engine, batch=1, inputs=InputConfig(), run=RunConfig(), rounds=5)
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from bench import stats
from bench.engines import Engine, EngineRecord, cycling_step
from bench.inputs import InputConfig
from bench.resources import measure_with_resources
from bench.results import BenchResult, Row
from bench.runner import Progress, RunConfig, measure
from toolkit import environment
from toolkit.cli import UsageError

DEFAULT_MODEL = Path("runs/alexnet/alexnet.onnx")
HARNESS_LABEL = "bench harness"
BARE_LABEL = "bare session.run loop"


def default_model() -> Path:
    if not DEFAULT_MODEL.is_file():
        raise UsageError(f"no model at {DEFAULT_MODEL} (the default: where the main training job exports, "
                         "relative to the current directory): export one first or pass --model PATH")
    return DEFAULT_MODEL


def measure_engine(engine: Engine, *, batch: int, inputs: InputConfig, run: RunConfig, label: str | None = None,
                   progress: Progress | None = None) -> Row:
    prepared = engine.prepare(batch, inputs)
    times, used = measure_with_resources(engine.step(prepared), run, load_seconds=engine.load_seconds,
                                         providers=engine.providers, progress=progress)
    return engine.record().row(label or engine.name, prepared.samples, times, used)


def load_average() -> float | None:
    """The 1-minute load average: how many processes wanted the CPUs while the benchmark ran."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def measured_environment(**runtimes: dict[str, Any]) -> dict[str, Any]:
    """The environment record, with the machine's load at the end of the measurement."""
    return environment.collect(**runtimes, load_average=load_average())


def variation_warnings(rows: Sequence[Row], run: RunConfig | None = None) -> list[str]:
    """An instability warning (bench/stats.py) for each row whose run times vary too much, and for each
    row that --until-stable could not settle before --max-time."""
    load, cpus = load_average(), environment.usable_cpus()
    found = [stats.series_variation_warning(f"{r.label} batch {r.batch}", r.times_ms, load_average=load, cpus=cpus)
             for r in rows]
    if run is not None and run.until_stable is not None:
        found.extend(unsettled(f"{r.label} batch {r.batch}", r.intervals.samples_per_second,
                               r.throughput.samples_per_second, run.until_stable, run.max_time)
                     for r in rows if not run.stable([t / 1000 for t in r.times_ms]))
    return [w for w in found if w]


def unsettled(what: str, interval: stats.Interval | None, estimate: float, percent: float, max_time: float) -> str:
    """The warning for a measurement --until-stable gave up on."""
    reached = "unbounded" if interval is None else f"+-{interval.relative_half_width(estimate):.1%}"
    return (f"{what}: not stable within +-{percent:g}% after --max-time {max_time:g} s (the 95% interval is "
            f"{reached}): the machine's load kept changing; fix: an idle machine, or a longer --max-time")


def engine_result(kind: str, main: EngineRecord, rows: Sequence[Row], config: dict[str, Any],
                  notes: Sequence[str] = (), others: Sequence[EngineRecord] = (),
                  comparisons: Sequence[stats.Comparison] = (), run: RunConfig | None = None) -> BenchResult:
    """A result whose model, providers and fallback are `main`'s; each runtime's record is in the environment.
    `run`: the measurement's settings, for --until-stable's warning."""
    runtimes: dict[str, dict[str, Any]] = {}
    for record in (main, *others):
        runtimes.setdefault(record.engine, record.runtime)
    return BenchResult(kind=kind, config=config, environment=measured_environment(**runtimes), rows=tuple(rows),
                       model=main.model_json(), requested_providers=main.requested_providers,
                       providers=main.providers, fallback=main.fallback, notes=tuple(notes),
                       comparisons=tuple(comparisons), warnings=tuple(variation_warnings(rows, run)))


def bare_loop_times(run: Callable[[Any], Any], feeds: Sequence[Any], iterations: int) -> list[float]:
    """The reference for the harness-overhead check: the engine's run call in a plain for loop.

    Its per-run times are real, and it stays as bare as a loop that reports them can be: one
    clock read and one list append per run, the differences taken after the loop. The harness
    adds to that its feed cycling, a closure call and its stop checks.
    """
    order = [feeds[i % len(feeds)] for i in range(iterations)]
    clock = time.perf_counter
    stamps = [clock()]
    stamp = stamps.append
    for feed in order:
        run(feed)
        stamp(clock())
    return [after - before for before, after in zip(stamps, stamps[1:])]


def harness_cost_seconds(iterations: int = 100_000) -> float:
    """Mean per-iteration cost of the timing loop around a no-op run, stepped as the engines step.

    A bound that load on the machine cannot blur: what the harness adds to every measured run.
    """
    times = measure(cycling_step(lambda feed: None, [{}]),
                    RunConfig(warmup=0, min_time=0, min_iterations=iterations))
    return statistics.fmean(times)


def measure_overhead(engine: Engine, *, batch: int, inputs: InputConfig, run: RunConfig, rounds: int,
                     progress: Progress | None = None) -> tuple[list[Row], list[float]]:
    """Harness vs bare loop, interleaved `rounds` times on the same feeds; returns rows and per-round ratios.

    Interleaving, in alternating order (ABBA...), spreads any drift of the machine (turbo, a
    neighbour's job) over both sides; the median ratio resists a round hit by a burst of load.
    Each round's ratio is the bare loop's median run over the harness's median run, over the same
    number of runs: on a shared machine a neighbour's preemption (milliseconds) lands on a few runs
    of microseconds and moves the sums (throughput) far more than what the harness itself adds;
    the medians see the harness's cost and not the neighbour. The throughput ratio is in the notes.
    """
    if rounds < 1:
        raise UsageError(f"--rounds {rounds} must be >= 1")
    prepared = engine.prepare(batch, inputs)
    bare_run = engine.runner()
    harness_times: list[float] = []
    bare_times: list[float] = []
    ratios = []
    iterations = 0
    for index in range(rounds):
        step = engine.step(prepared)
        if index % 2:  # bare loop first, as many runs as the harness made in the round before
            bare = bare_loop_times(bare_run, prepared.feeds, iterations)
            times = measure(step, dataclasses.replace(run, min_time=0, min_iterations=iterations), progress)
        else:
            times = measure(step, run, progress)
            iterations = len(times)
            bare = bare_loop_times(bare_run, prepared.feeds, iterations)
        harness_times.extend(times)
        bare_times.extend(bare)
        ratios.append(statistics.median(bare) / statistics.median(times))
    record = engine.record()
    rows = [dataclasses.replace(record.row(HARNESS_LABEL, prepared.samples, harness_times),
                                ratio=statistics.median(ratios)),
            dataclasses.replace(record.row(BARE_LABEL, prepared.samples, bare_times), ratio=1.0)]
    return rows, ratios


def overhead_notes(rows: Sequence[Row], ratios: Sequence[float]) -> list[str]:
    cost = harness_cost_seconds()
    harness, bare = rows
    return [f"harness cost per iteration (no-op step): {cost * 1e6:.3f} us = "
            f"{cost * 1000 / bare.latency.mean:.4%} of the bare loop's mean run",
            f"ratio: bare loop's median run / harness's median run, {harness.ratio:.4f}, median of {len(ratios)} "
            f"interleaved rounds ({', '.join(f'{r:.3f}' for r in ratios)}); medians are blind to the preemptions "
            "that inflate the sums on a busy machine",
            f"harness throughput / bare loop throughput (every preemption counted): "
            f"{harness.throughput.samples_per_second / bare.throughput.samples_per_second:.4f}",
            f"median run: harness {harness.latency.p50 * 1000:.2f} us, bare loop {bare.latency.p50 * 1000:.2f} us",
            "the bare loop reads the clock once per run: its per-run times are measured, not its mean"]
