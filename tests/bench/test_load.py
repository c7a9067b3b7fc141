"""The load generator on real ONNX models (the helper models: several inputs and dtypes, a fixed batch,
raw uint8 images): each scenario's timeline keeps its order of events, and the search keeps its points.

Runs last a fraction of a second; nothing here asserts how fast anything is.
"""
import dataclasses

import numpy as np
import pytest

from bench import load, scenarios
from bench.engines import OnnxEngine, Prepared
from bench.inputs import InputConfig
from bench.runner import RunConfig
from bench.scenarios import MULTI_STREAM, OFFLINE, SERVER, SINGLE_STREAM, LoadRow, LoadSettings, Timeline
from bench.session import SessionConfig
from tests.bench.test_scenarios import loadgen_schedule
from toolkit.cli import UsageError

MULTI_INPUTS = InputConfig(dims=(("seq", 3),), shapes=(("scale", (1,)),))
SHORT = dict(min_duration_s=0.2)


def engine(path) -> OnnxEngine:
    return OnnxEngine.open(path, SessionConfig(intra_op_threads=1))


def run(model, settings, inputs=InputConfig(), find_peak=False, warmup=2, progress=lambda *step: None):
    return load.run_load(engine(model), settings, inputs, warmup=warmup, find_peak=find_peak, progress=progress)


def test_single_stream_issues_each_query_when_the_previous_completes(helper_models):
    outcome = run(helper_models["multi"], LoadSettings(SINGLE_STREAM, batch=1, min_queries=70, **SHORT), MULTI_INPUTS)
    (row,) = outcome.rows
    timeline = row.timeline
    intended, issued, done = (timeline.column(c) for c in ("intended", "issued", "done"))
    assert np.array_equal(intended[1:], done[:-1]) and intended[0] == 0.0
    assert np.all(issued >= intended) and np.all(done >= issued) and timeline.started == timeline.issued
    # The loop ends once both minimums hold: LoadGen's early stopping then needs no more than 64 queries.
    assert row.queries >= 70 and row.duration_s >= 0.2 and row.valid, row.reasons
    assert outcome.notes[0].startswith("warm-up: 2 queries one at a time")


def test_multi_stream_takes_the_models_fixed_batch(helper_models):
    (row,) = run(helper_models["fixed"], LoadSettings(MULTI_STREAM, batch=2, min_duration_s=0.05)).rows
    assert row.timeline.samples == 2 and row.samples == 2 * row.queries and row.queries >= 662
    assert row.metric == "p99 latency ms" and row.early_stopping.met


def test_server_issues_on_the_poisson_schedule_from_a_queue(helper_models):
    settings = LoadSettings(SERVER, qps=200.0, latency_bound_ms=1000.0, concurrency=2, seed=5, **SHORT)
    (row,) = run(helper_models["image"], settings).rows
    timeline = row.timeline
    intended, issued, started, done = (timeline.column(c) for c in ("intended", "issued", "started", "done"))
    assert intended == pytest.approx(loadgen_schedule(200.0, 0.2, 100, seed=5))
    assert np.all(issued >= intended) and np.all(started >= issued) and np.all(done >= started)
    assert not row.overloaded and row.scheduled == row.queries == len(intended)
    # Late, queueing, hand-off and compute make up each latency (their means, the latency's mean).
    assert min(row.schedule_error.p50, row.queueing.p50, row.handoff.p50) >= 0
    assert row.latency.mean == pytest.approx(row.schedule_error.mean + row.queueing.mean + row.handoff.mean
                                             + row.compute.mean)
    assert row.arrivals.queries == row.queries and row.arrivals.qps == 200.0
    assert any(r.startswith("early stopping") for r in row.reasons)  # ~100 queries: LoadGen needs 459


class FakeClock:
    """load.CLOCK and load.SLEEP on a clock that only the dispatcher's waits advance: a query whose issue time
    is not its scheduled one was issued late by the generator's logic, not by the machine."""

    def __init__(self, monkeypatch):
        self.now = 100.0
        monkeypatch.setattr(load, "CLOCK", lambda: self.now)
        monkeypatch.setattr(load, "SLEEP", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_dispatcher_issues_each_query_at_its_scheduled_time(monkeypatch):
    """On a clock only its waits advance, every query is issued at its scheduled time, in order, and passes the
    arrival check; a dispatcher that issued late (all at the end, say) fails here."""
    FakeClock(monkeypatch)
    settings = LoadSettings(SERVER, qps=200.0, latency_bound_ms=1000.0, concurrency=2, seed=7, min_duration_s=2.0)
    prepared = [Prepared(samples=1, feeds=("feed",))] * 2
    timeline, overloaded, scheduled = load.serve(lambda feed: None, prepared, settings, 200.0)
    expected = loadgen_schedule(200.0, 2.0, 100, seed=7)
    assert not overloaded and scheduled == len(timeline) == len(expected)
    assert timeline.intended == pytest.approx(expected, abs=1e-9)
    assert timeline.issued == pytest.approx(expected, abs=1e-9)  # the lateness is 0 to the nanosecond
    row = LoadRow.from_timeline(settings, timeline, scheduled=scheduled)
    assert row.schedule_error.max == pytest.approx(0.0, abs=1e-6) and row.arrivals.passed


def late_row(scenario: str, qps: float | None = None, late_s: float = 0.0, handoff_s: float = 0.0) -> LoadRow:
    """100 queries of 1 ms compute, 10 ms apart (LoadGen's schedule at `qps` for server), issued `late_s` after
    their intended time and taken by the worker `handoff_s` after that."""
    intended = np.asarray(loadgen_schedule(qps, 0.0, 100, seed=0)) if qps else np.arange(100) * 0.010
    issued = intended + late_s
    started = issued + handoff_s
    settings = LoadSettings(scenario, qps=qps, latency_bound_ms=20.0 if qps else None, min_duration_s=0.0,
                            min_queries=1)
    return LoadRow.from_timeline(settings, Timeline.of(1, intended, issued, started, started + 0.001))


def test_a_late_generator_is_warned_about_in_every_row_and_scenario():
    """Every point of a search and every scenario: a search's points each rest on the generator's timing."""
    on_time = late_row(SERVER, qps=100.0)
    search = [dataclasses.replace(on_time, peak=True), late_row(SERVER, qps=200.0, late_s=0.003),
              late_row(SERVER, qps=300.0, handoff_s=0.003)]
    found = load.warnings_of(search)
    assert [w.split(":")[0] for w in found if "load generator's own delay" in w] == [
        "server batch 1 @ 200 qps", "server batch 1 @ 300 qps"]
    assert "p99 3.000 ms (issued late by p99 3.000 ms, handed to a worker p99 0.000 ms after one was free), over a " \
           "tenth of the 20 ms bound" in found[0]
    (single,) = load.warnings_of([late_row(SINGLE_STREAM, late_s=0.0002)])
    assert single.startswith("single-stream batch 1: the load generator's own time per query was 0.200 ms on "
                             "average") and "over a tenth of the model's 1.000 ms (median compute)" in single
    assert load.warnings_of([late_row(SINGLE_STREAM, late_s=0.00005), on_time]) == []


def test_a_generator_off_the_poisson_process_is_warned_about():
    rows = [late_row(SERVER, qps=100.0)]
    bunched = dataclasses.replace(rows[0], arrivals=scenarios.ArrivalCheck.of(np.full(100, 1.0), 100.0))
    (found,) = load.warnings_of([bunched, *rows])
    assert found.startswith("server batch 1 @ 100 qps: the load generator did not issue the intended Poisson process "
                            "(issued at inf qps for 100")




def test_an_overloaded_server_stops_issuing(helper_models):
    settings = LoadSettings(SERVER, batch=2, qps=1e6, latency_bound_ms=1.0, **SHORT)
    (row,) = run(helper_models["fixed"], settings).rows
    limit = scenarios.max_outstanding(1e6, 1.0, 1)
    assert row.overloaded and limit < row.queries < row.scheduled
    assert row.reasons[0].startswith(f"overloaded: stopped issuing after {row.queries} of {row.scheduled}")


def test_offline_sizes_its_samples_from_a_pilot_and_runs_them_all(helper_models):
    outcome = run(helper_models["multi"], LoadSettings(OFFLINE, batch=4, concurrency=2, **SHORT), MULTI_INPUTS)
    (row,) = outcome.rows
    assert row.samples % 4 == 0 and row.samples >= 100
    assert f"offline: {row.samples} samples in batches of 4" in outcome.notes[1] and "0.5 s pilot" in outcome.notes[1]
    assert np.all(row.timeline.column("intended") == 0) and row.metric_value == pytest.approx(
        row.samples / max(row.timeline.done))


def test_offline_with_expected_qps_runs_that_many(helper_models):
    settings = LoadSettings(OFFLINE, batch=2, expected_qps=100.0, min_duration_s=1.0, min_queries=1)
    (row,) = run(helper_models["fixed"], settings).rows
    assert row.samples == 110  # 1.1 x 100 samples/s x 1 s


def test_find_peak_keeps_every_point_and_marks_the_highest_passing(helper_models, monkeypatch):
    monkeypatch.setattr(load, "MAX_PEAK_POINTS", 4)
    settings = LoadSettings(SERVER, batch=2, qps=20.0, latency_bound_ms=500.0, min_duration_s=0.1, min_queries=5)
    outcome = run(helper_models["fixed"], settings, find_peak=True)
    search, rechecks = outcome.rows[:4], outcome.rows[4:]
    points = [(r.settings.qps, r.passes_bound) for r in search]
    assert len(points) == 4 and points[0][0] == 20.0
    # Four points: the start passed (halved, it would be below the floor, 5 queries in 4 x 0.1 s: the search would
    # end), so LoadGen's search doubled it. The rest, by hand: test_find_peak_tries_loadgens_points_on_a_system_...
    assert points[0][1] and points[1][0] == 40.0
    passing = [q for q, ok in points if ok]
    check = outcome.peak_check
    assert (check is None) == (not passing) and not any(r.peak for r in search)
    if passing:  # then the re-checks, from the highest passing QPS down; the peak is the one that passed again
        assert check.found == max(passing) and [(r.settings.qps, r.passes_bound) for r in rechecks] == list(
            check.rechecks)
        assert [r.settings.qps for r in rechecks if r.peak] == ([check.confirmed] if check.confirmed else [])
    assert any(n.startswith("find-peak: 4 points from 20 qps") for n in outcome.notes)


def test_find_peak_tries_loadgens_points_on_a_system_of_known_capacity(monkeypatch):
    """A stand-in server that meets the bound up to 50 qps (latencies 1 ms, above it 2x the bound): from 20 qps
    the search doubles to 80, then bisects: 60, 50, 55, 52.5, where [50, 52.5] is within 5%; 50 is re-checked."""
    def serve(run, prepared, settings, qps, progress=None):
        intended = np.arange(10) / qps
        latency = 0.001 if qps <= 50 else 2 * settings.bound_ms / 1000
        return Timeline.of(1, intended, intended, intended, intended + latency), False, 10
    monkeypatch.setattr(load, "serve", serve)
    settings = LoadSettings(SERVER, qps=20.0, latency_bound_ms=10.0, min_duration_s=0.1, min_queries=5)
    notes: list[str] = []
    rows, check = load._server_rows("stand-in", None, [Prepared(1, ("feed",))], settings, load.Calibration((0.001,)),
                                    True, lambda *step: None, notes, lambda start: None)
    assert [(r.settings.qps, r.passes_bound) for r in rows] == [
        (20.0, True), (40.0, True), (80.0, False), (60.0, False), (50.0, True), (55.0, False), (52.5, False),
        (50.0, True)]
    assert [r.settings.qps for r in rows if r.peak] == [50.0] and rows[-1].peak and check.confirmed == 50.0


@pytest.mark.parametrize("settings, find_peak, message", [
    (LoadSettings(SERVER, batch=2, qps=10.0, latency_bound_ms=1e-6), False, "below this model's minimum latency here"),
    (LoadSettings(SERVER), False, "--scenario server needs --qps"),
    (LoadSettings(OFFLINE), True, "--find-peak searches the server scenario's QPS"),
])
def test_bad_load_settings_are_refused(helper_models, settings, find_peak, message):
    with pytest.raises(UsageError, match=message):
        run(helper_models["fixed"], settings, find_peak=find_peak)


def test_until_stable_runs_on_to_the_cap_and_stops_when_stable(helper_models, monkeypatch):
    settings = LoadSettings(SINGLE_STREAM, batch=2, min_duration_s=0.05, min_queries=64, until_stable=1.0,
                            max_time_s=0.3)
    monkeypatch.setattr(scenarios, "stable", lambda *args: False)
    steps, progress = recorded_progress()
    outcome = run(helper_models["fixed"], settings, progress=progress)
    assert steps[-1][0].endswith("64 queries and 0.05 s at least, then until p90 stable within +-1% (at most 0.3 s)")
    (never,) = outcome.rows
    assert never.timeline.done[-1] >= 0.3
    assert any(w.startswith("single-stream batch 2: not stable within +-1% after --max-time 0.3 s")
               for w in outcome.warnings)
    monkeypatch.setattr(scenarios, "stable", lambda *args: True)
    (at_once,) = run(helper_models["fixed"], settings).rows
    # Stable as soon as the minimums held (64 queries and 0.05 s); those queries only decided the length: the
    # result is a fresh stretch of 1.5x as many, its times from its own start.
    assert at_once.queries >= 96 and at_once.timeline.intended[0] == 0.0 and at_once.timeline.issued[-1] >= 0.05


def test_until_stable_returns_a_fresh_stretch_of_queries(monkeypatch):
    """The first 100 queries take 1/1024 s (stable at once: the minimum count), every later one 2/1024 s (binary
    fractions: the clock adds them exactly): the 150 latencies returned are all 2/1024 s."""
    clock = [0.0]
    monkeypatch.setattr(load, "CLOCK", lambda: clock[0])
    calls = []

    def query(feed):
        calls.append(feed)
        clock[0] += (1 if len(calls) <= 100 else 2) / 1024
    settings = LoadSettings(SINGLE_STREAM, min_duration_s=0.0, min_queries=100, until_stable=1.0, max_time_s=10.0)
    timeline = load.closed_loop(query, ["x"], settings, samples=1)
    assert len(timeline) == 150 and timeline.done[-1] == 150 * 2 / 1024
    assert list(np.asarray(timeline.done) - np.asarray(timeline.issued)) == [2 / 1024] * 150


def test_an_error_in_a_worker_reaches_the_caller():
    def broken(feed):
        raise RuntimeError("model failed")
    prepared = [Prepared(samples=1, feeds=("feed",))] * 2
    with pytest.raises(RuntimeError, match="model failed"):
        load.offline(broken, prepared, total_samples=10)
    with pytest.raises(RuntimeError, match="model failed"):
        load.serve(broken, prepared, LoadSettings(SERVER, qps=1000.0, min_duration_s=0.05, min_queries=1), 1000.0)


def recorded_progress():
    """A stand-in for bench.report.MeasureProgress.step: the stages announced, and the counts each was given."""
    steps: list[tuple] = []

    def step(description, index, total, minimums=None):
        counts: list[int] = []
        steps.append((description, index, total, minimums, counts))
        return lambda count, elapsed: counts.append(count)
    return steps, step


def test_progress_names_each_stage_and_fills_to_the_tests_minimums(helper_models, monkeypatch):
    steps, progress = recorded_progress()
    settings = LoadSettings(SINGLE_STREAM, batch=2, min_duration_s=0.05, min_queries=64)
    (row,) = run(helper_models["fixed"], settings, progress=progress).rows
    assert [s[:4] for s in steps] == [
        ("load: onnxruntime single-stream batch 2: warm-up, 2 one at a time", 0, 1, None),
        ("load: onnxruntime single-stream batch 2: 64 queries and 0.05 s at least", 0, 1,
         RunConfig(warmup=0, min_time=0.05, min_iterations=64))]
    assert steps[1][4] and steps[1][4][-1] <= row.queries

    steps, progress = recorded_progress()
    (row,) = run(helper_models["fixed"], LoadSettings(OFFLINE, batch=2, **SHORT), progress=progress).rows
    assert [s[0] for s in steps] == ["load: onnxruntime offline batch 2: warm-up, 2 one at a time",
                                     "load: onnxruntime offline batch 2: a 0.5 s pilot to size the run",
                                     f"load: onnxruntime offline batch 2: {row.samples:,} samples"]
    assert steps[2][3].min_iterations == row.samples // 2 and steps[2][3].min_time == 0  # it counts batches

    monkeypatch.setattr(load, "MAX_PEAK_POINTS", 2)
    steps, progress = recorded_progress()
    settings = LoadSettings(SERVER, batch=2, qps=20.0, latency_bound_ms=500.0, min_duration_s=0.1, min_queries=5)
    rows = run(helper_models["fixed"], settings, find_peak=True, progress=progress).rows
    assert [s[0] for s in steps[1:3]] == [f"load: onnxruntime {r.label()} (find-peak point {n}, at most 2)"
                                          for n, r in enumerate(rows[:2], 1)]
    assert [s[0] for s in steps[3:]] == [f"load: onnxruntime {r.label()} (find-peak re-check {n}, at most 3)"
                                         for n, r in enumerate(rows[2:], 1)]
    assert all(s[1:3] == (0, 1) for s in steps)  # each point refills the bar: the search's length is unknown
