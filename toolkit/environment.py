"""The environment record written beside every output (training summary, export, benchmark).

Versions are read from package metadata, not by importing the packages, so this
works (and stays cheap) where TensorFlow is absent, e.g. on a GPU box that only
has onnxruntime.

    from toolkit import environment
    environment.collect(world_size=2)      # host, CPU, GPUs, memory, versions, SLURM job
    environment.usable_cpus()              # CPUs this process may run on (affinity mask)
    environment.thread_limit()             # the most threads a command starts without --force
    environment.available_memory_bytes()   # what can be allocated without swapping (MemAvailable)
    environment.preload_cuda()             # before any onnxruntime CUDA session (onnxruntime-gpu)
"""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import os
import platform
import shutil
import socket
import subprocess
import sys
from typing import Any

PACKAGES = ("tensorflow", "keras", "horovod", "tf2onnx", "onnx", "onnxruntime-gpu", "onnxruntime",
            "numpy", "rich")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with this pid exists (another user's counts: kill(0) is refused, not failed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask: taskset, cgroup cpusets, SLURM)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


# Threads per usable CPU a command may start without --force: a few per CPU lets a user oversubscribe on
# purpose (spinning off, I/O waits); 100,000 threads on 2 CPUs kept a shared machine at load ~600 for minutes.
THREADS_PER_CPU = 8


def thread_limit() -> int:
    return THREADS_PER_CPU * usable_cpus()


def available_memory_bytes() -> int | None:
    """Memory that can be allocated without swapping: /proc/meminfo's MemAvailable (None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@functools.cache
def preload_cuda() -> None:
    """Load the CUDA and cuDNN libraries of NVIDIA's pip wheels (onnxruntime.preload_dlls), once per process:
    without them onnxruntime-gpu's CUDA provider falls back to the CPU, silently. It print()s what it cannot find
    (every library, on a CPU machine): kept out of the user's output, the session's fallback says what happened."""
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu only
        with contextlib.redirect_stdout(io.StringIO()):
            ort.preload_dlls()


def cpu_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return {
        "model": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cpus(),
        "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
    }


def cpu_has_native_bf16() -> bool:
    return cpu_info()["bf16"]


def gpu_info() -> list[dict[str, str]]:
    """GPUs as nvidia-smi reports them; empty where there is none (or no driver)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            gpus.append(dict(zip(("name", "driver", "memory", "compute_capability"), parts)))
    return gpus


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def collect(**extra: Any) -> dict[str, Any]:
    """Everything needed to interpret a number later: host, CPU, GPU, memory, versions."""
    env = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_info(),
        "memory_bytes": memory_bytes(),
        "gpus": gpu_info(),
        "packages": package_versions(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    env.update(extra)
    return env
