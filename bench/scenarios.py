"""Load scenarios after MLPerf LoadGen: settings, schedules, validity rules, early stopping, peak search, results.

Pure: no clock, no model. `bench/load.py` runs the queries and hands the times it recorded
(a `Timeline`) to `LoadRow.from_timeline`, which decides everything else.

What follows LoadGen (github.com/mlcommons/inference, loadgen/ at b66003e, read for this):
  * Scenarios (test_settings.h, TestScenario):
      single-stream  one query at a time, the next issued when the previous completes; result: the
                     90th percentile latency (single_stream_target_latency_percentile = 0.90).
      multi-stream   the same with queries of 8 samples (multi_stream_samples_per_query = 8); result:
                     the 99th percentile query latency (multi_stream_target_latency_percentile = 0.99).
      server         queries of one sample arriving as a Poisson process at the target QPS
                     (exponential inter-arrival times, loadgen.cc ScheduleDistribution<Server>); a run
                     passes if the 99th percentile latency, measured from each query's *scheduled*
                     time, is within the bound (server_target_latency_percentile = 0.99; the bound
                     defaults to test_settings.h's server_target_latency_ns = 100 ms).
      offline        every sample available at once; result: samples/s = samples / the last
                     completion (results.cc: sample_count / max_latency).
  * Duration and count (issue_query_controller.cc, results.cc MinDurationMet/MinQueriesMet): a run
    lasts until both the minimum duration and the minimum query count are met; the duration is
    the last query's issue time (single-/multi-stream), its scheduled time (server), or the last
    completion (offline). mlperf.conf sets min_duration = 600 s for every scenario and
    min_query_count = 662 for multi-stream; test_settings.h's default min_query_count is 100;
    offline's minimum is a sample count, 24,576 in mlperf.conf for the image models (resnet50,
    retinanet). The server schedule is generated for the minimum duration and count up front
    (loadgen.cc GenerateQueries: while the last scheduled time < duration or count < minimum).
  * Percentiles: sorted[int(n * p)] (results.cc ProcessLatencies), not interpolated.
  * Early stopping (early_stopping.cc, results.cc EarlyStopping), confidence 0.99, tolerance 0:
    for single-/multi-stream, with n queries, the estimate of the p-th percentile is the
    (t-1)-th highest latency discarded, t from the binomial test below, and at least h_min + 1
    queries are needed (64 for p90, 662 for p99); for server, with t queries over the bound, the
    run needs n >= h + t, h the smallest count for which P(at most t of h + t queries over the
    bound | each is over with probability 1 - p) < 1 - confidence. LoadGen computes that
    probability as BetaRegularized[p, h, 1 + t], which is the binomial CDF used here.
  * Find peak (loadgen.cc FindBoundaries / FindPeakPerformanceBinarySearch, test_settings_internal.h):
    from a QPS that meets the bound, double it until one does not, then bisect until the two
    bounds agree to server_find_peak_qps_decimals_of_precision = 1 decimal; a point passes when
    its latency constraint holds (PerfConstraintsMet). Here the search also stops when the bounds
    are within --peak-tolerance of each other (quick rules: 5%), and a starting QPS that fails is
    halved instead of ending the search.
  * Offline's sample count (test_settings_internal.cc): 1.1 x expected QPS x minimum duration, at
    least the minimum count (kSlack = 1.1).
  * Server's max_async_queries (issue_query_controller.cc): a run stops issuing when too many
    queries are outstanding. LoadGen's default is no limit; here the limit is 10x what the bound
    allows in flight (Little's law: qps x bound), plus the concurrency, so an overloaded point
    ends in seconds instead of draining a backlog for minutes.

Not from LoadGen: `quick` rules (the default: 5 s minimum, the same counts), `--concurrency` for
server and offline (worker threads over one shared session, as onnxruntime_perf_test's -c), the
split of each latency into the generator's own delays and the system's time (`time_split`: the
generator's scheduling error, the actual issue time minus the intended one, the scheduled time for
server, the previous completion for single-/multi-stream; the system's queueing, while every worker
is busy; the generator's hand-off to a free worker; compute), and the check of a server test's issue
times against the Poisson process it intended (`ArrivalCheck`).

    settings = LoadSettings(scenario="server", rules="quick", batch=1, qps=200, latency_bound_ms=20)
    schedule = poisson_schedule(200, settings.min_duration_s, settings.min_queries, seed=0)
    row = LoadRow.from_timeline(settings, Timeline(...))       # row.valid, row.reasons, row.metric_value
"""
from __future__ import annotations

import dataclasses
import heapq
import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from bench import stats
from bench.stats import Interval
from toolkit.cli import UsageError

if TYPE_CHECKING:  # bench.results imports this module: Resources is read from it where it is needed
    from bench.results import Resources

SINGLE_STREAM, MULTI_STREAM, SERVER, OFFLINE = "single-stream", "multi-stream", "server", "offline"
SCENARIOS = (SINGLE_STREAM, MULTI_STREAM, SERVER, OFFLINE)
CLOSED_LOOP = (SINGLE_STREAM, MULTI_STREAM)
RULES = ("quick", "mlperf")

PERCENTILE = {SINGLE_STREAM: 0.90, MULTI_STREAM: 0.99, SERVER: 0.99, OFFLINE: 0.90}
DEFAULT_BATCH = {SINGLE_STREAM: 1, MULTI_STREAM: 8, SERVER: 1, OFFLINE: 32}
MIN_QUERIES = {SINGLE_STREAM: 100, MULTI_STREAM: 662, SERVER: 100}
MIN_DURATION_S = {"quick": 5.0, "mlperf": 600.0}
MIN_OFFLINE_SAMPLES = {"quick": 100, "mlperf": 24_576}
DEFAULT_LATENCY_BOUND_MS = 100.0
EARLY_STOPPING_CONFIDENCE = 0.99
OFFLINE_SLACK = 1.1
PEAK_DECIMALS = 1
PEAK_TOLERANCE = {"quick": 0.05, "mlperf": 0.0}
PEAK_HALVINGS = 6        # a failing start is halved at most this often before the search gives up ...
PEAK_LONGEST = 4         # ... and not below the QPS at which the minimum query count takes 4x the minimum duration
PEAK_RECHECKS = 3        # a found peak is tested again, and while that fails the next lower passing QPS, this often
OVERLOAD_FACTOR = 10


@dataclasses.dataclass(frozen=True)
class LoadSettings:
    """One load test, resolved: the scenario, its rules' minimums (or the user's), the load.

    `batch`: samples per query (offline: per run of the SUT); `concurrency`: queries in flight
    (server and offline workers); `percentile`: the scenario's target (a fraction).
    """

    scenario: str
    rules: str = "quick"
    batch: int = 1
    concurrency: int = 1
    qps: float | None = None
    latency_bound_ms: float | None = None
    min_duration_s: float | None = None     # None: the rules' value
    min_queries: int | None = None          # offline: samples; None: the rules' value
    until_stable: float | None = None       # percent: run on until the metric's interval is this narrow
    max_time_s: float = 60.0
    seed: int = 0
    expected_qps: float | None = None       # offline: samples/s expected (None: measured in the warm-up)

    def __post_init__(self):
        if self.scenario not in SCENARIOS:
            raise UsageError(f"unknown scenario {self.scenario!r}: choose from {', '.join(SCENARIOS)}")
        if self.rules not in RULES:
            raise UsageError(f"unknown --rules {self.rules!r}: choose from {', '.join(RULES)}")
        if self.batch < 1:
            raise UsageError(f"--batch {self.batch}: samples per query must be >= 1")
        if self.concurrency < 1:
            raise UsageError(f"--concurrency {self.concurrency} must be >= 1")
        if self.concurrency > 1 and self.scenario in CLOSED_LOOP:
            raise UsageError(f"{self.scenario} issues one query at a time: drop --concurrency, or use "
                             "--scenario server or offline for queries in flight together")
        if self.qps is not None and not (self.qps > 0 and math.isfinite(self.qps)):
            raise UsageError(f"--qps {self.qps:g} must be a positive number of queries per second, e.g. --qps 50")
        if self.latency_bound_ms is not None and not self.latency_bound_ms > 0:
            raise UsageError(f"--latency-bound-ms {self.latency_bound_ms:g} must be > 0, e.g. --latency-bound-ms 50")
        if self.min_duration_s is not None and self.min_duration_s < 0:
            raise UsageError(f"--min-duration {self.min_duration_s:g} must be >= 0 seconds")
        if self.min_queries is not None and self.min_queries < 1:
            raise UsageError(f"--min-queries {self.min_queries} must be >= 1")
        if self.until_stable is not None:
            if not self.until_stable > 0:
                raise UsageError(f"--until-stable {self.until_stable:g} must be a percentage > 0, e.g. 2")
            if self.scenario not in CLOSED_LOOP:
                raise UsageError(f"--until-stable needs a scenario that can run on ({', '.join(CLOSED_LOOP)}): "
                                 f"{self.scenario}'s queries are scheduled before it starts; raise --min-duration")
        if self.max_time_s <= 0:
            raise UsageError(f"--max-time {self.max_time_s:g} must be > 0 seconds")
        if self.expected_qps is not None and not self.expected_qps > 0:
            raise UsageError(f"--expected-qps {self.expected_qps:g} must be > 0 samples/s")

    @property
    def percentile(self) -> float:
        return PERCENTILE[self.scenario]

    @property
    def duration_s(self) -> float:
        return MIN_DURATION_S[self.rules] if self.min_duration_s is None else self.min_duration_s

    @property
    def queries(self) -> int:
        """The minimum query count (offline: sample count)."""
        if self.min_queries is not None:
            return self.min_queries
        return MIN_OFFLINE_SAMPLES[self.rules] if self.scenario == OFFLINE else MIN_QUERIES[self.scenario]

    @property
    def bound_ms(self) -> float:
        return DEFAULT_LATENCY_BOUND_MS if self.latency_bound_ms is None else self.latency_bound_ms

    @property
    def target_qps(self) -> float:
        """A server test's rate: --qps, or the point a --find-peak search is at (bench/load.py checks it is set)."""
        if self.qps is None:
            raise ValueError(f"{self.scenario} batch {self.batch}: a test without its queries per second")
        return self.qps

    def label(self) -> str:
        """e.g. "server batch 1 x2 @ 120 qps": what distinguishes one load test from another."""
        return (f"{self.scenario} batch {self.batch}" + (f" x{self.concurrency}" if self.concurrency > 1 else "")
                + (f" @ {self.qps:g} qps" if self.scenario == SERVER else ""))

    def at_qps(self, qps: float) -> "LoadSettings":
        return dataclasses.replace(self, qps=qps)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def poisson_schedule(qps: float, min_duration_s: float, min_queries: int, seed: int) -> np.ndarray:
    """Scheduled issue times (s) of a Poisson arrival process at `qps`: the first at 0, then exponential gaps,
    generated while the last time is before `min_duration_s` or fewer than `min_queries` exist."""
    rng = np.random.default_rng(seed)
    chunks, last, count = [np.zeros(1)], 0.0, 1
    while last < min_duration_s or count < min_queries:
        chunk = last + np.cumsum(rng.exponential(1 / qps, size=max(1024, int(qps * min_duration_s) // 4)))
        # Keep up to the first time at or past the duration, or the minimum count, whichever is later.
        past = np.flatnonzero(chunk >= min_duration_s)
        need = max(min_queries - count, int(past[0]) + 1 if len(past) else len(chunk))
        chunks.append(chunk[:need])
        count += len(chunks[-1])
        last = float(chunks[-1][-1])
    return np.concatenate(chunks)


def offline_sample_count(settings: LoadSettings, expected_qps: float) -> int:
    """1.1 x expected samples/s x the minimum duration (truncated, as LoadGen's uint64_t conversion does),
    at least the minimum, in whole batches."""
    samples = max(settings.queries, int(OFFLINE_SLACK * expected_qps * settings.duration_s))
    return -(-samples // settings.batch) * settings.batch


def max_outstanding(qps: float, bound_ms: float, concurrency: int) -> int:
    """Queries in flight beyond which a server run stops: 10x Little's law's qps x bound, plus the workers."""
    return math.ceil(OVERLOAD_FACTOR * qps * bound_ms / 1000) + concurrency


def rank_percentile(values: stats.Series, p: float) -> float:
    """LoadGen's percentile: sorted[int(n * p)]."""
    ordered = np.sort(np.asarray(values, dtype=float))
    return float(ordered[int(len(ordered) * p)])


def overlatency_odds(n: int, t: int, p: float) -> float:
    """P(at most t of n queries over the bound) when each is under it with probability p.

    LoadGen's odds(h, t, p, 0) = BetaRegularized[p, h, 1 + t] with h = n - t: the same number.
    """
    from scipy.special import bdtr

    return float(bdtr(t, n, 1 - p))


def min_passing(t: int, p: float, confidence: float = EARLY_STOPPING_CONFIDENCE) -> int:
    """LoadGen's MinPassingQueriesFinder: the smallest h with P(<= t over the bound in h + t) < 1 - confidence."""
    from scipy.special import betainc

    def passes(h: int) -> bool:
        return float(betainc(h, 1 + t, p)) < 1 - confidence
    high = 1
    while not passes(high):
        high *= 2
    low = high // 2 + 1 if high > 1 else 1
    while low < high:  # the smallest passing h in [low, high]
        middle = (low + high) // 2
        low, high = (low, middle) if passes(middle) else (middle + 1, high)
    return low


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """LoadGen's early-stopping outcome: met or not, the percentile estimate it allows, what it needs."""

    met: bool
    estimate_ms: float | None       # single-/multi-stream: the early-stopping estimate of the percentile
    overlatency: int | None         # server: queries over the bound
    needed: int | None              # the total query count that would be enough
    message: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def early_stopping_estimate(latencies_ms: Sequence[float], p: float,
                            confidence: float = EARLY_STOPPING_CONFIDENCE) -> EarlyStopping:
    """Single-/multi-stream (results.cc EarlyStopping): the highest latency left after discarding the t-1 highest.

    LoadGen loops i = 2, 3, ... until n < h(i) + i and takes t = i - 1. Since h(i) is the smallest
    passing h and the odds fall as h grows, n < h(i) + i holds exactly when P(Binomial(n, 1-p) <= i)
    >= 1 - confidence, which rises with i: t is the largest i with that probability below 1 - confidence.
    """
    from scipy.special import bdtr

    n = len(latencies_ms)
    needed = min_passing(1, p, confidence) + 1
    if n < needed:
        return EarlyStopping(False, None, None, needed,
                             f"early stopping: {n} queries, at least {needed} are needed for a p{p * 100:g} "
                             f"estimate: raise --min-queries to {needed}")
    cdf = bdtr(np.arange(1, n + 1), n, 1 - p)
    t = int(np.count_nonzero(cdf < 1 - confidence))
    estimate = float(np.sort(np.asarray(latencies_ms, dtype=float))[n - t])
    return EarlyStopping(True, estimate, None, needed,
                         f"early stopping p{p * 100:g} estimate {estimate:.3f} ms ({t - 1} highest of {n} discarded)")


def server_early_stopping(latencies_ms: Sequence[float], bound_ms: float, p: float,
                          confidence: float = EARLY_STOPPING_CONFIDENCE) -> EarlyStopping:
    """Server (results.cc EarlyStopping): with t queries over the bound, n >= h(t) + t queries are needed."""
    n = len(latencies_ms)
    t = int(np.count_nonzero(np.asarray(latencies_ms, dtype=float) > bound_ms))
    needed = min_passing(t, p, confidence) + t
    if n >= needed:
        return EarlyStopping(True, None, t, needed, f"early stopping: {t} of {n} queries over the bound")
    # Over 1 - p of the queries over the bound: more queries will not help, the latency must come down.
    fix = "lower --qps" if t > (1 - p) * n else "raise --min-duration"
    return EarlyStopping(False, None, t, needed,
                         f"early stopping: {t} of {n} queries over the bound, {needed} queries would be needed "
                         f"({needed - n} more, all within the bound): {fix}")


@dataclasses.dataclass(frozen=True)
class Timeline:
    """What the load generator recorded, per query, in seconds since the test started.

    intended: when it should have been issued (server: its scheduled time; single-/multi-stream:
    the previous query's completion; offline: 0, everything is there at the start); issued: when
    it was handed to the system under test; started: when a worker began computing it; done: when
    it completed. `samples`: samples per query.
    """

    samples: int
    intended: tuple[float, ...]
    issued: tuple[float, ...]
    started: tuple[float, ...]
    done: tuple[float, ...]

    @classmethod
    def of(cls, samples: int, intended, issued, started, done) -> "Timeline":
        # Rounded to the nanosecond, perf_counter's resolution, as bench's other raw times are.
        return cls(samples, *(tuple(round(float(v), 9) for v in column)
                              for column in (intended, issued, started, done)))

    def __len__(self) -> int:
        return len(self.done)

    def column(self, name: str) -> np.ndarray:
        return np.asarray(getattr(self, name), dtype=float)

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, **{k: list(getattr(self, k)) for k in ("intended", "issued", "started",
                                                                                 "done")}}


@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean and LoadGen-style percentiles (sorted[int(n p)]) of some per-query times, in ms."""

    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values_ms: np.ndarray) -> "Summary":
        if len(values_ms) == 0:
            return cls(0.0, 0.0, 0.0, 0.0, 0.0)
        return cls(mean=float(np.mean(values_ms)), p50=rank_percentile(values_ms, 0.5),
                   p90=rank_percentile(values_ms, 0.9), p99=rank_percentile(values_ms, 0.99),
                   max=float(np.max(values_ms)))


def worker_ready(timeline: Timeline, workers: int) -> np.ndarray:
    """When each query could have started: at its issue, or when a worker was first free after it.

    The workers take queries in their order (a FIFO queue; offline: a shared counter), so query i goes
    to the worker free first, which is free again at i's completion; a query that found every worker
    busy could start no sooner than that worker's previous completion. Its actual start minus this is
    the hand-off, the load generator's own: its queue's wake-up, the worker thread waiting for the
    GIL, a worker's own loop between two queries. Clamped to the actual start (two workers may record
    their starts out of order by a few microseconds).
    """
    issued, started, done = (timeline.column(c) for c in ("issued", "started", "done"))
    free = [-math.inf] * workers    # a heap of the workers' next free times
    ready = np.empty(len(timeline))
    for index in range(len(timeline)):
        ready[index] = min(max(issued[index], heapq.heappop(free)), started[index])
        heapq.heappush(free, done[index])
    return ready


# A correct load generator fails the arrival check this rarely: its three tests each at a third (Bonferroni).
ARRIVALS_ALPHA = 0.001
MIN_ARRIVALS = 20
ARRIVALS_PER_WINDOW = 10


@dataclasses.dataclass(frozen=True)
class ArrivalCheck:
    """A server test's achieved issue times against the Poisson process it intended (`qps`): the load
    generator's own accuracy. Three two-sided tests, each at ARRIVALS_ALPHA / 3:

      * rate: the span from the first issue to the last is the sum of n - 1 exponential gaps, Gamma(n - 1,
        1 / qps): the achieved rate, its exact 95% interval, and the span's p-value;
      * gaps: Kolmogorov-Smirnov of the n - 1 gaps against the exponential of mean 1 / qps; the p-value is
        twice the exact one-sided one (scipy.special.smirnov; scipy.stats.kstest's "approx"), never below
        the exact two-sided value;
      * counts: the index of dispersion (variance / mean) of the issues counted in equal windows of the
        span (ARRIVALS_PER_WINDOW expected in each), 1 for a Poisson process; (windows - 1) x it is
        chi-square with windows - 1 degrees of freedom.

    What each catches: a rate off by over ~4 / sqrt(n) (rate), gaps of the wrong shape (gaps, counts:
    uniform gaps from about 500 queries), clumps (counts: a generator that stalls, then catches up).
    `passed` None: fewer than MIN_ARRIVALS queries, too few to tell.
    """

    queries: int
    qps: float
    rate: float
    rate_ci: Interval | None
    rate_p: float | None
    gaps_ks: float | None
    gaps_p: float | None
    dispersion: float | None
    dispersion_p: float | None
    windows: int

    @classmethod
    def of(cls, issued_s: Sequence[float], qps: float) -> "ArrivalCheck":
        issued = np.sort(np.asarray(issued_s, dtype=float))
        n = len(issued)
        span = float(issued[-1] - issued[0]) if n else 0.0
        if n < MIN_ARRIVALS:
            return cls(n, qps, (n - 1) / span if span > 0 else math.inf, None, None, None, None, None, None, 0)
        if span <= 0:   # every query at once
            return cls(n, qps, math.inf, None, 0.0, 1.0, 0.0, None, 0.0, 0)
        windows = max(2, n // ARRIVALS_PER_WINDOW)
        rate_ci, rate_p = _span_test(n - 1, span, qps)
        return cls(n, qps, (n - 1) / span, rate_ci, rate_p, *_exponential_ks(np.diff(issued), qps),
                   *_dispersion_test(np.histogram(issued, bins=windows, range=(issued[0], issued[-1]))[0]), windows)

    @property
    def passed(self) -> bool | None:
        if self.queries < MIN_ARRIVALS:
            return None
        return all(p is not None and p >= ARRIVALS_ALPHA / 3 for p in (self.rate_p, self.gaps_p, self.dispersion_p))

    def describe(self) -> str:
        """One line: the rate achieved against the intended one, each test's p-value, the verdict."""
        if self.passed is None:
            return f"{self.queries} queries: too few to test against the Poisson process (at least {MIN_ARRIVALS})"
        interval = "" if self.rate_ci is None else f" [{self.rate_ci.low:,.1f}, {self.rate_ci.high:,.1f}]"
        verdict = "Poisson" if self.passed else f"NOT Poisson at {ARRIVALS_ALPHA:g}"
        return (f"issued at {self.rate:,.1f}{interval} qps for {self.qps:g}; rate p {self.rate_p:.3g}, gaps KS "
                f"D {_number(self.gaps_ks)} p {self.gaps_p:.3g}, counts' dispersion {_number(self.dispersion)} p "
                f"{self.dispersion_p:.3g}: {verdict}")

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "rate_ci": None if self.rate_ci is None else self.rate_ci.to_json(),
                "passed": self.passed}


def _two_sided(cdf: float) -> float:
    return min(1.0, 2 * min(cdf, 1 - cdf))


def _span_test(gaps: int, span: float, qps: float) -> tuple[Interval, float]:
    """The rate's exact 95% interval and the p-value of `span`, a sum of `gaps` exponential gaps of mean 1/qps."""
    from scipy.special import gammaincinv, gdtr

    interval = Interval(float(gammaincinv(gaps, 0.025)) / span, float(gammaincinv(gaps, 0.975)) / span)
    return interval, _two_sided(float(gdtr(qps, gaps, span)))


def _exponential_ks(gaps: np.ndarray, qps: float) -> tuple[float, float]:
    """Kolmogorov-Smirnov's D of `gaps` against the exponential of mean 1/qps, and 2 x its exact one-sided p."""
    from scipy.special import smirnov

    m = len(gaps)
    cdf = np.sort(-np.expm1(-gaps * qps))
    steps = np.arange(1, m + 1) / m
    d = float(max(np.max(steps - cdf), np.max(cdf - (steps - 1 / m))))
    return d, min(1.0, 2 * float(smirnov(m, d)))


def _dispersion_test(counts: np.ndarray) -> tuple[float, float]:
    """The index of dispersion of Poisson counts (variance / mean) and its two-sided chi-square p-value."""
    from scipy.special import chdtr

    k = len(counts)
    dispersion = float(counts.var(ddof=1) / counts.mean())
    return dispersion, _two_sided(float(chdtr(k - 1, (k - 1) * dispersion)))


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def generator_delay_ms(timeline: Timeline, workers: int) -> np.ndarray:
    """The load generator's own delay of each query, in ms: issued late, then handed to a worker late."""
    late = timeline.column("issued") - timeline.column("intended")
    return (late + timeline.column("started") - worker_ready(timeline, workers)) * 1000


def time_split(timeline: Timeline, workers: int) -> dict[str, Summary]:
    """Where each query's time went (LoadRow's schedule_error, queueing, handoff, compute), in ms."""
    intended, issued, started, done = (timeline.column(c) for c in ("intended", "issued", "started", "done"))
    ready = worker_ready(timeline, workers)
    return {"schedule_error": Summary.of((issued - intended) * 1000), "queueing": Summary.of((ready - issued) * 1000),
            "handoff": Summary.of((started - ready) * 1000), "compute": Summary.of((done - started) * 1000)}


def latency_origin(scenario: str, timeline: Timeline) -> np.ndarray:
    """Where a query's latency starts: its scheduled time (server), the start (offline), its issue
    (single-/multi-stream, where LoadGen sets the scheduled time to the issue time)."""
    return timeline.column("issued" if scenario in CLOSED_LOOP else "intended")


def validity_duration(scenario: str, timeline: Timeline) -> float:
    """The duration LoadGen holds against the minimum (results.cc MinDurationMet)."""
    if scenario == OFFLINE:
        return float(max(timeline.done))
    return float(timeline.intended[-1] if scenario == SERVER else timeline.issued[-1])


def metric_name(scenario: str) -> str:
    return "samples/s" if scenario == OFFLINE else f"p{PERCENTILE[scenario] * 100:g} latency ms"


@dataclasses.dataclass(frozen=True)
class LoadRow:
    """One load test's result; all but `settings`, `timeline`, `overloaded`, `scheduled`, `peak` (and `resources`,
    what the process used during the test, recorded by bench/load.py; schema version 4) follows from them.

    metric: the scenario's result (p90/p99 latency in ms, or samples/s) with its 95% interval;
    valid / reasons: LoadGen's VALID/INVALID and why (each reason names its fix).
    Where a query's time went, in order (`time_split`; server: they add up to its latency):
    schedule_error, the generator issuing it late (actual - intended issue time); queueing, the system
    under test's queue: every worker busy (issue -> `worker_ready`); handoff, the generator again: its
    queue's wake-up, the GIL, a worker's own loop (`worker_ready` -> compute start); compute.
    arrivals (server): the issue times against the intended Poisson process (schema version 6).
    """

    settings: LoadSettings
    timeline: Timeline
    overloaded: bool
    scheduled: int | None           # server: the queries the schedule held (more than ran if overloaded)
    peak: bool
    queries: int
    samples: int
    duration_s: float
    samples_per_second: float
    samples_per_second_ci: Interval | None
    latency: Summary
    queueing: Summary
    compute: Summary
    schedule_error: Summary
    handoff: Summary
    arrivals: ArrivalCheck | None
    metric: str
    metric_value: float
    metric_ci: Interval | None
    early_stopping: EarlyStopping | None
    valid: bool
    reasons: tuple[str, ...]
    resources: Resources | None = None

    @classmethod
    def from_timeline(cls, settings: LoadSettings, timeline: Timeline, *, overloaded: bool = False,
                      scheduled: int | None = None, peak: bool = False,
                      resources: Resources | None = None) -> "LoadRow":
        """`overloaded`: the server run stopped issuing after len(timeline) of `scheduled` queries."""
        if len(timeline) == 0:
            raise ValueError("a load test needs at least one completed query")
        scenario, p = settings.scenario, settings.percentile
        origin = latency_origin(scenario, timeline)
        done = timeline.column("done")
        latencies = (done - origin) * 1000
        end = float(done.max())
        samples = len(timeline) * timeline.samples
        if scenario == OFFLINE:
            metric_value = samples / end
            metric_ci = stats.rate_interval(done, timeline.samples, end)
            early = None
        else:
            metric_value = rank_percentile(latencies, p)
            metric_ci = stats.percentile_interval(latencies, p)
            early = (server_early_stopping(latencies, settings.bound_ms, p) if scenario == SERVER
                     else early_stopping_estimate(latencies, p))
        duration = validity_duration(scenario, timeline)
        reasons = validity_reasons(settings, duration, count=samples if scenario == OFFLINE else len(timeline),
                                   metric_value=metric_value, early=early, measured=samples / end,
                                   overloaded=overloaded)
        if overloaded:
            limit = max_outstanding(settings.qps or 0.0, settings.bound_ms, settings.concurrency)
            reasons = [f"overloaded: stopped issuing after {len(timeline)} of {scheduled} scheduled queries, more "
                       f"than {limit} were outstanding (10x what the bound allows in flight at this QPS): "
                       "lower --qps or raise --concurrency", *reasons]
        return cls(settings=settings, timeline=timeline, overloaded=overloaded, scheduled=scheduled, peak=peak,
                   queries=len(timeline),
                   samples=samples, duration_s=duration, samples_per_second=samples / end,
                   samples_per_second_ci=(metric_ci if scenario == OFFLINE
                                          else stats.rate_interval(done, timeline.samples, end)),
                   latency=Summary.of(latencies), **time_split(timeline, settings.concurrency),
                   arrivals=ArrivalCheck.of(timeline.issued, settings.qps) if scenario == SERVER and settings.qps
                   else None, metric=metric_name(scenario), metric_value=metric_value, metric_ci=metric_ci,
                   early_stopping=early, valid=not reasons, reasons=tuple(reasons), resources=resources)

    def label(self) -> str:
        return self.settings.label()

    @property
    def higher_is_better(self) -> bool:
        return self.settings.scenario == OFFLINE

    @property
    def passes_bound(self) -> bool:
        """Find-peak's test (LoadGen's PerfConstraintsMet): p99 within the bound, and not overloaded."""
        return not self.overloaded and self.metric_value <= self.settings.bound_ms

    def latencies_ms(self) -> np.ndarray:
        return (self.timeline.column("done") - latency_origin(self.settings.scenario, self.timeline)) * 1000

    def window_rates(self) -> np.ndarray:
        """Samples/s in 10 equal time windows (the values `stats.rate_interval` works on)."""
        done = self.timeline.column("done")
        return stats.window_rates(done, self.timeline.samples, float(done.max()))

    def to_json(self) -> dict[str, Any]:
        """The inputs (settings, timeline, flags) and, for readers of the JSON, what follows from them."""
        def interval(value: Interval | None):
            return None if value is None else value.to_json()
        return {"settings": self.settings.to_json(), "peak": self.peak, "overloaded": self.overloaded,
                "scheduled": self.scheduled, "valid": self.valid, "reasons": list(self.reasons), "metric": self.metric,
                "metric_value": self.metric_value, "metric_ci95": interval(self.metric_ci),
                "queries": self.queries, "samples": self.samples, "duration_s": self.duration_s,
                "samples_per_second": self.samples_per_second,
                "samples_per_second_ci95": interval(self.samples_per_second_ci),
                "early_stopping": None if self.early_stopping is None else self.early_stopping.to_json(),
                **{name: dataclasses.asdict(getattr(self, name))
                   for name in ("latency", "queueing", "compute", "schedule_error", "handoff")},
                "arrivals": None if self.arrivals is None else self.arrivals.to_json(),
                "resources": None if self.resources is None else self.resources.to_json(),
                "timeline": self.timeline.to_json()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "LoadRow":
        """Re-derived from the recorded inputs, so a file always agrees with the rules that read it."""
        from bench.results import Resources
        from toolkit.runs import decode, decode_value

        if not isinstance(obj, dict):
            raise TypeError(f"a load row must be a JSON object, got {type(obj).__name__}")
        flags = {k: decode_value(hint, obj[k], f"load.{k}")
                 for k, hint in (("overloaded", bool), ("scheduled", int | None), ("peak", bool))}
        timeline = decode(Timeline, obj["timeline"], "load.timeline")
        if len({len(getattr(timeline, c)) for c in ("intended", "issued", "started", "done")}) != 1:
            raise ValueError("load.timeline's columns differ in length")
        return cls.from_timeline(decode(LoadSettings, obj["settings"], "load.settings"), timeline, **flags,
                                 resources=decode_value(Resources | None, obj.get("resources"), "load.resources"))


def validity_reasons(settings: LoadSettings, duration: float, *, count: int, metric_value: float,
                     early: EarlyStopping | None, measured: float, overloaded: bool = False) -> list[str]:
    """Why a run is INVALID (empty: VALID), each with its fix, after LoadGen's results.cc checks.

    `count`: queries (offline: samples); `measured`: the samples/s achieved, for offline's advice;
    `overloaded`: a server run cut short, whose duration and count are then no news.
    """
    reasons = []
    scenario = settings.scenario
    if scenario == SERVER and metric_value > settings.bound_ms:
        reasons.append(f"latency bound: p99 {metric_value:.3f} ms is over the {settings.bound_ms:g} ms bound: "
                       "lower --qps or raise --concurrency")
    if duration < settings.duration_s and not overloaded:
        fix = {OFFLINE: f"raise --expected-qps (this run measured {measured:,.1f} samples/s) so more samples "
                        "are generated",
               SERVER: "raise --min-duration",
               }.get(scenario, "raise --max-time or lower --min-duration")
        reasons.append(f"min duration: {duration:.2f} s of the {settings.duration_s:g} s minimum: {fix}")
    if count < settings.queries and not overloaded:
        what = "samples" if scenario == OFFLINE else "queries"
        reasons.append(f"min query count: {count} {what} of the {settings.queries} minimum: raise --min-duration")
    if early is not None and not early.met:
        reasons.append(early.message)
    return reasons


def headline_rows(rows: Sequence[LoadRow]) -> list[LoadRow]:
    """The rows a search is summed up by: its peak; without one, its lowest QPS (it failed even there)."""
    peaks = [r for r in rows if r.peak]
    if peaks or len(rows) < 2:
        return peaks or list(rows)
    return [min(rows, key=lambda r: r.settings.qps or 0.0)]


def stable(latencies_ms: stats.Series, p: float, percent: float) -> bool:
    """--until-stable for single-/multi-stream: the p-th percentile's interval within +-percent of it."""
    if len(latencies_ms) < 2:
        return False
    interval = stats.percentile_interval(latencies_ms, p)
    return interval.relative_half_width(rank_percentile(latencies_ms, p)) <= percent / 100


def peak_finished(lower: float, upper: float, tolerance: float, decimals: int = PEAK_DECIMALS) -> bool:
    """LoadGen's IsFinished (floor(l 10^d) + 1 >= floor(u 10^d)), or bounds within `tolerance` of each other."""
    scale = 10 ** decimals
    return math.floor(lower * scale) + 1 >= math.floor(upper * scale) or upper - lower <= tolerance * lower


def peak_floor(settings: LoadSettings) -> float:
    """The lowest QPS a failing start is halved to: below it, the minimum query count alone would make a
    point last over PEAK_LONGEST x the minimum duration (100 queries at 0.3 qps: over 5 minutes)."""
    return settings.queries / (PEAK_LONGEST * settings.duration_s) if settings.duration_s > 0 else 0.0


def bound_unreachable(row: LoadRow) -> bool:
    """No QPS can meet the bound: the compute time alone, a part of every latency, is over it at p99."""
    return row.compute.p99 > row.settings.bound_ms


def next_peak_qps(points: Sequence[tuple[float, bool]], start: float, tolerance: float,
                  floor: float = 0.0) -> float | None:
    """The next QPS for --find-peak to try, given the (qps, passed) points so far; None: done.

    LoadGen's search: widen the upper bound by doubling until a point fails, then bisect between
    the highest passing QPS and the lowest failing one above it. A failing start is halved (at
    most PEAK_HALVINGS times, and not below `floor`) until a QPS passes.
    """
    if not points:
        return start
    passing = [q for q, ok in points if ok]
    if not passing:
        lowest = min(q for q, _ in points)
        return lowest / 2 if len(points) <= PEAK_HALVINGS and lowest / 2 >= floor else None
    lower = max(passing)
    failing = [q for q, ok in points if not ok and q > lower]
    if not failing:
        return lower * 2
    upper = min(failing)
    return None if peak_finished(lower, upper, tolerance) else lower + (upper - lower) / 2


@dataclasses.dataclass(frozen=True)
class PeakCheck:
    """A --find-peak search re-checked (bench/load.py recheck_peak): `found`, its highest passing QPS;
    `upper`, the lowest failing QPS above it (the search's resolution; None: none failed above it);
    `rechecks`, (qps, passed) of each test run again, from `found` down. The peak is the first that passed."""

    found: float
    upper: float | None
    rechecks: tuple[tuple[float, bool], ...]

    @property
    def confirmed(self) -> float | None:
        return next((qps for qps, passed in self.rechecks if passed), None)

    def describe(self) -> str:
        tried = ", ".join(f"{qps:g} qps {'passed' if ok else 'failed'}" for qps, ok in self.rechecks)
        resolution = ("" if self.upper is None else
                      f"; the search's resolution: {self.found:g} passed, {self.upper:g} failed "
                      f"({self.upper / self.found - 1:.1%} apart)")
        if self.confirmed is None:
            return (f"find-peak: unconfirmed: {self.found:g} qps passed once, every re-check failed ({tried}): no "
                    f"QPS passed twice; lengthen the tests (--min-duration) or lower --qps{resolution}")
        return f"find-peak: peak {self.confirmed:g} qps, passed in the search and again ({tried}){resolution}"

    def to_json(self) -> dict[str, Any]:
        return {"found": self.found, "upper": self.upper, "rechecks": [list(r) for r in self.rechecks],
                "confirmed": self.confirmed}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "PeakCheck":
        """`confirmed` is re-derived from the re-checks."""
        upper = obj["upper"]
        return cls(float(obj["found"]), None if upper is None else float(upper),
                   tuple((float(qps), bool(passed)) for qps, passed in obj["rechecks"]))
