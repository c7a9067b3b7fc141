"""The timing loop: warm-up excluded, minimum time and count both met, times cover the wall time."""
import time

import pytest

from bench.runner import RunConfig, measure
from toolkit.cli import UsageError


def test_warmup_is_excluded_and_min_iterations_met():
    calls = []
    times = measure(lambda: calls.append(1), RunConfig(warmup=3, min_time=0.0, min_iterations=7))
    assert len(calls) == 10 and len(times) == 7


def test_runs_until_min_time_and_times_sum_to_wall_time():
    start = time.perf_counter()
    times = measure(lambda: time.sleep(0.002), RunConfig(warmup=0, min_time=0.1, min_iterations=2))
    wall = time.perf_counter() - start
    assert sum(times) >= 0.1
    assert len(times) >= 2 and all(t >= 0.002 for t in times)
    assert sum(times) <= wall


def test_progress_is_reported_with_the_final_count():
    seen = []
    times = measure(lambda: time.sleep(0.001), RunConfig(warmup=0, min_time=0.25, min_iterations=1),
                    progress=lambda n, elapsed: seen.append((n, elapsed)))
    assert seen[-1][0] == len(times) and len(seen) >= 2
    assert seen[-1][1] == pytest.approx(sum(times))


@pytest.mark.parametrize("kwargs", [{"warmup": -1}, {"min_time": -0.5}, {"min_iterations": 0}])
def test_bad_run_config(kwargs):
    with pytest.raises(UsageError):
        RunConfig(**kwargs)
