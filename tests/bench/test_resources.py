"""Resources and cold start are read from the process: memory it really touched, CPU it really used."""
import os
import subprocess
import sys
import threading
import time

import pytest

from bench import resources
from bench.results import Resources
from bench.runner import RunConfig
from tests.conftest import cli_env

QUICK = RunConfig(warmup=2, min_time=0.05, min_iterations=5)

PEAK_SCRIPT = """
import sys
import numpy as np
from bench.resources import measure_with_resources
from bench.runner import RunConfig
megabytes = int(sys.argv[1])
def step():
    block = np.ones(megabytes * 1024 * 1024 // 8)  # touched, so resident
    del block
_, used = measure_with_resources(step, RunConfig(warmup=1, min_time=0, min_iterations=2), load_seconds=None,
                                 providers=["CPUExecutionProvider"])
print(used.peak_rss_bytes)
"""


def _peak_after(megabytes: int) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(megabytes)], capture_output=True, text=True,
                          timeout=120, env=cli_env())
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_peak_memory_is_the_process_high_water_mark():
    """A step that touches 500 MiB peaks 300 MiB above one that touches 200 MiB (both above the
    interpreter's own start-up peak, so only the arrays differ)."""
    small, large = _peak_after(200), _peak_after(500)
    assert small > 200 * 2**20
    assert large - small == pytest.approx(300 * 2**20, rel=0.05)


def test_an_engine_process_does_not_inherit_the_peak_of_the_process_that_started_it(monkeypatch):
    """Linux carries ru_maxrss over fork+exec: a child of a 400 MiB parent would report 400 MiB."""
    import numpy as np

    parent = np.ones(400 * 2**20 // 8)
    assert resources.peak_rss_bytes() > 400 * 2**20
    assert _peak_after(1) < 200 * 2**20
    del parent
    # Without /proc (macOS), getrusage's figure: still this process's own, and at least the array's.
    monkeypatch.setattr(resources, "STATUS", "/nonexistent/status")
    assert resources.peak_rss_bytes() > 400 * 2**20


def test_cpu_time_counts_every_thread_of_the_process():
    """Each step has another thread burn 2 ms of its own CPU time (its thread_time, whatever the load): the
    process's CPU time over the measured runs is at least that, and no more than the usable CPUs can give."""
    def burn():
        end = time.thread_time() + 0.002
        while time.thread_time() < end:
            pass

    def step():
        worker = threading.Thread(target=burn)
        worker.start()
        worker.join()
    times, used = resources.measure_with_resources(step, QUICK, load_seconds=None, providers=())
    assert used.cpu_seconds >= 0.002 * len(times)
    assert used.cpu_seconds <= used.wall_seconds * used.usable_cpus * 1.01


class Clocks:
    """Stand-ins for the wall clock and the process's CPU clock that only the steps advance."""

    def __init__(self, monkeypatch):
        self.wall = self.cpu = 0.0
        monkeypatch.setattr(time, "perf_counter", lambda: self.wall)
        monkeypatch.setattr(time, "process_time", lambda: self.cpu)

    def advance(self, wall_s: float, cpu_s: float = 0.0) -> None:
        self.wall += wall_s
        self.cpu += cpu_s


def test_cpu_utilisation_is_cpu_time_over_wall_time_and_usable_cpus(monkeypatch):
    """Runs of 10 ms using 4 ms of CPU on 2 usable CPUs: 20% utilisation; the warm-up is not counted."""
    clocks = Clocks(monkeypatch)
    monkeypatch.setattr(resources, "usable_cpus", lambda: 2)
    times, used = resources.measure_with_resources(lambda: clocks.advance(0.010, 0.004),
                                                   RunConfig(warmup=3, min_time=0.1, min_iterations=5),
                                                   load_seconds=None, providers=())
    assert times == pytest.approx([0.010] * len(times)) and len(times) >= 10
    assert used.cpu_seconds == pytest.approx(0.004 * len(times))
    assert used.wall_seconds == pytest.approx(0.010 * len(times)) and used.cpu_utilisation == pytest.approx(0.2)


@pytest.mark.parametrize("warmup", [0, 3])
def test_the_first_run_is_timed_alone_and_never_measured(monkeypatch, warmup):
    """The first call takes 50 ms on the stand-in clock, every later one 1 ms."""
    clocks = Clocks(monkeypatch)
    calls = []

    def step():
        calls.append(1)
        clocks.advance(0.050 if len(calls) == 1 else 0.001)
    times, used = resources.measure_with_resources(step, RunConfig(warmup=warmup, min_time=0, min_iterations=4),
                                                   load_seconds=1.5, providers=())
    assert used.first_run_ms == pytest.approx(50.0) and times == pytest.approx([0.001] * 4)
    assert len(calls) == max(warmup, 1) + len(times)
    assert used.load_seconds == 1.5 and used.device_memory_bytes is None


def test_later_rounds_skip_the_warm_up():
    calls = []
    times, used = resources.measure_with_resources(lambda: calls.append(1), RunConfig(warmup=3, min_time=0,
                                                                                       min_iterations=2),
                                                   load_seconds=None, providers=(), first_run=False)
    assert len(calls) == len(times) == 2 and used.first_run_ms == 0


def test_rounds_add_up():
    first = Resources(peak_rss_bytes=100, cpu_seconds=1.0, wall_seconds=2.0, usable_cpus=2, first_run_ms=9.0,
                      load_seconds=0.5)
    later = Resources(peak_rss_bytes=300, cpu_seconds=0.5, wall_seconds=1.0, usable_cpus=2, first_run_ms=0.0,
                      device_memory_bytes=7)
    both = first.then(later)
    assert (both.peak_rss_bytes, both.cpu_seconds, both.wall_seconds) == (300, 1.5, 3.0)
    assert (both.first_run_ms, both.load_seconds, both.device_memory_bytes) == (9.0, 0.5, 7)
    assert both.cpu_utilisation == 0.25
    assert Resources.from_json(both.to_json()) == both


def test_gpu_memory_of_this_process_from_nvidia_smi_output():
    text = "4242, 1024\n999, 512\n4242, 2048\n"  # one line per process and GPU
    assert resources.parse_compute_apps(text, 4242) == 3072 * 1024 * 1024
    assert resources.parse_compute_apps(text, 7) is None
    assert resources.parse_compute_apps("No running processes found\n", 4242) is None


def test_gpu_memory_is_read_only_for_gpu_sessions(tmp_path, monkeypatch):
    """A fake nvidia-smi on PATH stands for the driver's: CPU sessions never ask it; CUDA ones read their pid."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\necho \"$$, 1\"\necho \"{os.getpid()}, 640\"\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert resources.device_memory_bytes(["CUDAExecutionProvider", "CPUExecutionProvider"]) == 640 * 1024 * 1024
    assert resources.device_memory_bytes(["CPUExecutionProvider"]) is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert resources.device_memory_bytes(["CUDAExecutionProvider"]) is None
