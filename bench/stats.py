"""Statistics bench can stand behind: confidence intervals, comparisons with a verdict, instability warnings.

Pure functions of measured values (numpy arrays in, numbers and small dataclasses out); every
interval is a 95% confidence interval unless said otherwise, and each says what it assumes:

  * `mean_interval`: Student's t interval of the mean of independent values.
  * `batch_means_interval`: the mean of a series whose neighbours are correlated (run times on a
    shared machine come in slow and fast stretches): the series is cut into 10 consecutive
    batches and the t interval is taken over the batch means (the batch-means method of
    simulation output analysis). `throughput_interval` inverts it for samples/s.
  * `rate_interval`: a completion rate (samples/s of an open or parallel load), from the
    completions counted in 10 equal time windows.
  * `percentile_interval`: distribution-free interval of a population quantile from order
    statistics: ranks l < u with P(X(l) <= q_p < X(u)) >= 95% under Binomial(n, p); one side
    is None (unbounded) when n is too small to bound it (e.g. p99 from fewer than ~300 runs).
  * `bootstrap_ratio`: the ratio of a statistic (a mean, a percentile) between two independent
    runs, percentile interval of a moving-block bootstrap (blocks of n^(1/3) consecutive values
    keep the runs' short-range correlation), 2,000 resamples, seeded: the same input always
    gives the same interval.
  * `paired_ratio`: the ratio between two engines measured in interleaved rounds: Student's t
    on the per-round log ratios (load that changes between rounds hits both engines of a round
    alike and cancels).
  * `verdict`: "faster", "slower" or "no significant difference": whether the ratio's interval
    excludes 1.

    from bench import stats
    stats.throughput_interval(times_s, samples_per_run=32)      # Interval(low, high) in samples/s
    stats.percentile_interval(latencies_ms, 0.99)               # Interval(low, None): too few runs
    ratio, interval = stats.bootstrap_ratio(base_ms, new_ms, stats.mean)
    stats.verdict(interval, higher_is_better=False)             # "slower"

scipy.special is imported where a t or binomial quantile is needed (it loads in a third of a
second; scipy.stats takes longer).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

CONFIDENCE = 0.95
BATCHES = 10          # batch means / time windows: 10 is the textbook choice (enough degrees of freedom
                      # for t, batches long enough that neighbouring batches are nearly independent)
RESAMPLES = 2000
# Per-run coefficient of variation above which a warning is printed. trtexec warns above 1% for GPU
# compute time; CPU run times on a machine shared with other jobs routinely vary by a few percent,
# so 1% would fire on every run here and mean nothing.
CV_WARNING = 0.10

FASTER, SLOWER, SAME = "faster", "slower", "no significant difference"

Statistic = Callable[[np.ndarray], np.ndarray]  # (resamples, n) -> (resamples,)


@dataclasses.dataclass(frozen=True)
class Interval:
    """A confidence interval; a side is None where the data cannot bound it."""

    low: float | None
    high: float | None

    def to_json(self) -> list[float | None]:
        return [self.low, self.high]

    @classmethod
    def from_json(cls, obj: Sequence[float | None] | None) -> "Interval | None":
        return None if obj is None else cls(obj[0], obj[1])

    def contains(self, value: float) -> bool:
        return (self.low is None or self.low <= value) and (self.high is None or value <= self.high)

    def relative_half_width(self, estimate: float) -> float:
        """The larger distance from the estimate to a bound, over the estimate: inf if unbounded."""
        if self.low is None or self.high is None or estimate == 0:
            return math.inf
        return max(estimate - self.low, self.high - estimate) / abs(estimate)

    def inverted(self, numerator: float = 1.0) -> "Interval":
        """The interval of numerator / x (x > 0): a time's interval as a rate's."""
        return Interval(None if self.high is None else numerator / self.high,
                        None if self.low is None or self.low <= 0 else numerator / self.low)


def _t_quantile(df: int, confidence: float) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.5 + confidence / 2))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """mean -+ t(1 - alpha/2, n-1) * s / sqrt(n); None for fewer than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None
    mean = float(values.mean())
    half = _t_quantile(len(values) - 1, confidence) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return Interval(mean - half, mean + half)


def batch_means_interval(series: Sequence[float], batches: int = BATCHES,
                         confidence: float = CONFIDENCE) -> Interval | None:
    """Interval of the mean of a correlated series: t over the means of consecutive batches, centred on
    the overall mean. Fewer than 2 values per batch: fewer batches; under 4 values: None."""
    series = np.asarray(series, dtype=float)
    batches = min(batches, len(series) // 2)
    if batches < 2:
        return None
    means = np.array([chunk.mean() for chunk in np.array_split(series, batches)])
    half = _t_quantile(batches - 1, confidence) * float(means.std(ddof=1)) / math.sqrt(batches)
    mean = float(series.mean())
    return Interval(mean - half, mean + half)


def throughput_interval(times_s: Sequence[float], samples_per_run: int,
                        confidence: float = CONFIDENCE) -> Interval | None:
    """samples/s of a closed loop (samples_per_run / mean run time): the mean time's interval, inverted."""
    interval = batch_means_interval(times_s, confidence=confidence)
    return None if interval is None else interval.inverted(samples_per_run)


def window_rates(done_s: Sequence[float], samples_each: int, end_s: float, windows: int = BATCHES) -> np.ndarray:
    """Samples/s completed in each of `windows` equal time windows over [0, end_s]."""
    counts, _ = np.histogram(np.asarray(done_s, dtype=float), bins=windows, range=(0.0, end_s))
    return counts * samples_each / (end_s / windows)


def rate_interval(done_s: Sequence[float], samples_each: int, end_s: float, windows: int = BATCHES,
                  confidence: float = CONFIDENCE) -> Interval | None:
    """Samples/s completed over [0, end_s]: t interval of the rates in equal time windows.

    For loads where several queries are in flight (offline, server), whose per-query times do not
    add up to the wall time. Fewer than 2 completions per window: fewer windows; under 4: None.
    """
    windows = min(windows, len(done_s) // 2)
    if windows < 2 or end_s <= 0:
        return None
    return mean_interval(window_rates(done_s, samples_each, end_s, windows), confidence)


def order_statistic_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int | None, int | None]:
    """1-based ranks (l, u) with P(X(l) <= q-quantile < X(u)) >= confidence for any continuous distribution.

    With B(k) = P(Binomial(n, q) <= k): l is the largest rank with B(l-1) <= alpha/2, u the smallest
    with B(u-1) >= 1 - alpha/2; the coverage is B(u-1) - B(l-1) >= confidence. None where no rank
    of n qualifies (the interval is open on that side).
    """
    from scipy.special import bdtr

    alpha = 1 - confidence
    cdf = bdtr(np.arange(n), n, q)          # cdf[k] = B(k), k = 0..n-1
    below = np.flatnonzero(cdf <= alpha / 2)
    above = np.flatnonzero(cdf >= 1 - alpha / 2)
    low = int(below[-1]) + 1 if len(below) else None      # B(l-1) <= alpha/2  ->  l = k + 1
    high = int(above[0]) + 1 if len(above) else None
    return low, high


def percentile_interval(values: Sequence[float], q: float, confidence: float = CONFIDENCE) -> Interval:
    """Interval of the population's q-quantile (0 < q < 1) from the order statistics of `values`."""
    ordered = np.sort(np.asarray(values, dtype=float))
    low, high = order_statistic_ranks(len(ordered), q, confidence)
    return Interval(None if low is None else float(ordered[low - 1]),
                    None if high is None else float(ordered[high - 1]))


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation over the mean; 0 for fewer than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or values.mean() == 0:
        return 0.0
    return float(values.std(ddof=1) / values.mean())


def mean(resampled: np.ndarray) -> np.ndarray:
    return resampled.mean(axis=1)


def quantile(q: float) -> Statistic:
    """The q-quantile of each resample, interpolated linearly as `results.percentile` does."""
    return lambda resampled: np.quantile(resampled, q, axis=1)


def rank_quantile(q: float) -> Statistic:
    """The q-quantile as MLPerf LoadGen takes it: sorted[int(n * q)] (loadgen/results.cc)."""
    def statistic(resampled: np.ndarray) -> np.ndarray:
        index = int(resampled.shape[1] * q)
        return np.partition(resampled, index, axis=1)[:, index]
    return statistic


def _block_resamples(values: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` moving-block bootstrap resamples of `values`, each as long as `values`."""
    n = len(values)
    length = max(1, round(n ** (1 / 3)))
    blocks = -(-n // length)
    starts = rng.integers(0, n - length + 1, size=(count, blocks))
    return values[(starts[:, :, None] + np.arange(length)).reshape(count, -1)[:, :n]]


def bootstrap_ratio(base: Sequence[float], new: Sequence[float], statistic: Statistic, *,
                    resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                    seed: int = 0) -> tuple[float, Interval]:
    """statistic(new) / statistic(base) and its percentile-bootstrap interval (independent runs)."""
    base, new = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    if len(base) < 2 or len(new) < 2:
        raise ValueError("a bootstrap needs at least two values on each side")
    rng = np.random.default_rng(seed)
    estimate = float(statistic(new[None])[0] / statistic(base[None])[0])
    ratios = []
    # Chunks of resamples bound the memory: (chunk x n) values at a time.
    chunk = max(1, min(resamples, 4_000_000 // max(len(base), len(new))))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        ratios.append(statistic(_block_resamples(new, size, rng)) / statistic(_block_resamples(base, size, rng)))
    alpha = 1 - confidence
    low, high = np.quantile(np.concatenate(ratios), [alpha / 2, 1 - alpha / 2])
    return estimate, Interval(float(low), float(high))


def paired_ratio(base: Sequence[float], new: Sequence[float],
                 confidence: float = CONFIDENCE) -> tuple[float, Interval]:
    """Geometric mean of new[r] / base[r] over rounds r, with the t interval of the mean log ratio."""
    logs = np.log(np.asarray(new, dtype=float) / np.asarray(base, dtype=float))
    interval = mean_interval(logs, confidence)
    if interval is None:
        raise ValueError("a paired comparison needs at least two rounds")
    return float(np.exp(logs.mean())), Interval(math.exp(interval.low), math.exp(interval.high))


def verdict(ratio: Interval, higher_is_better: bool) -> str:
    """Better, worse, or not distinguishable: where the ratio's interval lies relative to 1."""
    if ratio.low is not None and ratio.low > 1:
        return FASTER if higher_is_better else SLOWER
    if ratio.high is not None and ratio.high < 1:
        return SLOWER if higher_is_better else FASTER
    return SAME


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One pair: a metric of `row` against the same metric of `baseline`, with a verdict.

    `ratio` = row's value / baseline's (for samples/s above 1 is faster, for a latency below 1 is);
    `interval` its 95% confidence interval; `test` how that was computed. `check` holds `bench
    check`'s decision: the slowdown allowed and whether it was exceeded significantly.
    """

    row: str
    baseline: str
    metric: str
    higher_is_better: bool
    base_value: float
    value: float
    ratio: float
    interval: Interval | None
    verdict: str
    test: str
    allowed_slowdown: float | None = None
    regression: bool | None = None

    def slowdown(self) -> tuple[float, Interval | None]:
        """How much slower the row is, as a factor of time (1.10 = 10% slower), and its interval."""
        if not self.higher_is_better:
            return self.ratio, self.interval
        return 1 / self.ratio, None if self.interval is None else self.interval.inverted()

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["interval"] = None if self.interval is None else self.interval.to_json()
        return doc

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Comparison":
        return cls(**{**obj, "interval": Interval.from_json(obj["interval"])})


def variation_warning(what: str, cv: float, *, load_average: float | None, cpus: int,
                      first_half_mean: float, second_half_mean: float) -> str | None:
    """trtexec's instability warning, for CPU runs: the coefficient of variation, the likely cause, the fix.

    Causes, most specific first: a machine with more runnable processes than CPUs (load average
    above the usable CPUs) takes time slices from the benchmark; a run whose second half is more
    than 10% faster or slower than its first half drifted (warm-up too short, or the clock changed:
    frequency scaling, thermal limits); otherwise scattered slow runs (preemptions, interrupts).
    """
    if cv <= CV_WARNING:
        return None
    head = f"{what}: run times vary a lot (coefficient of variation {cv:.1%}, above {CV_WARNING:.0%})"
    if load_average is not None and load_average > cpus:
        return (f"{head}: likely cause: the machine is busy (load average {load_average:.1f} on {cpus} usable "
                "CPUs), other processes take CPU time from the benchmark; fix: run on an idle machine, or "
                "measure until the interval is narrow with --until-stable 2")
    drift = second_half_mean / first_half_mean - 1 if first_half_mean > 0 else 0.0
    if abs(drift) > 0.10:
        return (f"{head}: likely cause: the runs drifted ({drift:+.0%} from the first half to the second): "
                "warm-up too short, or the CPU clock changed; fix: more --warmup runs, a fixed CPU frequency "
                "governor (cpupower frequency-set -g performance)")
    return (f"{head}: likely cause: scattered slow runs (preemption by other processes, interrupts); fix: "
            "pin the benchmark to idle CPUs (taskset), or measure longer with --until-stable 2")


def series_variation_warning(what: str, series: Sequence[float], *, load_average: float | None,
                             cpus: int) -> str | None:
    """`variation_warning` for a series of run times, in the order they ran."""
    series = np.asarray(series, dtype=float)
    half = len(series) // 2
    if half < 1:
        return None
    return variation_warning(what, coefficient_of_variation(series), load_average=load_average, cpus=cpus,
                             first_half_mean=float(series[:half].mean()), second_half_mean=float(series[half:].mean()))
