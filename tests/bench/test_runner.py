"""The timing loop: warm-up excluded, minimum time and count both met, times cover the wall time."""
import time

import pytest

from bench import runner
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


def fake_clock(monkeypatch, step_seconds):
    """A clock that only the measured steps advance, by step_seconds(i) for the i-th step."""
    now, calls = [0.0], [0]

    def step():
        now[0] += step_seconds(calls[0])
        calls[0] += 1
    monkeypatch.setattr(runner.time, "perf_counter", lambda: now[0])
    return step


def test_until_stable_stops_once_the_interval_is_narrow(monkeypatch):
    step = fake_clock(monkeypatch, lambda i: 0.001)
    times = measure(step, RunConfig(warmup=0, min_time=0.05, min_iterations=20, until_stable=1.0, max_time=10.0))
    # Identical runs: stable as soon as the minimums are met (50 runs); those only decide the length, the
    # result is a fresh stretch of 1.5x as many.
    assert len(times) == 75


def test_until_stable_returns_a_fresh_stretch_not_the_runs_that_decided(monkeypatch):
    """The interval of the runs that decided to stop is too narrow (it stops where the spread looks small):
    the runs returned come after them. Here the first 50 runs take 1 ms and every later one 2 ms."""
    step = fake_clock(monkeypatch, lambda i: 0.001 if i < 50 else 0.002)
    times = measure(step, RunConfig(warmup=0, min_time=0.05, min_iterations=20, until_stable=1.0, max_time=10.0))
    assert times == pytest.approx([0.002] * 75)


def test_until_stable_runs_to_the_cap_when_it_never_settles(monkeypatch):
    # A run 100x slower every 7th step, then, from step 300 on, every 3rd: the batch means never agree.
    step = fake_clock(monkeypatch, lambda i: 0.1 if i % (7 if i < 300 else 3) == 0 else 0.001)
    config = RunConfig(warmup=0, min_time=0.05, min_iterations=20, until_stable=1.0, max_time=5.0)
    times = measure(step, config)
    assert 5.0 <= sum(times) < 5.0 + 0.1 + runner.STABILITY_INTERVAL_S
    assert not config.stable(times)


def test_stable_is_the_throughput_interval_within_the_percentage():
    steady = [0.010, 0.011] * 50
    assert RunConfig(until_stable=5.0).stable(steady) and RunConfig().stable([1.0])
    assert not RunConfig(until_stable=5.0).stable([0.01, 0.02, 0.05, 0.01] * 5)
    with pytest.raises(UsageError, match="--until-stable 0 must be a percentage > 0"):
        RunConfig(until_stable=0)
    with pytest.raises(UsageError, match="--max-time 1 must be >= --min-time 5"):
        RunConfig(until_stable=2, max_time=1.0)
