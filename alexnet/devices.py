"""Where training runs, `--device auto|gpu|cpu`, decided before Horovod pins a GPU to each rank.

  cpu   the CPU, with every GPU hidden from TensorFlow (so neither Keras nor Horovod uses one);
  gpu   the GPUs TensorFlow sees, one per local rank (alexnet.distributed): none is an error;
  auto  the GPUs when TensorFlow sees them; the CPU where no NVIDIA driver is loaded.

Where a driver is loaded but TensorFlow sees no GPU, `gpu` and `auto` both refuse (one line, exit
2) with the reason and the fix, instead of training on the CPU for hours unnoticed: TensorFlow's
CUDA wheels missing, a driver too old, CUDA_VISIBLE_DEVICES hiding every GPU. `--device cpu` is how
to mean the CPU on a GPU machine.

The rules are a pure function, `decide`, of what was found; `select` finds only what it needs (no
TensorFlow import where no driver is loaded, so `--device gpu` on a machine without one answers at once).

    device = select("auto")        # "gpu" or "cpu", or UsageError with the reason and the fix
"""
from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path
from typing import Sequence

from toolkit.cli import UsageError
from toolkit.constants import DEVICES, MIN_DRIVER

PROC_VERSION = Path("/proc/driver/nvidia/version")
# TensorFlow 2.21's CUDA 12 libraries, as `pip install tensorflow[and-cuda]` (GPU=1 scripts/setup.sh) installs them.
TF_CUDA_WHEELS = ("nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12", "nvidia-cudnn-cu12")
_HIDDEN = ("", "-1", "none", "void", "NoDevFiles")  # CUDA_VISIBLE_DEVICES values that leave no GPU visible


def parse_proc_version(text: str) -> str | None:
    """The driver version in /proc/driver/nvidia/version ('NVRM version: NVIDIA UNIX x86_64 Kernel Module
    580.65.06  Sun Jul ...', or '... Open Kernel Module for x86_64  580.65.06  Release Build ...')."""
    found = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)?)\s", text + " ")
    return found.group(1) if found else None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def driver_version() -> str | None:
    """The loaded NVIDIA kernel driver's version: /proc/driver/nvidia/version (the module itself, also where
    nvidia-smi is not installed), else nvidia-smi's answer; None where neither finds one."""
    try:
        found = parse_proc_version(PROC_VERSION.read_text())
    except OSError:
        found = None
    if found:
        return found
    from toolkit.environment import gpu_info

    drivers = [gpu["driver"] for gpu in gpu_info() if gpu.get("driver")]
    return drivers[0] if drivers else None


def missing_cuda_wheels() -> tuple[str, ...]:
    missing = []
    for name in TF_CUDA_WHEELS:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return tuple(missing)


def _why_no_gpu(driver: str, missing_wheels: Sequence[str], visible: str | None) -> tuple[str, str]:
    """(reason, fix) where a driver is loaded and TensorFlow sees no GPU, the likeliest cause first."""
    if visible is not None and visible.strip() in _HIDDEN:
        return (f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU", "unset CUDA_VISIBLE_DEVICES")
    if missing_wheels:
        return (f"TensorFlow's CUDA libraries are not installed ({', '.join(missing_wheels)} missing)",
                "GPU=1 scripts/setup.sh, or pip install 'tensorflow[and-cuda]'")
    if version_tuple(driver) < version_tuple(MIN_DRIVER):
        return (f"driver {driver} is older than {MIN_DRIVER}, the oldest the toolkit's CUDA libraries run on",
                f"update the NVIDIA driver to {MIN_DRIVER} or newer")
    return ("TensorFlow could not initialise CUDA (its log says why: run with TF_CPP_MIN_LOG_LEVEL=0)",
            "check that nvidia-smi lists the GPU and that GPU=1 scripts/setup.sh completed")


def decide(requested: str, driver: str | None, tf_gpus: int, missing_wheels: Sequence[str] = (),
           visible: str | None = None) -> str:
    """"gpu" or "cpu" for `--device requested`, from the driver's version (None: no driver loaded), the GPUs
    TensorFlow sees, TensorFlow's missing CUDA wheels and CUDA_VISIBLE_DEVICES; UsageError where it cannot train
    there, with the reason and the fix."""
    if requested not in DEVICES:
        raise UsageError(f"unknown --device {requested!r}: use one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return "cpu"
    if tf_gpus:
        return "gpu"
    if driver is None:
        if requested == "auto":
            return "cpu"
        raise UsageError(f"--device gpu: no NVIDIA driver is loaded here (no {PROC_VERSION}, no nvidia-smi): run on "
                         f"a machine with an NVIDIA GPU and driver {MIN_DRIVER} or newer, or pass --device cpu")
    reason, fix = _why_no_gpu(driver, missing_wheels, visible)
    raise UsageError(f"--device {requested}: NVIDIA driver {driver} is loaded but TensorFlow sees no GPU: {reason}; "
                     f"fix: {fix}, or pass --device cpu to train on the CPU")


def _tensorflow_gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def select(requested: str) -> str:
    """The device to train on (`decide`). For "cpu" every GPU is hidden from TensorFlow here, before anything
    uses it: alexnet.distributed pins only the GPUs left visible."""
    if requested == "cpu":
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
        return "cpu"
    driver = driver_version()
    return decide(requested, driver, _tensorflow_gpus() if driver else 0, missing_cuda_wheels(),
                  os.environ.get("CUDA_VISIBLE_DEVICES"))
