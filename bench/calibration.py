"""Calibration of bench's intervals and verdicts against known truth: coverage, false verdicts, power.

Every 95% interval and every verdict of bench/stats.py and bench/check.py is run on thousands of
simulated measurements whose truth is known, vectorised with numpy (a whole case is one array of
trials x values), through the same functions the commands call:

  series       iid normal; iid lognormal; AR(1) with phi 0.5, 0.8, 0.9 (slow and fast stretches of a
               shared machine); M/M/1 queue sojourn times at load 0.6 and 0.8 (a server scenario's
               latencies: the true q-quantile is -ln(1-q) / (mu - lambda)); heavy tails (1 + Lomax,
               alpha 3); a 3% drift within each round of a comparison.
  measured     coverage of each interval (share of trials whose interval holds the truth: >= 93%);
               false verdicts and false REGRESSIONs on equal systems (<= 5%); power, the share of
               trials in which a real 10% slowdown is called "slower" (reported, not bounded).
  old          the methods these replaced, for comparison (not held to the bounds): the
               independent-values order-statistic interval, engines in a fixed order within rounds,
               a verdict from one run a side, --until-stable's interval on the runs that decided to stop,
               a peak compared as a point.

    python -m bench.calibration                  # the full table: 2,000 trials per case, about a minute
    python -m bench.calibration --trials 1000 --seed 3
    rows = calibration.table(trials=1000); calibration.failures(rows)   # [] when every bound holds

Exit status 1 when a bound is missed (the rows marked MISSED).
"""
from __future__ import annotations

import dataclasses
import math
import sys
from typing import Callable, Iterator, Sequence

import numpy as np

from bench import stats
from toolkit import cli

COVERAGE_FLOOR = 0.93
FALSE_CEILING = 0.05
SLOWDOWN = 1.10             # the real slowdown whose detection is reported as power
QUANTILES = (0.5, 0.9, 0.99)
SERIES_N = 1000             # values per series: a quick-rules run's latencies, a server test's queries
RUNS = 3                    # repeated runs a side for `bench check`
BETWEEN_RUNS_SD = 0.03      # log-scale spread of a run's level from process to process (placement, memory)
ROUNDS = 3                  # `bench compare`'s default
DRIFT = 0.03                # the machine slows by 3% over each round
PEAK_TOLERANCE = 0.05       # --find-peak's quick-rules step


@dataclasses.dataclass(frozen=True)
class Series:
    """A generator of trials x n values and the truth: the mean and the q-quantile."""

    name: str
    draw: Callable[[np.random.Generator, int, int], np.ndarray]
    mean: float
    quantile: Callable[[float], float]


def _ar1(phi: float) -> Series:
    def draw(rng: np.random.Generator, trials: int, n: int) -> np.ndarray:
        from scipy.signal import lfilter

        noise = rng.normal(size=(trials, n))
        noise[:, 0] /= math.sqrt(1 - phi ** 2)   # start in the stationary distribution
        return 10 + lfilter([1.0], [1.0, -phi], noise, axis=1)
    sd = 1 / math.sqrt(1 - phi ** 2)
    return Series(f"AR(1) phi {phi}", draw, 10.0, lambda q: 10 + sd * _normal_quantile(q))


def _mm1(load: float) -> Series:
    """FIFO M/M/1 with service rate 1: sojourn times by Lindley's recursion, started in steady state."""
    def draw(rng: np.random.Generator, trials: int, n: int) -> np.ndarray:
        service = rng.exponential(1.0, (trials, n))
        gaps = rng.exponential(1 / load, (trials, n))
        wait = np.where(rng.random(trials) < load, rng.exponential(1 / (1 - load), trials), 0.0)
        sojourn = np.empty((trials, n))
        for i in range(n):
            sojourn[:, i] = wait + service[:, i]
            wait = np.maximum(0.0, sojourn[:, i] - gaps[:, i])
        return sojourn
    return Series(f"M/M/1 load {load}", draw, 1 / (1 - load), lambda q: -math.log(1 - q) / (1 - load))


def _normal_quantile(q: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(q))


def all_series() -> list[Series]:
    alpha = 3.0
    return [Series("iid normal", lambda rng, t, n: rng.normal(10, 1, (t, n)), 10.0, lambda q: 10 + _normal_quantile(q)),
            Series("iid lognormal", lambda rng, t, n: rng.lognormal(0, 0.5, (t, n)), math.exp(0.125),
                   lambda q: math.exp(0.5 * _normal_quantile(q))),
            _ar1(0.5), _ar1(0.8), _ar1(0.9), _mm1(0.6), _mm1(0.8),
            Series("heavy tails (1 + Lomax 3)", lambda rng, t, n: rng.pareto(alpha, (t, n)) + 1, 1 + 1 / (alpha - 1),
                   lambda q: (1 - q) ** (-1 / alpha))]


@dataclasses.dataclass(frozen=True)
class Result:
    """One line of the table: a share measured over `trials`, and the bound it is held to (None: reported)."""

    method: str
    case: str
    measure: str            # "coverage", "false verdicts", "false REGRESSION at 5%", "power (10% slower)"
    value: float
    trials: int
    bound: str | None = None    # ">= 93%" or "<= 5%"

    @property
    def missed(self) -> bool:
        """Below the coverage floor; or above the false-verdict ceiling by more than the simulation's own error.

        A 95% interval's false verdicts are 5% by design, so a share measured over T trials lands above 5%
        about half the time: the ceiling allows two standard errors, sqrt(0.05 x 0.95 / T) (0.5% at 2,000).
        """
        if self.bound is None:
            return False
        if self.bound.startswith(">="):
            return self.value < COVERAGE_FLOOR
        return self.value > FALSE_CEILING + 2 * math.sqrt(FALSE_CEILING * (1 - FALSE_CEILING) / self.trials)


def _coverage(method: str, case: str, low: np.ndarray, high: np.ndarray, truth: float, held: bool = True) -> Result:
    covered = (np.isnan(low) | (low <= truth)) & (np.isnan(high) | (truth <= high))
    bound = f">= {COVERAGE_FLOOR:.0%}" if held else None
    return Result(method, case, "coverage", float(covered.mean()), len(low), bound)


def _share(method: str, case: str, measure: str, flagged: np.ndarray, held: bool) -> Result:
    bound = f"<= {FALSE_CEILING:.0%}" if held else None
    return Result(method, case, measure, float(np.mean(flagged)), len(flagged), bound)


def series_intervals(trials: int, rng: np.random.Generator) -> Iterator[Result]:
    """The mean (batch means) and p50/p90/p99 (ranks widened for dependence; and the old iid ranks) of each series."""
    for series in all_series():
        values = series.draw(rng, trials, SERIES_N)
        # A queue's mean latency is skewed (calm stretches have small means and small spreads): bench gives
        # no interval of it, so its row is reported, not held to the floor.
        yield _coverage("mean: batch means", series.name, *stats.mean_bounds(values), series.mean,
                        held=not series.name.startswith("M/M/1"))
        for q in QUANTILES:
            truth = series.quantile(q)
            yield _coverage(f"p{q * 100:g}: ranks widened for dependence", series.name,
                            *stats.quantile_bounds(values, q), truth)
            yield _coverage(f"p{q * 100:g}: old, iid order statistics", series.name,
                            *stats.iid_quantile_bounds(values, q), truth, held=False)


def rate_intervals(trials: int, rng: np.random.Generator) -> Iterator[Result]:
    """Offline/server samples/s from 10 equal windows of a Poisson completion stream (200/s over 5 s)."""
    rate, seconds = 200.0, 5.0
    arrivals = np.cumsum(rng.exponential(1 / rate, (trials, int(rate * seconds * 1.5))), axis=1)
    counts = np.stack([((arrivals >= seconds * w / 10) & (arrivals < seconds * (w + 1) / 10)).sum(axis=1)
                       for w in range(10)], axis=1)
    windows = counts / (seconds / 10)
    centre = windows.mean(axis=1)
    half = stats.t_quantile(9) * windows.std(ddof=1, axis=1) / math.sqrt(10)
    yield _coverage("rate: 10 window rates, t", "Poisson 200/s, 5 s", centre - half, centre + half, rate)


def small_ratios(trials: int, rng: np.random.Generator) -> Iterator[Result]:
    """The ratio of two means at n = 10 a side (10 window rates): Welch's t on batch means."""
    for name, draw in (("iid normal, n 10", lambda scale: rng.normal(10 * scale, 1, (trials, 10))),
                       ("iid lognormal, n 10", lambda scale: scale * rng.lognormal(0, 0.5, (trials, 10)))):
        base = draw(1.0)
        _, low, high = stats.mean_ratio_bounds(base, draw(1.0))
        yield _coverage("ratio of means: Welch t on batch means", name, low, high, 1.0)
        yield _share("ratio of means: Welch t on batch means", name, "false 'slower'", low > 1, held=True)
        _, low, _ = stats.mean_ratio_bounds(base, draw(SLOWDOWN))
        yield _share("ratio of means: Welch t on batch means", name, "power (10% slower)", low > 1, held=False)


def _run_metric(series: Series, trials: int, runs: int, scale: float, q: float | None,
                rng: np.random.Generator) -> np.ndarray:
    """trials x runs: each run's mean (q None) or rank q-quantile, its level moved by the between-run spread."""
    level = scale * np.exp(rng.normal(0, BETWEEN_RUNS_SD, (trials, runs)))
    values = np.stack([series.draw(rng, trials, SERIES_N) for _ in range(runs)], axis=1) * level[..., None]
    if q is None:
        return values.mean(axis=2)
    return np.sort(values, axis=2)[..., int(SERIES_N * q)]


def repeated_checks(trials: int, rng: np.random.Generator) -> Iterator[Result]:
    """`bench check` from 3 runs a side (each its own process): Welch's t on the runs' log values; and what a
    verdict from one run a side (within-run variation alone) would say."""
    cases = ((_ar1(0.8), None, "throughput, AR(1) phi 0.8"), (_mm1(0.8), 0.99, "server p99, M/M/1 load 0.8"),
             (_mm1(0.6), 0.99, "server p99, M/M/1 load 0.6"))
    for series, q, name in cases:
        base = _run_metric(series, trials, RUNS, 1.0, q, rng)
        equal = _run_metric(series, trials, RUNS, 1.0, q, rng)
        slower = _run_metric(series, trials, RUNS, SLOWDOWN, q, rng)
        method = f"check: {RUNS} runs a side, Welch t"
        _, low, high = stats.runs_ratio_bounds(base, equal)
        yield _share(method, name, "false verdicts", (low > 1) | (high < 1), held=True)
        for allowed in (0.05, 0.10):
            yield _share(method, name, f"false REGRESSION at {allowed:.0%}", low > 1 + allowed, held=True)
        yield _share(method, name, "power (10% slower)", stats.runs_ratio_bounds(base, slower)[1] > 1, held=False)
        if q is None:
            yield from _single_run_verdicts(series, name, trials, rng)


def _single_run_verdicts(series: Series, name: str, trials: int, rng: np.random.Generator) -> Iterator[Result]:
    """The old way: a verdict from one run a side, whose interval holds within-run variation alone."""
    base, new = (series.draw(rng, trials, SERIES_N) * np.exp(rng.normal(0, BETWEEN_RUNS_SD, (trials, 1)))
                 for _ in "ab")
    _, low, high = stats.mean_ratio_bounds(base, new)
    yield _share("old: verdict from one run a side (within-run interval)", name, "false verdicts",
                 (low > 1) | (high < 1), held=False)


def _round_rates(order: str, scale: float, trials: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """samples/s of A and B in each round: load moves between rounds (shared by both), the machine slows
    linearly by DRIFT within each round, each turn has 1% noise. `order` "AB": A the first half, B the
    second; "ABBA": A the outer quarters, B the middle half."""
    load = np.exp(rng.normal(0, 0.2, (trials, ROUNDS, 1)))
    turns = (("A", 0, 0.5), ("B", 0.5, 1.0)) if order == "AB" else (
        ("A", 0, 0.25), ("B", 0.25, 0.5), ("B", 0.5, 0.75), ("A", 0.75, 1.0))
    time = {side: np.zeros((trials, ROUNDS, 1)) for side in "AB"}
    for side, start, end in turns:
        drift = 1 + DRIFT * (start + end) / 2
        noise = np.exp(rng.normal(0, 0.01 / math.sqrt((end - start) * 2), (trials, ROUNDS, 1)))
        time[side] = time[side] + (end - start) * drift * (scale if side == "B" else 1.0) * load * noise
    return 0.5 / time["A"][..., 0], 0.5 / time["B"][..., 0]


def paired_rounds(trials: int, rng: np.random.Generator) -> Iterator[Result]:
    """`bench compare`: two equal engines, 3 rounds, 3% drift within each round; paired t on the rounds."""
    for order, method, held in (("ABBA", "compare: mirrored order (A B B A), paired t", True),
                                ("AB", "old: compare, fixed order (A B), paired t", False)):
        rate_a, rate_b = _round_rates(order, 1.0, trials, rng)
        _, low, high = stats.paired_ratio_bounds(rate_a, rate_b)
        yield _share(method, f"{ROUNDS} rounds, {DRIFT:.0%} drift", "false verdicts", (low > 1) | (high < 1), held)
        rate_a, rate_b = _round_rates(order, SLOWDOWN, trials, rng)
        yield _share(method, f"{ROUNDS} rounds, {DRIFT:.0%} drift", "power (10% slower)",
                     stats.paired_ratio_bounds(rate_a, rate_b)[2] < 1, held=False)


def until_stable(trials: int, rng: np.random.Generator, percent: float = 2.0) -> Iterator[Result]:
    """--until-stable 2: look every 10 runs from 20 on until the mean time's interval is within +-2%; the old
    way reports the interval of the runs that decided to stop, bench's measures a fresh stretch of
    `runner.FRESH_STRETCH` x as many runs and reports that one's."""
    from bench.runner import FRESH_STRETCH

    for series in (_ar1(0.5), Series("iid lognormal", lambda r, t, n: r.lognormal(0, 0.1, (t, n)),
                                     math.exp(0.005), lambda q: math.nan)):
        longest = 1500
        values = series.draw(rng, trials, longest)
        stopped = np.full(trials, longest)
        old_low, old_high = stats.mean_bounds(values)
        for n in range(20, longest, 10):
            waiting = stopped == longest
            if not waiting.any():
                break
            low, high = stats.mean_bounds(values[waiting, :n])
            centre = values[waiting, :n].mean(axis=1)
            hit = np.maximum(centre - low, high - centre) <= percent / 100 * centre
            now = np.flatnonzero(waiting)[hit]
            stopped[now], old_low[now], old_high[now] = n, low[hit], high[hit]
        yield _coverage(f"old: --until-stable {percent:g}, interval of the deciding runs", series.name,
                        old_low, old_high, series.mean, held=False)
        fresh = series.draw(rng, trials, int(FRESH_STRETCH * longest))
        low, high = np.empty(trials), np.empty(trials)
        for length in np.unique(stopped):
            chosen = stopped == length
            low[chosen], high[chosen] = stats.mean_bounds(fresh[chosen, :int(FRESH_STRETCH * length)])
        yield _coverage(f"--until-stable {percent:g}: interval of a fresh stretch", series.name, low, high,
                        series.mean)


def peak_checks(trials: int, rng: np.random.Generator) -> Iterator[Result]:
    """`bench check` of --find-peak results: each run's peak is the true one moved by the between-run spread and
    found only to within the search's step (uniformly below it); 3 runs a side, Welch t with the step as resolution."""
    def peaks(scale: float, runs: int) -> np.ndarray:
        return (100 / scale * np.exp(rng.normal(0, BETWEEN_RUNS_SD, (trials, runs)))
                * rng.uniform(1 - PEAK_TOLERANCE, 1, (trials, runs)))
    base, equal = peaks(1.0, RUNS), peaks(1.0, RUNS)
    method = f"peak QPS: {RUNS} runs a side, Welch t, resolution {PEAK_TOLERANCE:.0%}"
    _, low, high = stats.runs_ratio_bounds(base, equal, PEAK_TOLERANCE)
    slowdown_low = 1 / high   # peak QPS: higher is better; the slowdown is base / new
    yield _share(method, "equal peaks", "false verdicts", (low > 1) | (high < 1), held=True)
    yield _share(method, "equal peaks", "false REGRESSION at 5%", slowdown_low > 1.05, held=True)
    yield _share(method, "equal peaks", "power (10% slower)",
                 stats.runs_ratio_bounds(base, peaks(SLOWDOWN, RUNS), PEAK_TOLERANCE)[2] < 1, held=False)
    single = peaks(1.0, 1)[:, 0] / peaks(1.0, 1)[:, 0]
    yield _share("old: peak QPS as a point, one run a side", "equal peaks", "false REGRESSION at 5%",
                 1 / single > 1.05, held=False)


SECTIONS = (series_intervals, rate_intervals, small_ratios, repeated_checks, paired_rounds, until_stable, peak_checks)


def table(trials: int = 2000, seed: int = 0, sections: Sequence[Callable] = SECTIONS) -> list[Result]:
    """Every section's rows, each from its own seeded generator (a section's numbers do not depend on the others)."""
    found = []
    for index, section in enumerate(sections):
        found.extend(section(trials, np.random.default_rng([seed, index])))
    return found


def failures(rows: Sequence[Result]) -> list[Result]:
    return [row for row in rows if row.missed]


def render(rows: Sequence[Result]) -> str:
    """The table as Markdown (the README's statistics section holds it)."""
    lines = ["| method | case | measure | value | bound |", "|---|---|---|---|---|"]
    for row in rows:
        bound = (row.bound or "reported") + (" MISSED" if row.missed else "")
        lines.append(f"| {row.method} | {row.case} | {row.measure} | {row.value:.1%} | {bound} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m bench.calibration", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=2000, help="trials per case (at least 1000 for the bounds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.trials < 10:
        raise cli.UsageError(f"--trials {args.trials}: give at least 10 (1000 for the bounds to mean anything)")
    rows = table(args.trials, args.seed)
    print(render(rows))
    missed = failures(rows)
    print(f"\n{len(rows)} rows, {args.trials} trials each; {len(missed)} bounds missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(cli.run("python -m bench.calibration", main))
