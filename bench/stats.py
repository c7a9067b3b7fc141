"""Statistics bench can stand behind: confidence intervals, comparisons with a verdict, instability warnings.

Pure functions of measured values (numpy arrays in, numbers and small dataclasses out); every
interval is a 95% confidence interval. Run times on a shared machine are not independent (they
come in slow and fast stretches; a queue's latencies follow each other), so every interval of a
series assumes only that the series is stationary, and cuts it into batches whose length comes from
its estimated autocorrelation time (`chosen_batches`). Each function says what it assumes and the
smallest n it is used for; `python -m bench.calibration` measures every one against known truth
(README: statistics).

  * `mean_interval`: Student's t interval of the mean of independent values (n >= 2: rounds,
    runs, batch means).
  * `batch_means_interval`: the mean of a correlated series: t over the means of at most 10
    consecutive batches, fewer and longer where the series is correlated (n >= 4).
    `throughput_interval` inverts it for samples/s; `rate_interval` is t over the completions
    in 10 equal time windows.
  * `percentile_interval`: the population's q-quantile: order statistics whose ranks are widened
    for dependence. The count of values below the quantile has variance n x the long-run variance of
    the indicator "value <= quantile", estimated by batch means of that indicator; the ranks are
    n q -+ t(b-1) x its square root, never narrower than the exact binomial ranks of independent values
    (`order_statistic_ranks`). A side is None where no rank of n qualifies (p99 from a few hundred
    correlated latencies has no upper bound).
  * `mean_ratio`, `quantile_ratio`: the ratio between two separately measured series, within-run only
    (t on batch means with Welch's degrees of freedom; the quantiles' log intervals combined). They
    cannot see what changes between runs, so `bench check` gives no verdict from them.
  * `runs_ratio`: between runs: Welch's t on the log of one value per run (each side's runs in
    their own processes, >= 2 a side), with an optional resolution (a peak search's step) added as
    a uniform error.
  * `paired_ratio`: engines measured in interleaved rounds (mirrored order within each round, so a
    linear drift cancels): Student's t on the per-round log ratios (n >= 2 rounds).
  * `verdict`: "faster", "slower" or "no significant difference": whether the ratio's interval
    excludes 1.

    from bench import stats
    stats.throughput_interval(times_s, samples_per_run=32)      # Interval(low, high) in samples/s
    stats.percentile_interval(latencies_ms, 0.99)               # Interval(low, None): too few runs
    ratio, interval = stats.runs_ratio(base_rates, new_rates)   # one value per run, >= 2 runs a side
    stats.verdict(interval, higher_is_better=True)              # "slower"

scipy.special is imported where a t or binomial quantile is needed (it loads in a third of a
second; scipy.stats takes longer).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

Series = Sequence[float] | np.ndarray   # measurements, as a list or an array

CONFIDENCE = 0.95
BATCHES = 10          # batch means / time windows: 10 is the textbook choice (enough degrees of freedom
                      # for t, batches long enough that neighbouring batches are nearly independent)
# Per-run coefficient of variation above which a warning is printed. trtexec warns above 1% for GPU
# compute time; CPU run times on a machine shared with other jobs routinely vary by a few percent,
# so 1% would fire on every run here and mean nothing.
CV_WARNING = 0.10

FASTER, SLOWER, SAME = "faster", "slower", "no significant difference"
NO_VERDICT = "no verdict (one run a side)"


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

    @classmethod
    def of(cls, low: float | np.ndarray, high: float | np.ndarray) -> "Interval":
        """From numbers where NaN (or an infinite bound) means unbounded, as the array functions give them."""
        return cls(float(low) if np.isfinite(low) else None, float(high) if np.isfinite(high) else None)

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


def t_quantile(df: Any, confidence: float = CONFIDENCE) -> Any:
    """The two-sided t quantile for `df` degrees of freedom (an array gives an array)."""
    from scipy.special import stdtrit

    return stdtrit(df, 0.5 + confidence / 2)


def mean_interval(values: Series, confidence: float = CONFIDENCE) -> Interval | None:
    """mean -+ t(1 - alpha/2, n-1) * s / sqrt(n) of independent values; None for fewer than two."""
    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return None
    mean = float(array.mean())
    half = float(t_quantile(len(array) - 1, confidence)) * float(array.std(ddof=1)) / math.sqrt(len(array))
    return Interval(mean - half, mean + half)


def batch_means(values: np.ndarray, batches: int) -> np.ndarray:
    """Means of `batches` consecutive, near-equal batches along the last axis (the first ones one shorter)."""
    n = values.shape[-1]
    edges = (np.arange(batches + 1) * n) // batches
    sums = np.concatenate([np.zeros(values.shape[:-1] + (1,)), np.cumsum(values, axis=-1)], axis=-1)
    return np.diff(sums[..., edges], axis=-1) / np.diff(edges)


# A batch is at least this many times (tau - 1) long, tau the estimated autocorrelation time, so that batch
# means are nearly independent. Far more than the bias of batch means alone asks for: from 1,000 values tau
# is underestimated where correlation lasts long (M/M/1 at load 0.8: median 27 against 68; AR(1) phi 0.9:
# 15 against 19), and a series that looks less correlated than it is gets too many batches. 60 keeps every
# interval's coverage in bench/calibration.py; independent values (tau about 1) keep 10 batches.
TAUS_PER_BATCH = 60
# Sokal's window: the autocorrelations are summed up to the first lag M with M >= WINDOW x tau(M).
WINDOW = 6


def batch_count(n: int, batches: int = BATCHES) -> int:
    """Batches of at least 2 values each; fewer than 2 batches (n < 4): no interval."""
    return min(batches, n // 2)


def autocorrelation_time(values: np.ndarray) -> np.ndarray:
    """The integrated autocorrelation time tau = 1 + 2 sum(rho_k) of each series along the last axis, summed
    over Sokal's window (up to the first lag M >= 6 tau(M)); at least 1. tau is how many consecutive values
    count as one independent value: an AR(1) with phi has (1 + phi) / (1 - phi)."""
    n = values.shape[-1]
    centred = values - values.mean(axis=-1, keepdims=True)
    spectrum = np.fft.rfft(centred, 2 * n, axis=-1)
    covariance = np.fft.irfft(spectrum * np.conj(spectrum), axis=-1)[..., :n]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.nan_to_num(covariance / covariance[..., :1])   # a constant series: no correlation
    taus = 2 * np.cumsum(rho, axis=-1) - 1                      # tau(M) = 1 + 2 (rho_1 + ... + rho_M)
    window = np.argmax(np.arange(n) >= WINDOW * taus, axis=-1)
    return np.maximum(1.0, np.take_along_axis(taus, window[..., None], axis=-1)[..., 0])


def chosen_batches(values: np.ndarray, batches: int = BATCHES) -> np.ndarray:
    """Batches for each series along the last axis, chosen from the data: at most `batches`, each at least
    TAUS_PER_BATCH x (tau - 1) values long, at least 2 (a strongly correlated series gets few long
    batches, and t with few degrees of freedom widens its interval accordingly)."""
    n = values.shape[-1]
    length = np.maximum(2, np.ceil(TAUS_PER_BATCH * (autocorrelation_time(values) - 1)))
    return np.clip(n // length, 2, batch_count(n, batches)).astype(int)


def _by_batches(values: np.ndarray, batches: int,
                function: Callable[[np.ndarray, int], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """`function(rows, b)` -> a tuple of per-row arrays, applied to the series grouped by their chosen batch count."""
    n = values.shape[-1]
    if batch_count(n, batches) < 2:
        raise ValueError("an interval of a series needs at least 4 values")
    flat = values.reshape(-1, n)
    counts = chosen_batches(flat, batches)
    found: list[np.ndarray] = []
    for b in np.unique(counts):
        rows = counts == b
        for index, part in enumerate(function(flat[rows], int(b))):
            if len(found) <= index:
                found.append(np.empty(len(flat)))
            found[index][rows] = part
    return tuple(part.reshape(values.shape[:-1]) for part in found)


def mean_bounds(values: np.ndarray, batches: int = BATCHES,
                confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the mean of each series along the last axis: t over batch means, centred on the
    overall mean, the batches chosen from the data (`chosen_batches`). Assumes a stationary series;
    n >= 4 (t's few degrees of freedom make it wide below 20)."""
    def bounds(rows: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
        half = t_quantile(b - 1, confidence) * batch_means(rows, b).std(ddof=1, axis=-1) / math.sqrt(b)
        centre = rows.mean(axis=-1)
        return centre - half, centre + half
    low, high = _by_batches(values, batches, bounds)
    return low, high


def batch_means_interval(series: Series, batches: int = BATCHES,
                         confidence: float = CONFIDENCE) -> Interval | None:
    """Interval of the mean of a correlated series (`mean_bounds`); None under 4 values."""
    array = np.asarray(series, dtype=float)
    if batch_count(len(array), batches) < 2:
        return None
    low, high = mean_bounds(array, batches, confidence)
    return Interval(float(low), float(high))


def throughput_interval(times_s: Series, samples_per_run: int,
                        confidence: float = CONFIDENCE) -> Interval | None:
    """samples/s of a closed loop (samples_per_run / mean run time): the mean time's interval, inverted."""
    interval = batch_means_interval(times_s, confidence=confidence)
    return None if interval is None else interval.inverted(samples_per_run)


def window_rates(done_s: Series, samples_each: int, end_s: float, windows: int = BATCHES) -> np.ndarray:
    """Samples/s completed in each of `windows` equal time windows over [0, end_s]."""
    counts, _ = np.histogram(np.asarray(done_s, dtype=float), bins=windows, range=(0.0, end_s))
    return counts * samples_each / (end_s / windows)


def rate_interval(done_s: Series, samples_each: int, end_s: float, windows: int = BATCHES,
                  confidence: float = CONFIDENCE) -> Interval | None:
    """Samples/s completed over [0, end_s]: t interval of the rates in equal time windows.

    For loads where several queries are in flight (offline, server), whose per-query times do not
    add up to the wall time. Assumes the windows' rates are nearly independent (each window much
    longer than a query). Fewer than 2 completions per window: fewer windows; under 4: None.
    """
    windows = min(windows, len(done_s) // 2)
    if windows < 2 or end_s <= 0:
        return None
    return mean_interval(window_rates(done_s, samples_each, end_s, windows), confidence)


def order_statistic_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int | None, int | None]:
    """1-based ranks (l, u) with P(X(l) <= q-quantile < X(u)) >= confidence for independent values.

    With B(k) = P(Binomial(n, q) <= k): l is the largest rank with B(l-1) <= alpha/2, u the smallest
    with B(u-1) >= 1 - alpha/2; the coverage is B(u-1) - B(l-1) >= confidence. None where no rank
    of n qualifies (the interval is open on that side). Alone, this holds only for independent
    values: on correlated ones it is far too narrow (`percentile_interval` widens it).
    """
    from scipy.special import bdtr

    alpha = 1 - confidence
    cdf = bdtr(np.arange(n), n, q)          # cdf[k] = B(k), k = 0..n-1
    below = np.flatnonzero(cdf <= alpha / 2)
    above = np.flatnonzero(cdf >= 1 - alpha / 2)
    low = int(below[-1]) + 1 if len(below) else None      # B(l-1) <= alpha/2  ->  l = k + 1
    high = int(above[0]) + 1 if len(above) else None
    return low, high


def _at_ranks(ordered: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The values at 1-based ranks of each sorted row; NaN where a rank falls outside 1..n."""
    n = ordered.shape[-1]
    def pick(ranks: np.ndarray) -> np.ndarray:
        inside = (ranks >= 1) & (ranks <= n)
        index = np.clip(ranks, 1, n).astype(int) - 1
        return np.where(inside, np.take_along_axis(ordered, index[..., None], axis=-1)[..., 0], np.nan)
    return pick(low), pick(high)


def iid_quantile_bounds(values: np.ndarray, q: float,
                        confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the q-quantile from `order_statistic_ranks`: independent values only."""
    n = values.shape[-1]
    low, high = order_statistic_ranks(n, q, confidence)
    ordered = np.sort(values, axis=-1)
    shape = values.shape[:-1]
    return _at_ranks(ordered, np.full(shape, 0 if low is None else low),
                     np.full(shape, n + 1 if high is None else high))


def quantile_bounds(values: np.ndarray, q: float, batches: int = BATCHES,
                    confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the q-quantile of each series along the last axis, NaN where unbounded.

    Assumes a stationary series; n >= 4 (below about 20, t's few degrees of freedom open it). The
    count of values <= the quantile has mean n q and variance n s2, s2 the long-run variance of that
    indicator, estimated from its batch means (batches chosen from the values, `chosen_batches`;
    s2 at least q(1-q), its value for independent values); the ranks are n q -+ t(b-1) sqrt(n s2),
    widened to the exact binomial ranks of independent values where those are wider.
    """
    n = values.shape[-1]
    if batch_count(n, batches) < 2:
        return np.full(values.shape[:-1], np.nan), np.full(values.shape[:-1], np.nan)
    iid_low, iid_high = order_statistic_ranks(n, q, confidence)

    def bounds(rows: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
        ordered = np.sort(rows, axis=-1)
        estimate = ordered[..., max(0, math.ceil(n * q) - 1)]
        below = (rows <= estimate[..., None]).astype(float)
        long_run = np.maximum(n / b * batch_means(below, b).var(ddof=1, axis=-1), q * (1 - q))
        spread = t_quantile(b - 1, confidence) * np.sqrt(n * long_run)
        low = np.minimum(np.floor(n * q - spread), 0 if iid_low is None else iid_low)
        high = np.maximum(np.ceil(n * q + spread) + 1, n + 1 if iid_high is None else iid_high)
        return _at_ranks(ordered, low, high)
    low, high = _by_batches(values, batches, bounds)
    return low, high


def percentile_interval(values: Series, q: float, confidence: float = CONFIDENCE) -> Interval:
    """Interval of the population's q-quantile (0 < q < 1) of a series, in the order it was measured
    (`quantile_bounds`)."""
    low, high = quantile_bounds(np.asarray(values, dtype=float), q, confidence=confidence)
    return Interval.of(low, high)


def _welch(log_ratio: Any, var_new: Any, df_new: Any, var_base: Any, df_base: Any,
           confidence: float) -> tuple[Any, Any]:
    """exp(log_ratio -+ t(df) sqrt(var_new + var_base)), df from Welch-Satterthwaite."""
    total = var_new + var_base
    with np.errstate(divide="ignore", invalid="ignore"):
        df = total ** 2 / (var_new ** 2 / df_new + var_base ** 2 / df_base)
    half = t_quantile(np.where(np.isfinite(df) & (df > 0), df, 1e9), confidence) * np.sqrt(total)
    return np.exp(log_ratio - half), np.exp(log_ratio + half)


def mean_ratio_bounds(base: np.ndarray, new: np.ndarray, batches: int = BATCHES,
                      confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ratio, low, high) of mean(new) / mean(base), two independent series along the last axis.

    Each side is cut into batches (`chosen_batches`); the log ratio's variance is each side's
    s2 / (b mean2) (the delta method on its batch means), the t quantile takes Welch's degrees of
    freedom. Assumes what `mean_bounds` does; n >= 4 a side (10 window rates: at most 5 batches of 2).
    """
    def log_mean(rows: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centre = rows.mean(axis=-1)
        variance = batch_means(rows, b).var(ddof=1, axis=-1) / (b * centre ** 2)
        return np.log(centre), variance, np.full(len(rows), b - 1.0)
    parts = [_by_batches(values, batches, log_mean) for values in (new, base)]
    (log_new, var_new, df_new), (log_base, var_base, df_base) = parts
    low, high = _welch(log_new - log_base, var_new, df_new, var_base, df_base, confidence)
    return np.exp(log_new - log_base), low, high


def mean_ratio(base: Series, new: Series, confidence: float = CONFIDENCE) -> tuple[float, Interval]:
    """mean(new) / mean(base) of two separately measured series, and its within-run interval (`mean_ratio_bounds`)."""
    ratio, low, high = mean_ratio_bounds(np.asarray(base, dtype=float), np.asarray(new, dtype=float),
                                         confidence=confidence)
    return float(ratio), Interval.of(low, high)


def quantile_ratio(base: Series, new: Series, q: float,
                   confidence: float = CONFIDENCE) -> tuple[float, Interval]:
    """rank quantile(new) / rank quantile(base) of two separately measured series (LoadGen's sorted[int(n q)]),
    within-run only: each side's `percentile_interval` read as a normal interval of the log quantile,
    the two variances added. Unbounded (None, None) where either side's interval is."""
    def rank_quantile(values: Series) -> float:
        return float(np.sort(values)[int(len(values) * q)])
    estimate = rank_quantile(new) / rank_quantile(base)
    z = float(t_quantile(1e9, confidence))
    variances = []
    for values in (base, new):
        interval = percentile_interval(values, q, confidence)
        if interval.low is None or interval.high is None or interval.low <= 0:
            return estimate, Interval(None, None)
        variances.append(((math.log(interval.high) - math.log(interval.low)) / (2 * z)) ** 2)
    half = z * math.sqrt(sum(variances))
    return estimate, Interval(estimate * math.exp(-half), estimate * math.exp(half))


def runs_ratio_bounds(base: np.ndarray, new: np.ndarray, resolution: float = 0.0,
                      confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ratio, low, high) of the geometric means of one value per run, runs along the last axis.

    Assumes the runs of each side are independent (each its own process) and their logs roughly
    normal; >= 2 runs a side. `resolution`: each value is only known to within that fraction (a peak
    search's step): a uniform error of that width, variance log(1 + resolution)^2 / 12, is added to
    each run's, so runs that happen to agree exactly do not make a difference look certain.
    """
    parts = []
    for values in (new, base):
        k = values.shape[-1]
        if k < 2:
            raise ValueError("a between-run comparison needs at least two runs on each side")
        logs = np.log(values)
        parts.append((logs.mean(axis=-1), (logs.var(ddof=1, axis=-1) + math.log1p(resolution) ** 2 / 12) / k, k - 1))
    (log_new, var_new, df_new), (log_base, var_base, df_base) = parts
    low, high = _welch(log_new - log_base, var_new, df_new, var_base, df_base, confidence)
    return np.exp(log_new - log_base), low, high


def runs_ratio(base: Series, new: Series, resolution: float = 0.0,
               confidence: float = CONFIDENCE) -> tuple[float, Interval]:
    """new / base from repeated runs, one value per run (`runs_ratio_bounds`)."""
    ratio, low, high = runs_ratio_bounds(np.asarray(base, dtype=float), np.asarray(new, dtype=float), resolution,
                                         confidence)
    return float(ratio), Interval(float(low), float(high))


def geometric_mean(values: Series) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(values, dtype=float)))))


def coefficient_of_variation(values: Series) -> float:
    """Sample standard deviation over the mean; 0 for fewer than two values."""
    array = np.asarray(values, dtype=float)
    if len(array) < 2 or array.mean() == 0:
        return 0.0
    return float(array.std(ddof=1) / array.mean())



def paired_ratio_bounds(base: np.ndarray, new: np.ndarray,
                        confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ratio, low, high): the geometric mean of new[r] / base[r] over rounds r (the last axis) and the t
    interval of the mean log ratio. Assumes the rounds' log ratios independent: load that changes between
    rounds hits both sides of a round and cancels, and a drift within a round cancels when each round
    measures the sides in mirrored order (A B B A); n >= 2 rounds."""
    logs = np.log(new / base)
    rounds = logs.shape[-1]
    if rounds < 2:
        raise ValueError("a paired comparison needs at least two rounds")
    centre = logs.mean(axis=-1)
    half = t_quantile(rounds - 1, confidence) * logs.std(ddof=1, axis=-1) / math.sqrt(rounds)
    return np.exp(centre), np.exp(centre - half), np.exp(centre + half)


def paired_ratio(base: Series, new: Series,
                 confidence: float = CONFIDENCE) -> tuple[float, Interval]:
    """new / base from interleaved rounds, one value per round a side (`paired_ratio_bounds`)."""
    ratio, low, high = paired_ratio_bounds(np.asarray(base, dtype=float), np.asarray(new, dtype=float), confidence)
    return float(ratio), Interval(float(low), float(high))


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


def series_variation_warning(what: str, series: Series, *, load_average: float | None,
                             cpus: int) -> str | None:
    """`variation_warning` for a series of run times, in the order they ran."""
    array = np.asarray(series, dtype=float)
    half = len(array) // 2
    if half < 1:
        return None
    return variation_warning(what, coefficient_of_variation(series), load_average=load_average, cpus=cpus,
                             first_half_mean=float(array[:half].mean()), second_half_mean=float(array[half:].mean()))
