"""LoadGen's scenario logic on hand-computed cases: schedules, early stopping, validity, the peak search.

Hand-made timelines stand in for the load generator, so every number below follows from them.
"""
import dataclasses

import numpy as np
import pytest
from scipy.special import betainc

from bench import scenarios, stats
from bench.scenarios import (
    MULTI_STREAM,
    OFFLINE,
    SERVER,
    SINGLE_STREAM,
    ArrivalCheck,
    LoadRow,
    LoadSettings,
    Timeline,
    early_stopping_estimate,
    min_passing,
    next_peak_qps,
    server_early_stopping,
)
from toolkit.cli import UsageError

LOOSE = dict(min_duration_s=0.0, min_queries=1)


def loadgen_min_passing(t: int, p: float, confidence: float = 0.99) -> int:
    """early_stopping.cc's MinPassingQueriesFinder by its definition: the smallest h with
    odds(h, t, p, 0) = BetaRegularized[p, h, 1 + t] < 1 - confidence (LoadGen binary-searches for it)."""
    h = 1
    while betainc(h, 1 + t, p) >= 1 - confidence:
        h += 1
    return h


def loadgen_single_stream_t(n: int, p: float) -> int | None:
    """results.cc EarlyStopping, SingleStream/MultiStream, transcribed: None where n is too small."""
    h_min = loadgen_min_passing(1, p)
    if n < h_min + 1:
        return None
    t = 1
    for i in range(2, n + 1):
        if n < loadgen_min_passing(i, p) + i:
            t = i - 1
            break
    return t


def test_minimum_query_counts_are_loadgens():
    assert min_passing(1, 0.90) + 1 == 64
    assert min_passing(1, 0.99) + 1 == 662  # mlperf.conf's MultiStream min_query_count
    # No query over the bound: 0.99^h < 0.01 from h = 459 (0.99^458 = 0.01007, 0.99^459 = 0.00997).
    assert min_passing(0, 0.99) == 459
    for t, p in [(0, 0.9), (3, 0.9), (2, 0.99), (7, 0.99)]:
        assert min_passing(t, p) == loadgen_min_passing(t, p)


@pytest.mark.parametrize("n, p", [(64, 0.9), (100, 0.9), (333, 0.9), (1000, 0.9), (662, 0.99), (2000, 0.99)])
def test_early_stopping_estimate_matches_loadgens_loop(n, p):
    latencies = np.arange(1, n + 1, dtype=float)[::-1]  # n distinct latencies, out of order
    found = early_stopping_estimate(latencies, p)
    t = loadgen_single_stream_t(n, p)
    assert found.met and found.estimate_ms == float(n - t + 1)  # sorted[n - t], 1-based value n - t + 1


def test_early_stopping_by_hand():
    # 100 queries at p90: t = 3 (P(Binomial(100, 0.1) <= 3) = 0.0078 < 0.01 <= P(<= 4) = 0.0237), so the
    # estimate is sorted[97], the 98th lowest of 1..100 ms, and the 2 highest are discarded.
    found = early_stopping_estimate([float(v) for v in range(1, 101)], 0.9)
    assert (found.met, found.estimate_ms, found.needed) == (True, 98.0, 64)
    assert "2 highest of 100 discarded" in found.message
    short = early_stopping_estimate([1.0] * 63, 0.9)
    assert not short.met and short.estimate_ms is None and "at least 64 are needed" in short.message


def test_server_early_stopping_by_hand():
    assert server_early_stopping([1.0] * 459, 2.0, 0.99).met
    short = server_early_stopping([1.0] * 458, 2.0, 0.99)
    assert not short.met and short.needed == 459 and "(1 more, all within the bound): raise --min-duration" \
        in short.message
    five_over = server_early_stopping([1.0] * 495 + [3.0] * 5, 2.0, 0.99)
    assert five_over.overlatency == 5 and five_over.needed == loadgen_min_passing(5, 0.99) + 5 == 1307
    # More than 1% over the bound: more queries cannot help.
    assert server_early_stopping([1.0] * 90 + [3.0] * 10, 2.0, 0.99).message.endswith("lower --qps")


def test_rank_percentile_is_loadgens():
    values = [float(v) for v in range(10, 0, -1)]
    assert scenarios.rank_percentile(values, 0.9) == 10.0  # sorted[int(10 * 0.9)] = sorted[9]
    assert scenarios.rank_percentile(values, 0.5) == 6.0


def test_poisson_schedule_is_loadgens_loop():
    """GenerateQueries: the first query at 0, exponential gaps, while the last time < duration or count < min."""
    for qps, duration, minimum in [(200.0, 0.5, 10), (5.0, 0.1, 30), (50.0, 0.0, 1)]:
        expected = loadgen_schedule(qps, duration, minimum, seed=3)
        assert scenarios.poisson_schedule(qps, duration, minimum, seed=3) == pytest.approx(expected)
    gaps = np.diff(scenarios.poisson_schedule(1000.0, 20.0, 1, seed=0))
    assert gaps.mean() == pytest.approx(1 / 1000, rel=0.03) and gaps.std() == pytest.approx(1 / 1000, rel=0.03)


def test_rules_and_their_minimums():
    quick = LoadSettings(SINGLE_STREAM)
    assert (quick.duration_s, quick.queries, quick.percentile, quick.bound_ms) == (5.0, 100, 0.9, 100.0)
    assert LoadSettings(MULTI_STREAM, rules="mlperf").duration_s == 600.0
    assert LoadSettings(MULTI_STREAM).queries == 662 and LoadSettings(MULTI_STREAM).percentile == 0.99
    assert LoadSettings(OFFLINE, rules="mlperf").queries == 24_576
    assert LoadSettings(SERVER, min_duration_s=2, min_queries=7).queries == 7
    assert scenarios.DEFAULT_BATCH == {SINGLE_STREAM: 1, MULTI_STREAM: 8, SERVER: 1, OFFLINE: 32}


@pytest.mark.parametrize("kwargs, message", [
    (dict(scenario=SERVER, qps=0.0), "--qps 0 must be a positive"),
    (dict(scenario=SERVER, latency_bound_ms=-1.0), "--latency-bound-ms -1 must be > 0"),
    (dict(scenario=SINGLE_STREAM, concurrency=2), "single-stream issues one query at a time"),
    (dict(scenario=OFFLINE, until_stable=2.0), "offline's queries are scheduled before it starts"),
    (dict(scenario="burst"), "unknown scenario 'burst'"),
    (dict(scenario=SERVER, rules="strict"), "unknown --rules 'strict'"),
    (dict(scenario=SERVER, min_queries=0), "--min-queries 0 must be >= 1"),
])
def test_settings_refuse_bad_input(kwargs, message):
    with pytest.raises(UsageError, match=message):
        LoadSettings(**kwargs)


def test_sizes_from_loadgens_formulas():
    # max(100 samples, int(1.1 x 50 samples/s x 5 s) = 275) in whole batches of 32: 288.
    assert scenarios.offline_sample_count(LoadSettings(OFFLINE, batch=32), 50.0) == 288
    # 10 x (100 qps x 50 ms in flight) + 2 workers.
    assert scenarios.max_outstanding(100.0, 50.0, 2) == 52


def single_stream_timeline() -> Timeline:
    """100 queries, the i-th taking i ms, each issued 0.5 ms after the previous completed."""
    intended, issued, done, now = [], [], [], 0.0
    for i in range(1, 101):
        intended.append(now)
        issued.append(now + 0.0005 * (i > 1))
        done.append(issued[-1] + i / 1000)
        now = done[-1]
    return Timeline.of(1, intended, issued, issued, done)


def test_single_stream_row_by_hand():
    timeline = single_stream_timeline()
    row = LoadRow.from_timeline(LoadSettings(SINGLE_STREAM, **LOOSE), timeline)
    assert row.metric == "p90 latency ms" and row.metric_value == pytest.approx(91.0)  # sorted[90]
    assert row.early_stopping.estimate_ms == pytest.approx(98.0)
    assert row.queueing.max == 0.0 and row.compute.mean == pytest.approx(50.5)
    assert row.schedule_error.max == pytest.approx(0.5) and row.schedule_error.mean == pytest.approx(0.495)
    assert row.duration_s == timeline.issued[-1] and row.valid and row.reasons == ()
    assert row.samples_per_second == pytest.approx(100 / timeline.done[-1])
    # The interval is of a series in the order measured (bench/stats.py, tests/bench/test_stats.py): latencies that
    # rise from 1 to 100 ms are one long trend, which bounds neither side; shuffled, the same values bound both.
    assert (row.metric_ci.low, row.metric_ci.high) == (None, None)
    shuffled = stats.percentile_interval(np.random.default_rng(0).permutation(row.latencies_ms()), 0.9)
    assert shuffled.low is not None and shuffled.high is not None and shuffled.low < 91.0 < shuffled.high
    strict = LoadRow.from_timeline(LoadSettings(SINGLE_STREAM, min_duration_s=10.0, min_queries=200), timeline)
    assert not strict.valid and [r.split(":")[0] for r in strict.reasons] == ["min duration", "min query count"]


def server_timeline() -> Timeline:
    """Four queries scheduled 10 ms apart, each issued 1 ms late; the third is taken 4 ms after its issue although
    the one worker was free (the generator's hand-off)."""
    return Timeline.of(1, [0.0, 0.010, 0.020, 0.030], [0.001, 0.011, 0.021, 0.031], [0.001, 0.011, 0.025, 0.031],
                       [0.005, 0.015, 0.029, 0.035])


def test_server_row_splits_queueing_from_compute_by_hand():
    row = LoadRow.from_timeline(LoadSettings(SERVER, qps=100.0, latency_bound_ms=8.0, **LOOSE), server_timeline())
    assert row.latencies_ms() == pytest.approx([5.0, 5.0, 9.0, 5.0])  # from the scheduled times
    assert row.metric_value == pytest.approx(9.0)  # sorted[int(4 x 0.99)] = sorted[3]
    # The worker was free each time: no queueing in the system; the generator's 1 ms late and 4 ms hand-off.
    assert row.queueing.max == 0.0 and row.handoff.max == pytest.approx(4.0) and row.handoff.mean == pytest.approx(1.0)
    assert row.compute.mean == pytest.approx(4.0) and row.schedule_error.mean == pytest.approx(1.0)
    assert row.arrivals.passed is None and row.arrivals.queries == 4  # too few to test
    assert row.duration_s == 0.030  # the last *scheduled* time
    assert not row.passes_bound and row.reasons[0].startswith("latency bound: p99 9.000 ms is over the 8 ms bound")
    assert row.early_stopping.overlatency == 1 and "early stopping" in row.reasons[1]
    relaxed = LoadRow.from_timeline(LoadSettings(SERVER, qps=100.0, latency_bound_ms=10.0, **LOOSE), server_timeline())
    assert relaxed.passes_bound and not relaxed.valid and len(relaxed.reasons) == 1  # early stopping needs 459


def busy_timeline() -> Timeline:
    """Two workers: queries 2 and 3 arrive while both are busy (until 10 and 11 ms); query 2 is taken 0.5 ms
    after its worker came free, query 4 1 ms after its issue to an idle worker."""
    issued = [0.000, 0.001, 0.002, 0.003, 0.030]
    return Timeline.of(1, [0.0, 0.001, 0.002, 0.003, 0.029], issued, [0.000, 0.001, 0.0105, 0.011, 0.031],
                       [0.010, 0.011, 0.020, 0.021, 0.035])


def test_the_systems_queueing_is_told_apart_from_the_generators_hand_off_by_hand():
    timeline = busy_timeline()
    assert scenarios.worker_ready(timeline, 2) == pytest.approx([0.0, 0.001, 0.010, 0.011, 0.030])
    row = LoadRow.from_timeline(LoadSettings(SERVER, qps=100.0, concurrency=2, **LOOSE), timeline)
    assert row.queueing.max == pytest.approx(8.0) and row.queueing.mean == pytest.approx(16.0 / 5)
    assert row.handoff.max == pytest.approx(1.0) and row.handoff.mean == pytest.approx(1.5 / 5)
    assert row.schedule_error.mean == pytest.approx(0.2)
    # In order they make up each server latency: late, queueing, hand-off, compute.
    assert row.latency.mean == pytest.approx(row.schedule_error.mean + row.queueing.mean + row.handoff.mean
                                             + row.compute.mean)
    # A third worker takes query 2 at its issue; query 3 still finds all three busy.
    assert scenarios.worker_ready(timeline, 3) == pytest.approx([0.0, 0.001, 0.002, 0.010, 0.030])
    # Offline's batches wait in the system for the workers; single-stream queries never do.
    offline = LoadRow.from_timeline(LoadSettings(OFFLINE, **LOOSE), Timeline.of(
        1, [0.0] * 3, [0.0] * 3, [0.0, 0.1002, 0.2], [0.1, 0.2, 0.4]))
    assert offline.queueing.max == pytest.approx(200.0) and offline.handoff.max == pytest.approx(0.2)
    single = LoadRow.from_timeline(LoadSettings(SINGLE_STREAM, **LOOSE), single_stream_timeline())
    assert single.queueing.max == single.handoff.max == 0.0


def loadgen_schedule(qps: float, duration: float, minimum: int, seed: int) -> list[float]:
    """loadgen.cc GenerateQueries, transcribed: the first query at 0, exponential gaps, while the last time is
    before the duration or fewer than the minimum exist."""
    rng = np.random.default_rng(seed)
    times, timestamp, last = [], 0.0, 0.0
    while last < duration or len(times) < minimum:
        times.append(timestamp)
        last = timestamp
        timestamp += rng.exponential(1 / qps)
    return times


def test_a_correct_generator_passes_the_arrival_check_as_often_as_it_states():
    """LoadGen's schedule itself, issued on time, 2,000 times: the check fails at most its stated 0.1% (+ noise),
    and each test's p-value is uniform (5% of them below 0.05)."""
    checks = [ArrivalCheck.of(loadgen_schedule(200.0, 1.0, 100, seed), 200.0) for seed in range(2000)]
    assert sum(not c.passed for c in checks) <= 6  # P(more | Binomial(2000, 0.001)) < 0.5%
    for name in ("rate_p", "gaps_p", "dispersion_p"):
        below = np.mean([getattr(c, name) < 0.05 for c in checks])
        assert 0.035 <= below <= 0.065, (name, below)


def test_the_gaps_test_is_scipys_kolmogorov_smirnov():
    from scipy import stats as scipy_stats

    times = loadgen_schedule(50.0, 2.0, 100, seed=4)
    check = ArrivalCheck.of(times, 50.0)
    expected = scipy_stats.kstest(np.diff(times), "expon", args=(0, 1 / 50.0), method="approx")
    assert check.gaps_ks == pytest.approx(expected.statistic) and check.gaps_p == pytest.approx(expected.pvalue)
    assert check.rate == pytest.approx((len(times) - 1) / times[-1]) and check.rate_ci.contains(check.rate)
    assert check.windows == len(times) // 10


def wrong_generators(times: np.ndarray, qps: float) -> dict[str, np.ndarray]:
    """Issue times of generators that do not issue the Poisson process `times` was drawn from."""
    rng = np.random.default_rng(1)
    stalled = times.copy()
    for second in range(int(times[-1])):  # 100 ms stalls each second, the backlog issued at once after each
        stalled[(times >= second + 0.5) & (times < second + 0.6)] = second + 0.6
    return {"uniform gaps": np.concatenate([[0.0], np.cumsum(rng.uniform(0, 2 / qps, len(times) - 1))]),
            "all at the end": np.full(len(times), times[-1]), "25% slow": times * 1.25, "stalls": stalled,
            "evenly spaced": np.arange(len(times)) / qps}


@pytest.mark.parametrize("wrong", ["uniform gaps", "all at the end", "25% slow", "stalls", "evenly spaced"])
def test_a_wrong_generator_fails_the_arrival_check(wrong):
    times = np.asarray(loadgen_schedule(200.0, 5.0, 100, seed=2))
    assert ArrivalCheck.of(times, 200.0).passed
    check = ArrivalCheck.of(wrong_generators(times, 200.0)[wrong], 200.0)
    assert check.passed is False and "NOT Poisson at 0.001" in check.describe()


def test_the_arrival_check_is_with_each_server_row_and_in_its_json():
    times = loadgen_schedule(200.0, 1.0, 100, seed=0)
    late = [t + 0.0002 for t in times]
    timeline = Timeline.of(1, times, late, late, [t + 0.001 for t in late])
    row = LoadRow.from_timeline(LoadSettings(SERVER, qps=200.0, **LOOSE), timeline)
    assert row.arrivals == ArrivalCheck.of(timeline.issued, 200.0) and row.arrivals.passed
    doc = row.to_json()
    assert doc["arrivals"]["passed"] is True and doc["arrivals"]["rate_ci"] == row.arrivals.rate_ci.to_json()
    assert LoadRow.from_json(doc) == row
    assert LoadRow.from_timeline(LoadSettings(SINGLE_STREAM, **LOOSE), single_stream_timeline()).arrivals is None


def test_overloaded_server_row_says_so_instead_of_duration_and_count():
    row = LoadRow.from_timeline(LoadSettings(SERVER, qps=100.0, latency_bound_ms=10.0, min_duration_s=1.0,
                                             min_queries=10), server_timeline(), overloaded=True, scheduled=100)
    assert not row.passes_bound
    assert row.reasons[0].startswith("overloaded: stopped issuing after 4 of 100 scheduled queries, more than 11")
    assert not any(r.startswith(("min duration", "min query count")) for r in row.reasons)


def test_offline_row_by_hand():
    timeline = Timeline.of(2, [0.0] * 3, [0.0] * 3, [0.0, 0.1, 0.2], [0.1, 0.2, 0.4])
    row = LoadRow.from_timeline(LoadSettings(OFFLINE, batch=2, min_duration_s=0.3, min_queries=6), timeline)
    assert row.metric == "samples/s" and row.metric_value == pytest.approx(15.0)  # 6 samples / 0.4 s
    assert row.duration_s == 0.4 and row.valid and row.early_stopping is None
    assert row.queueing.max == pytest.approx(200.0) and row.compute.max == pytest.approx(200.0)
    short = LoadRow.from_timeline(LoadSettings(OFFLINE, batch=2, min_duration_s=1.0, min_queries=8), timeline)
    assert short.reasons == ("min duration: 0.40 s of the 1 s minimum: raise --expected-qps (this run measured "
                             "15.0 samples/s) so more samples are generated",
                             "min query count: 6 samples of the 8 minimum: raise --min-duration")


def test_load_row_json_round_trip_re_derives_everything():
    row = LoadRow.from_timeline(LoadSettings(SERVER, qps=100.0, latency_bound_ms=8.0, **LOOSE), server_timeline(),
                                peak=True, scheduled=4)
    doc = row.to_json()
    assert doc["valid"] is False and doc["metric_value"] == pytest.approx(9.0) and doc["timeline"]["samples"] == 1
    assert LoadRow.from_json(doc) == row


def test_labels_and_headline_rows():
    settings = LoadSettings(SERVER, qps=100.0, concurrency=2, **LOOSE)
    rows = [LoadRow.from_timeline(settings.at_qps(q), server_timeline()) for q in (100.0, 50.0)]
    assert rows[0].label() == "server batch 1 x2 @ 100 qps"
    assert scenarios.headline_rows(rows) == [rows[1]]  # a search without a peak: its lowest QPS
    peak = dataclasses.replace(rows[0], peak=True)
    assert scenarios.headline_rows([peak, rows[1]]) == [peak]


def test_stable_needs_a_narrow_percentile_interval():
    assert scenarios.stable([5.0] * 300, 0.9, 1.0)
    assert not scenarios.stable(list(np.random.default_rng(0).exponential(1.0, 300)), 0.9, 1.0)


def search(capacity: float, start: float, tolerance: float, floor: float = 0.0) -> list[float]:
    """The QPS tried by find-peak on a system that meets the bound up to `capacity`."""
    points: list[tuple[float, bool]] = []
    while (qps := next_peak_qps(points, start, tolerance, floor)) is not None:
        points.append((qps, qps <= capacity))
    return [q for q, _ in points]


def test_peak_search_doubles_then_bisects():
    # 10, 20 pass, 40 fails; then 30, 35 pass, 37.5 fails; 36.25 passes: [36.25, 37.5] is within 5%.
    assert search(37.0, 10.0, 0.05) == [10.0, 20.0, 40.0, 30.0, 35.0, 37.5, 36.25]


def test_peak_search_with_loadgens_precision_alone():
    tried = search(37.0, 10.0, 0.0)
    lower = max(q for q in tried if q <= 37.0)
    upper = min(q for q in tried if q > 37.0)
    assert scenarios.peak_finished(lower, upper, 0.0) and not scenarios.peak_finished(30.0, 40.0, 0.0)
    assert int(lower * 10) + 1 >= int(upper * 10) and 36.9 < lower <= 37.0


def test_peak_search_halves_a_failing_start_and_gives_up():
    assert search(13.0, 100.0, 0.05)[:5] == [100.0, 50.0, 25.0, 12.5, 18.75]
    assert search(0.001, 100.0, 0.05) == [100.0 / 2 ** i for i in range(scenarios.PEAK_HALVINGS + 1)]
    # 100 queries in at most 4 x 5 s: not below 5 qps.
    floor = scenarios.peak_floor(LoadSettings(SERVER))
    assert floor == 5.0 and search(0.001, 100.0, 0.05, floor) == [100.0, 50.0, 25.0, 12.5, 6.25]


def test_a_bound_below_the_compute_time_is_unreachable():
    tight = LoadRow.from_timeline(LoadSettings(SERVER, qps=100.0, latency_bound_ms=3.0, **LOOSE), server_timeline())
    loose = LoadRow.from_timeline(LoadSettings(SERVER, qps=100.0, latency_bound_ms=8.0, **LOOSE), server_timeline())
    assert scenarios.bound_unreachable(tight) and not scenarios.bound_unreachable(loose)  # compute: 4 ms each
