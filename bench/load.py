"""`bench load`: the load generator; it issues queries to a model on an engine and records when.

The scenarios, their rules and everything decided from the recorded times are in
bench/scenarios.py (pure); this module only keeps time:
  * single-/multi-stream: one query after another in this thread; intended issue time = the
    previous completion, so the scheduling error is the generator's own gap between queries;
  * server: this thread sleeps until each query's scheduled (Poisson) time and hands it to a
    queue; `concurrency` worker threads take queries off it and run them on one shared session
    (onnxruntime's `run` is thread-safe and releases the GIL while it computes). A query's
    latency runs from its scheduled time, so a late issue or a wait for a free worker counts; the
    timeline tells the system's part (every worker busy) from the generator's (a late issue, a
    free worker slow to take the query), bench/scenarios.py time_split, and a warning names a
    generator that was late in any test or did not issue its Poisson process;
  * offline: `concurrency` workers take batches of samples off a shared counter until all the
    samples are done.
Before a test, `warmup` queries run one at a time (at least one): their fastest latency is the
model's minimum here, which a server latency bound must exceed, and their median sizes the
offline sample count and --find-peak's starting QPS when none is given. Each test records what the
process used while it ran (bench/resources.py), the first warm-up query as its first run.

    bench load --model m.onnx --scenario single-stream
    bench load --model m.onnx --scenario server --qps 200 --latency-bound-ms 20 --concurrency 2
    bench load --model m.onnx --scenario server --find-peak --latency-bound-ms 20
    bench load --model m.onnx --scenario offline --batch 32 --rules mlperf
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import queue
import statistics
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from bench import scenarios, stats
from bench.engines import Engine, Prepared
from bench.inputs import InputConfig
from bench.measure import load_average, unsettled
from bench.resources import clocks, used_since
from bench.results import Resources
from bench.runner import FRESH_STRETCH, Progress, RunConfig, Stage
from bench.scenarios import OFFLINE, SERVER, LoadRow, LoadSettings, PeakCheck, Timeline
from toolkit.cli import UsageError
from toolkit.environment import usable_cpus

CLOCK = time.perf_counter
SLEEP = time.sleep   # the server's dispatcher waits with it until each scheduled time
# The first scheduled query is issued this long after the workers are started, so thread start-up
# does not make it late.
LEAD_S = 0.01
STABILITY_INTERVAL_S = 0.25
MAX_PEAK_POINTS = 24
PILOT_S = 0.5


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Warm-up queries, one at a time: per-query seconds."""

    latencies_s: tuple[float, ...]

    @property
    def min_ms(self) -> float:
        return min(self.latencies_s) * 1000

    @property
    def median_s(self) -> float:
        return statistics.median(self.latencies_s)


def warm_up(run: Callable[[Any], Any], feeds: Sequence[Any], count: int) -> Calibration:
    times = []
    for feed in itertools.islice(itertools.cycle(feeds), max(1, count)):
        start = CLOCK()
        run(feed)
        times.append(CLOCK() - start)
    return Calibration(tuple(times))


def closed_loop(run: Callable[[Any], Any], feeds: Sequence[Any], settings: LoadSettings, samples: int,
                progress: Progress | None = None) -> Timeline:
    """Single-/multi-stream: issue the next query when the previous completes, until the minimum duration
    (of issue times, as LoadGen counts it) and count are met, then on while --until-stable asks. Once
    --until-stable is satisfied, those queries only decided the length (their interval is too narrow,
    bench/runner.py): a fresh stretch of FRESH_STRETCH x as many follows, and only it is returned, its times
    from its own start (cut short by --max-time like the rest)."""
    cycle = itertools.cycle(feeds)
    intended: list[float] = []
    issued: list[float] = []
    done: list[float] = []
    start = last = CLOCK()
    deadline, cap = settings.duration_s, settings.max_time_s
    next_report = 0.0
    fresh = 0        # with --until-stable: where the fresh stretch starts, once stable
    while True:
        issue = CLOCK()
        run(next(cycle))
        end = CLOCK()
        intended.append(last - start)
        issued.append(issue - start)
        done.append(end - start)
        last = end
        if fresh:
            if len(done) >= fresh + math.ceil(FRESH_STRETCH * fresh) or done[-1] >= cap:
                break
        elif len(done) >= settings.queries and issued[-1] >= deadline:
            if settings.until_stable is None or done[-1] >= cap:
                break
            if scenarios.stable((np.asarray(done) - np.asarray(issued)) * 1000, settings.percentile,
                                settings.until_stable):
                fresh = len(done)
            deadline = issued[-1] + STABILITY_INTERVAL_S
        if progress is not None and done[-1] >= next_report:
            progress(len(done), done[-1])
            next_report = done[-1] + 0.1
    origin = done[fresh - 1] if fresh else 0.0
    return Timeline.of(samples, *([t - origin for t in column[fresh:]] for column in (intended, issued, issued, done)))


class _Workers:
    """`concurrency` threads, each running queries on its own prepared feeds; the first error is re-raised."""

    def __init__(self, run: Callable[[Any], Any], prepared: Sequence[Prepared], body):
        self.errors: list[BaseException] = []

        def loop(feeds):
            try:
                body(run, itertools.cycle(feeds))
            except BaseException as exc:  # handed to the main thread, which re-raises it
                self.errors.append(exc)
        self.threads = [threading.Thread(target=loop, args=(p.feeds,), daemon=True) for p in prepared]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        for thread in self.threads:
            thread.join()
        if self.errors and exc_info[0] is None:
            raise self.errors[0]


def serve(run: Callable[[Any], Any], prepared: Sequence[Prepared], settings: LoadSettings, qps: float,
          progress: Progress | None = None) -> tuple[Timeline, bool, int]:
    """Server: Poisson arrivals at `qps` into a queue served by the workers; (timeline, overloaded, scheduled)."""
    schedule = scenarios.poisson_schedule(qps, settings.duration_s, settings.queries, settings.seed)
    n = len(schedule)
    issued, started, done = np.zeros(n), np.zeros(n), np.zeros(n)
    tasks: queue.SimpleQueue = queue.SimpleQueue()
    finished: list[int] = []   # list.append is atomic: the dispatcher reads len() for the outstanding count
    limit = scenarios.max_outstanding(qps, settings.bound_ms, len(prepared))
    overloaded, count = False, n

    def work(run_one, cycle):
        while (index := tasks.get()) is not None:
            started[index] = CLOCK()
            run_one(next(cycle))
            done[index] = CLOCK()
            finished.append(index)

    with _Workers(run, prepared, work) as workers:
        start = CLOCK() + LEAD_S
        try:
            for index, at in enumerate(schedule):
                now = CLOCK()
                if now < start + at:
                    SLEEP(start + at - now)
                    now = CLOCK()
                issued[index] = now
                tasks.put(index)
                if index + 1 - len(finished) > limit or workers.errors:
                    overloaded, count = not workers.errors, index + 1
                    break
                if progress is not None and index % 64 == 0:
                    progress(index + 1, now - start)
        finally:
            for _ in workers.threads:
                tasks.put(None)
    timeline = Timeline.of(_samples(prepared), schedule[:count], issued[:count] - start,
                           started[:count] - start, done[:count] - start)
    return timeline, overloaded, n


def offline(run: Callable[[Any], Any], prepared: Sequence[Prepared], total_samples: int,
            progress: Progress | None = None, stop_after_s: float = math.inf) -> Timeline:
    """Offline: all samples there at the start, taken in batches by the workers until none is left
    (or, for the pilot that sizes a run, until `stop_after_s` has passed: the batches begun by then)."""
    batch = _samples(prepared)
    batches = total_samples // batch
    started, done = np.zeros(batches), np.zeros(batches)
    counter = itertools.count()  # next() on it is atomic: each batch goes to exactly one worker

    def work(run_one, cycle):
        while (index := next(counter)) < batches and CLOCK() < deadline:
            started[index] = CLOCK()
            run_one(next(cycle))
            done[index] = CLOCK()
            if progress is not None and index % 16 == 0:
                progress(index, done[index] - start)

    start = CLOCK()
    deadline = start + stop_after_s
    with _Workers(run, prepared, work):
        pass
    ran = done > 0
    zeros = np.zeros(int(ran.sum()))
    return Timeline.of(batch, zeros, zeros, started[ran] - start, done[ran] - start)


def offline_rate(run: Callable[[Any], Any], prepared: Sequence[Prepared], calibration: Calibration) -> float:
    """Samples/s the offline workers really reach, from a PILOT_S pilot: the warm-up's one-query-at-a-time
    rate leaves out the harness and the threads' contention, which small models feel most."""
    batch = _samples(prepared)
    guess = batch * len(prepared) / calibration.median_s   # an upper bound: the pilot stops on time
    pilot = offline(run, prepared, max(batch * 2 * len(prepared), math.ceil(guess * PILOT_S)), stop_after_s=PILOT_S)
    return len(pilot) * batch / max(pilot.done)


def _samples(prepared: Sequence[Prepared]) -> int:
    return prepared[0].samples


@dataclasses.dataclass(frozen=True)
class LoadOutcome:
    rows: tuple[LoadRow, ...]
    calibration: Calibration
    notes: tuple[str, ...]
    warnings: tuple[str, ...]
    peak_check: PeakCheck | None = None
    loadgen: tuple[Any, ...] = ()       # bench/loadgen.py: LoadGen's own verdict of each row (--engine loadgen)


@dataclasses.dataclass(frozen=True)
class Started:
    """What every load test starts from, whichever generator runs it: the settings resolved against the
    model, each worker's feeds, the warm-up, and the callback that records a test's resources."""

    settings: LoadSettings
    prepared: tuple[Prepared, ...]
    run: Callable[[Any], Any]
    calibration: Calibration
    notes: list[str]
    used: Callable[[tuple[float, float]], Resources]


def begin(engine: Engine, settings: LoadSettings, inputs: InputConfig, *, warmup: int, find_peak: bool,
          progress: Stage) -> Started:
    """Check the settings, prepare each worker's feeds and warm up; UsageError where the model rules them out."""
    scenario = settings.scenario
    if find_peak and scenario != SERVER:
        raise UsageError(f"--find-peak searches the server scenario's QPS: use --scenario server, not {scenario}")
    if scenario == SERVER and settings.qps is None and not find_peak:
        raise UsageError("--scenario server needs --qps N (queries per second), or --find-peak to search for it")
    # Each worker has feeds of its own: IO bindings (CUDA) must not be shared by runs in flight together.
    prepared = tuple(engine.prepare(settings.batch, dataclasses.replace(inputs, seed=inputs.seed + worker))
                     for worker in range(settings.concurrency))
    batch = prepared[0].samples
    settings = dataclasses.replace(settings, batch=batch)
    run = engine.runner()
    progress(f"load: {engine.name} {scenario} batch {batch}: warm-up, {max(1, warmup)} one at a time", 0, 1)
    calibration = warm_up(run, prepared[0].feeds, warmup)
    notes = [f"warm-up: {len(calibration.latencies_s)} queries one at a time, fastest {calibration.min_ms:.3f} ms, "
             f"median {calibration.median_s * 1000:.3f} ms"]
    if scenario == SERVER and settings.bound_ms < calibration.min_ms:
        raise UsageError(f"--latency-bound-ms {settings.bound_ms:g} is below this model's minimum latency here "
                         f"({calibration.min_ms:.3f} ms, the fastest of {len(calibration.latencies_s)} warm-up "
                         f"queries of {batch} sample(s)): raise the bound above it")
    # Each test's resources: its own CPU and wall time; its first run is the first warm-up query.
    used = functools.partial(used_since, first_run_ms=calibration.latencies_s[0] * 1000,
                             load_seconds=engine.load_seconds, providers=engine.providers)
    return Started(settings, prepared, run, calibration, notes, used)


def run_load(engine: Engine, settings: LoadSettings, inputs: InputConfig, *, warmup: int, find_peak: bool,
             progress: Stage) -> LoadOutcome:
    """Warm up, check the settings against the model, run the test (or the peak search); rows and notes.

    `progress(description, index, total, minimums)` announces each stage and returns the callback of
    its queries (bench.report.MeasureProgress.step): the warm-up, offline's pilot, then the test,
    whose bar fills to its minimum count and duration; each point of a peak search refills it.
    """
    start = begin(engine, settings, inputs, warmup=warmup, find_peak=find_peak, progress=progress)
    settings, prepared, run, calibration, notes, used = (start.settings, start.prepared, start.run,
                                                         start.calibration, start.notes, start.used)
    scenario, batch, check = settings.scenario, settings.batch, None
    name = f"load: {engine.name} {scenario} batch {batch}"   # no QPS yet: a peak search has none
    if scenario == SERVER:
        rows, check = _server_rows(engine.name, run, prepared, settings, calibration, find_peak, progress, notes,
                                   used)
    elif scenario == OFFLINE:
        if settings.expected_qps is None:
            progress(f"{name}: a {PILOT_S:g} s pilot to size the run", 0, 1)
        expected = settings.expected_qps or offline_rate(run, prepared, calibration)
        total = scenarios.offline_sample_count(settings, expected)
        notes.append(f"offline: {total} samples in batches of {batch} ({expected:,.1f} samples/s expected, "
                     f"{'from --expected-qps' if settings.expected_qps else f'from a {PILOT_S:g} s pilot'}, "
                     "x1.1 as LoadGen)")
        # Its callback counts batches: the run ends when all of them are done, whatever the time.
        step = progress(f"load: {engine.name} {settings.label()}: {total:,} samples", 0, 1,
                        RunConfig(warmup=0, min_time=0, min_iterations=total // batch))
        begun = clocks()
        timeline = offline(run, prepared, total, step)
        rows = [LoadRow.from_timeline(settings, timeline, resources=used(begun))]
    else:
        on = ("" if settings.until_stable is None else f", then until p{settings.percentile * 100:g} stable within "
              f"+-{settings.until_stable:g}% (at most {settings.max_time_s:g} s)")
        step = progress(f"load: {engine.name} {settings.label()}: {settings.queries:,} queries and "
                        f"{settings.duration_s:g} s at least{on}", 0, 1, _minimums(settings))
        begun = clocks()
        timeline = closed_loop(run, prepared[0].feeds, settings, batch, step)
        rows = [LoadRow.from_timeline(settings, timeline, resources=used(begun))]
    return LoadOutcome(rows=tuple(rows), calibration=calibration, notes=tuple(notes),
                       warnings=tuple(warnings_of(rows)), peak_check=check)


def _minimums(settings: LoadSettings) -> RunConfig:
    """What a test's progress fills to: LoadGen's minimum query count and duration, both."""
    return RunConfig(warmup=0, min_time=settings.duration_s, min_iterations=settings.queries)


def _server_rows(engine_name: str, run, prepared, settings: LoadSettings, calibration: Calibration,
                 find_peak: bool, progress: Stage, notes: list[str],
                 used: Callable[[tuple[float, float]], Resources]) -> tuple[list[LoadRow], PeakCheck | None]:
    def point(qps: float, description: str) -> LoadRow:
        at = settings.at_qps(qps)
        step = progress(f"load: {engine_name} {at.label()}{description}", 0, 1, _minimums(at))
        start = clocks()
        timeline, overloaded, scheduled = serve(run, prepared, at, qps, step)
        return LoadRow.from_timeline(at, timeline, overloaded=overloaded, scheduled=scheduled, resources=used(start))

    if not find_peak:
        return [point(settings.target_qps, "")], None
    return search_peak(point, lambda row: row.passes_bound, settings, calibration, notes)


def search_peak(point: Callable[[float, str], LoadRow], passes: Callable[[LoadRow], bool], settings: LoadSettings,
                calibration: Calibration, notes: list[str]) -> tuple[list[LoadRow], PeakCheck | None]:
    """--find-peak: LoadGen's search (bench/scenarios.py next_peak_qps), `point(qps, description)` running one
    test and `passes(row)` judging it, then the highest passing QPS re-checked (`recheck_peak`)."""
    # Half of what one worker can do one query at a time: a rate most systems sustain.
    start = settings.qps or round(0.5 / calibration.median_s, 1)
    tolerance, floor = scenarios.PEAK_TOLERANCE[settings.rules], scenarios.peak_floor(settings)
    rows: list[LoadRow] = []
    while len(rows) < MAX_PEAK_POINTS:
        if rows and not any(passes(r) for r in rows) and scenarios.bound_unreachable(rows[-1]):
            notes.append(f"find-peak: stopped: at {rows[-1].settings.qps:g} qps the compute time alone was over the "
                         f"bound at p99 ({rows[-1].compute.p99:.3f} ms), so no lower QPS can meet it")
            break
        qps = scenarios.next_peak_qps([(r.settings.target_qps, passes(r)) for r in rows], start, tolerance, floor)
        if qps is None:
            break
        rows.append(point(qps, f" (find-peak point {len(rows) + 1}, at most {MAX_PEAK_POINTS})"))
    notes.append(f"find-peak: {len(rows)} points from {start:g} qps (LoadGen's search: double until a point "
                 f"fails, then bisect; done at {scenarios.PEAK_DECIMALS} decimal or within {tolerance:.0%}; a "
                 f"failing start halved down to {floor:g} qps at most)")
    if not any(passes(r) for r in rows):
        notes.append("find-peak: no QPS tried met the latency bound")
        return rows, None
    return recheck_peak(point, passes, rows, notes)


def recheck_peak(point: Callable[[float, str], LoadRow], passes: Callable[[LoadRow], bool], rows: list[LoadRow],
                 notes: list[str]) -> tuple[list[LoadRow], PeakCheck]:
    """A search's best point is the best of many short tests, which flatters it: the highest passing QPS is
    tested again, and while that fails the next lower one that passed (at most PEAK_RECHECKS tests). The
    peak (the row marked `peak`) is the highest QPS that passed twice; none if every re-check failed."""
    points = [(r.settings.target_qps, passes(r)) for r in rows]
    passing = sorted({q for q, ok in points if ok}, reverse=True)
    above = [q for q, ok in points if not ok and q > passing[0]]
    rechecks: list[tuple[float, bool]] = []
    for qps in passing[:scenarios.PEAK_RECHECKS]:
        row = point(qps, f" (find-peak re-check {len(rechecks) + 1}, at most {scenarios.PEAK_RECHECKS})")
        rechecks.append((qps, passes(row)))
        rows.append(dataclasses.replace(row, peak=True) if passes(row) else row)
        if passes(row):
            break
    check = scenarios.PeakCheck(found=passing[0], upper=min(above) if above else None, rechecks=tuple(rechecks))
    notes.append(check.describe())
    return rows, check


def warnings_of(rows: Sequence[LoadRow]) -> list[str]:
    """Unstable compute times (trtexec's warning) for the rows that sum the test up (a search's peak, not
    each point on the way); a load generator that could not keep its schedule or its Poisson process, for
    every row: a search's every point rests on its generator."""
    found = [w for row in rows for w in (generator_warning(row), arrivals_warning(row)) if w]
    load, cpus = load_average(), usable_cpus()
    for row in scenarios.headline_rows(rows):
        compute = row.timeline.column("done") - row.timeline.column("started")
        warning = stats.series_variation_warning(f"{row.label()} compute", compute, load_average=load, cpus=cpus)
        if warning:
            found.append(warning)
        settings = row.settings
        if settings.until_stable is not None and not scenarios.stable(row.latencies_ms(), settings.percentile,
                                                                      settings.until_stable):
            found.append(unsettled(row.label(), row.metric_ci, row.metric_value, settings.until_stable,
                                   settings.max_time_s))
    return found


def generator_warning(row: LoadRow) -> str | None:
    """The load generator's own delay per query (issued late, then handed to a worker: bench/scenarios.py
    time_split) over a tenth of what it distorts: the latency bound (server, at p99), or else the model's
    compute time per query (on average: a generator slower than that understates what the system does)."""
    delay_ms = scenarios.generator_delay_ms(row.timeline, row.settings.concurrency)
    what = (f"issued late by p99 {row.schedule_error.p99:.3f} ms, handed to a worker p99 {row.handoff.p99:.3f} ms "
            "after one was free")
    if row.settings.scenario == SERVER:
        delay = scenarios.rank_percentile(delay_ms, 0.99)
        if delay <= 0.1 * row.settings.bound_ms:
            return None
        return (f"{row.label()}: the load generator's own delay was p99 {delay:.3f} ms ({what}), over a tenth of "
                f"the {row.settings.bound_ms:g} ms bound: it inflates the latencies; fix: an idle machine, fewer "
                "--concurrency workers than CPUs")
    compute = row.compute.p50
    if float(np.mean(delay_ms)) <= 0.1 * compute:
        return None
    return (f"{row.label()}: the load generator's own time per query was {float(np.mean(delay_ms)):.3f} ms on "
            f"average ({what}), over a tenth of the model's {compute:.3f} ms (median compute): the figures "
            "understate the system; fix: an idle machine, larger --batch queries")


def arrivals_warning(row: LoadRow) -> str | None:
    """A server test whose issue times were not the Poisson process it intended (scenarios.ArrivalCheck)."""
    if row.arrivals is None or row.arrivals.passed is not False:
        return None
    return (f"{row.label()}: the load generator did not issue the intended Poisson process "
            f"({row.arrivals.describe()}): its latencies answer another load; fix: an idle machine, fewer "
            "--concurrency workers than CPUs, a lower --qps")
