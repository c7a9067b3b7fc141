"""Resources and cold start, read from the measuring process itself: nothing here is estimated.

  * peak resident memory: the kernel's high-water mark of this program's resident set (VmHWM;
    `bench compare` runs each engine in a process of its own, so each engine's row is its own
    process's peak);
  * CPU utilisation over the measured runs: this process's CPU time (`time.process_time`: user +
    system, every thread) / wall time / usable CPUs;
  * the first run at each batch size, timed alone (it pays for buffer allocation and kernel
    choice; TensorFlow traces its tf.function then), and the engine's load time (session creation);
  * GPU memory where a CUDA or TensorRT session runs: onnxruntime has no API for it, so it is read
    from `nvidia-smi --query-compute-apps=pid,used_memory` for this process's pid (the arena keeps
    what it grew to, so after the runs that is their peak); None where nvidia-smi is missing or does
    not list the process (a container that hides host pids).

    times, used = measure_with_resources(engine.step(prepared), RunConfig(), load_seconds=1.2,
                                         providers=engine.providers)
    used.peak_rss_bytes, used.cpu_utilisation, used.first_run_ms
    start = clocks(); ...; used = used_since(start, first_run_ms=3.1, load_seconds=1.2, providers=engine.providers)

`bench load` takes the second form around each test (its first run: the first warm-up query).
"""
from __future__ import annotations

import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

from bench.results import Resources
from bench.runner import Progress, RunConfig, measure
from toolkit.constants import PROVIDERS
from toolkit.environment import usable_cpus

GPU_PROVIDERS = (PROVIDERS["cuda"], PROVIDERS["tensorrt"])


STATUS = "/proc/self/status"


def peak_rss_bytes() -> int:
    """This program's resident-memory high-water mark: VmHWM in /proc/self/status.

    Not getrusage's ru_maxrss, where /proc exists: Linux carries ru_maxrss over exec from the
    process that forked it, so an engine process spawned by a 300 MB parent would report at least
    300 MB. VmHWM belongs to the program's own address space. Elsewhere, ru_maxrss (bytes on macOS).
    """
    try:
        with open(STATUS) as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # "VmHWM:   31624 kB"
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def parse_compute_apps(text: str, pid: int) -> int | None:
    """Bytes of GPU memory `pid` holds, from `nvidia-smi --query-compute-apps=pid,used_memory
    --format=csv,noheader,nounits` (MiB per line, one line per process and GPU); None if not listed."""
    total, found = 0, False
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            total += int(parts[1]) * 1024 * 1024
            found = True
    return total if found else None


def device_memory_bytes(providers: Sequence[str], pid: int | None = None) -> int | None:
    """The GPU memory this process holds, where its session runs on a GPU provider; else None."""
    if not providers or providers[0] not in GPU_PROVIDERS:
        return None
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_compute_apps(out, os.getpid() if pid is None else pid)


def timed_first_run(step: Callable[[], Any]) -> float:
    """Seconds of one call of `step`: the first run at a batch size, which is not measured."""
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def clocks() -> tuple[float, float]:
    """This process's CPU time (every thread) and the wall clock, where a measured window starts."""
    return time.process_time(), time.perf_counter()


def used_since(start: tuple[float, float], *, first_run_ms: float, load_seconds: float | None,
               providers: Sequence[str]) -> Resources:
    """What the process used from `start` (`clocks()`) to now, with its peaks so far."""
    cpu, wall = time.process_time() - start[0], time.perf_counter() - start[1]
    return Resources(peak_rss_bytes=peak_rss_bytes(), cpu_seconds=cpu, wall_seconds=wall, usable_cpus=usable_cpus(),
                     first_run_ms=first_run_ms, load_seconds=load_seconds,
                     device_memory_bytes=device_memory_bytes(providers))


def measure_with_resources(step: Callable[[], Any], run: RunConfig, *, load_seconds: float | None,
                           providers: Sequence[str], progress: Progress | None = None,
                           first_run: bool = True) -> tuple[list[float], Resources]:
    """`runner.measure`, plus what the process used while it measured.

    The warm-up runs happen here, before the CPU clock is read, so the utilisation covers the
    measured runs only; the first of them is timed alone (`first_run_ms`). With --warmup 0 the
    first run is still timed alone and left out of the measurement: it is never a typical run.
    `first_run=False` (a later round at the same batch size, in `bench compare`): no warm-up, and
    `first_run_ms` is 0.
    """
    first_s = 0.0
    if first_run:
        first_s = timed_first_run(step)
        for _ in range(run.warmup - 1):
            step()
    start = clocks()
    times = measure(step, dataclasses.replace(run, warmup=0), progress)
    return times, used_since(start, first_run_ms=first_s * 1000, load_seconds=load_seconds, providers=providers)
