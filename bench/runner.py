"""The timing loop: warm-up excluded, then run until a minimum time AND a minimum count are met.

As in trtexec (--warmUp, --duration, --iterations) and MLPerf LoadGen (min_duration,
min_query_count): short runs are stretched to the minimum time so one hiccup cannot dominate,
and fast models still get enough samples for p99. Each iteration's time is the gap between
consecutive clock reads, so the times sum to the loop's whole wall time: nothing the harness
does between runs escapes the measurement, and throughput = samples / wall time exactly.

With `until_stable=2`, it then runs on until the 95% confidence interval of the throughput
(bench/stats.py, batch means) is within +-2% of it, or `max_time` seconds have passed. Those runs
only decide how long to measure: an interval computed on the runs that decided to stop is too narrow
(it stops when the spread happens to look small: 84% coverage, bench/calibration.py), so it then
measures a fresh stretch of FRESH_STRETCH x as many runs, and returns only those (Stein's two-stage idea).

    times = measure(step, RunConfig(warmup=5, min_time=5.0, min_iterations=20))
    times = measure(step, RunConfig(until_stable=2.0, max_time=60.0))
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Sequence

from bench import stats
from toolkit.cli import UsageError

# Progress callbacks are throttled: a rich refresh per iteration would cost microseconds
# that a 1 ms model would feel.
PROGRESS_INTERVAL_S = 0.1
# --until-stable looks at the interval this often (it costs a pass over every time so far).
STABILITY_INTERVAL_S = 0.25
# The fresh stretch after --until-stable decided: longer than the deciding runs, so that its own interval
# (of the same spread) is within the target more often than not.
FRESH_STRETCH = 1.5


@dataclasses.dataclass(frozen=True)
class RunConfig:
    warmup: int = 5
    min_time: float = 5.0
    min_iterations: int = 20
    until_stable: float | None = None   # percent: run on until the throughput interval is this narrow
    max_time: float = 60.0              # ... but no longer than this many seconds

    def __post_init__(self):
        if self.warmup < 0:
            raise UsageError(f"--warmup {self.warmup} must be >= 0")
        if self.min_time < 0:
            raise UsageError(f"--min-time {self.min_time} must be >= 0 seconds")
        if self.min_iterations < 1:
            raise UsageError(f"--min-iterations {self.min_iterations} must be >= 1")
        if self.until_stable is not None and not self.until_stable > 0:
            raise UsageError(f"--until-stable {self.until_stable:g} must be a percentage > 0, e.g. 2")
        if self.until_stable is not None and self.max_time < self.min_time:
            raise UsageError(f"--max-time {self.max_time:g} must be >= --min-time {self.min_time:g}")

    def stable(self, times: Sequence[float]) -> bool:
        """Whether the throughput's interval is within +-until_stable% (always, without --until-stable)."""
        if self.until_stable is None:
            return True
        interval = stats.batch_means_interval(times)
        rate = len(times) / sum(times)
        return interval is not None and interval.inverted().relative_half_width(rate) <= self.until_stable / 100


Progress = Callable[[int, float], None]  # (iterations done, seconds elapsed)
# A stage's announcement, (description, index, total[, minimums]) -> the callback of its timing loop:
# bench.report.MeasureProgress.step (bench sweep, compare, load, profile, tune).
Stage = Callable[..., Progress | None]


def measure(step: Callable[[], Any], config: RunConfig, progress: Progress | None = None) -> list[float]:
    """Per-iteration wall times in seconds, warm-up excluded; with until_stable, those of the fresh stretch."""
    for _ in range(config.warmup):
        step()
    clock = time.perf_counter
    start = clock()
    times = _timed(step, config, progress, start, stop=config.stable)
    if config.until_stable is None:
        return times
    spent = clock() - start
    if spent >= config.max_time:
        return times
    fresh = dataclasses.replace(config, min_iterations=math.ceil(FRESH_STRETCH * len(times)), min_time=0.0,
                                max_time=config.max_time - spent)
    return _timed(step, fresh, progress, clock(), stop=lambda _: True)


def _timed(step: Callable[[], Any], config: RunConfig, progress: Progress | None, start: float,
           stop: Callable[[list[float]], bool]) -> list[float]:
    """Times until min_time and min_iterations are met and `stop(times)` says so, or max_time is up."""
    clock = time.perf_counter
    times: list[float] = []
    append = times.append
    last = start
    next_report = start + PROGRESS_INTERVAL_S
    min_iterations, deadline, cap = config.min_iterations, start + config.min_time, start + config.max_time
    while True:
        step()
        now = clock()
        append(now - last)
        last = now
        if len(times) >= min_iterations and now >= deadline:
            if now >= cap or stop(times):
                break
            deadline = now + STABILITY_INTERVAL_S
        if progress is not None and now >= next_report:
            progress(len(times), now - start)
            next_report = now + PROGRESS_INTERVAL_S
    if progress is not None:
        progress(len(times), last - start)
    return times
