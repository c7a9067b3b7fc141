"""The timing loop: warm-up excluded, then run until a minimum time AND a minimum count are met.

As in trtexec (--warmUp, --duration, --iterations) and MLPerf LoadGen (min_duration,
min_query_count): short runs are stretched to the minimum time so one hiccup cannot dominate,
and fast models still get enough samples for p99. Each iteration's time is the gap between
consecutive clock reads, so the times sum to the loop's whole wall time: nothing the harness
does between runs escapes the measurement, and throughput = samples / wall time exactly.

    times = measure(step, RunConfig(warmup=5, min_time=5.0, min_iterations=20))
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from toolkit.cli import UsageError

# Progress callbacks are throttled: a rich refresh per iteration would cost microseconds
# that a 1 ms model would feel.
PROGRESS_INTERVAL_S = 0.1


@dataclasses.dataclass(frozen=True)
class RunConfig:
    warmup: int = 5
    min_time: float = 5.0
    min_iterations: int = 20

    def __post_init__(self):
        if self.warmup < 0:
            raise UsageError(f"--warmup {self.warmup} must be >= 0")
        if self.min_time < 0:
            raise UsageError(f"--min-time {self.min_time} must be >= 0 seconds")
        if self.min_iterations < 1:
            raise UsageError(f"--min-iterations {self.min_iterations} must be >= 1")


Progress = Callable[[int, float], None]  # (iterations done, seconds elapsed)


def measure(step: Callable[[], Any], config: RunConfig, progress: Progress | None = None) -> list[float]:
    """Per-iteration wall times in seconds, warm-up excluded."""
    for _ in range(config.warmup):
        step()
    clock = time.perf_counter
    times: list[float] = []
    append = times.append
    start = last = clock()
    next_report = start + PROGRESS_INTERVAL_S
    min_iterations, deadline = config.min_iterations, start + config.min_time
    while True:
        step()
        now = clock()
        append(now - last)
        last = now
        if len(times) >= min_iterations and now >= deadline:
            break
        if progress is not None and now >= next_report:
            progress(len(times), now - start)
            next_report = now + PROGRESS_INTERVAL_S
    if progress is not None:
        progress(len(times), last - start)
    return times
