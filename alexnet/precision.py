"""Choosing the mixed-precision policy, and holding it for exactly as long as it is needed.

  auto -> mixed_float16 on GPUs with fast float16 (compute capability 7.0+: tensor cores),
          mixed_bfloat16 on CPUs with native bf16 (AVX512_BF16 / AMX) and on GPUs without,
          float32 otherwise.

Keras reads its policy from a process-wide global when a layer is built. The model never
sets it; the training run holds it with `global_policy`, which puts the previous policy back
however the block ends, so an exception can never leave later code building layers in
16 bits:

    with precision.global_policy(precision.detect_and_resolve("auto")):
        model = build_alexnet()
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from toolkit.cli import UsageError
from toolkit.constants import PRECISIONS


def resolve(precision: str, gpu_compute_capabilities: list[tuple[int, int]], cpu_bf16: bool) -> str:
    """A pure function of the hardware description, so every rule is unit-testable."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if gpu_compute_capabilities:
        return "mixed_float16" if min(gpu_compute_capabilities) >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_bf16 else "float32"


def detect_and_resolve(precision: str) -> str:
    import tensorflow as tf

    from toolkit.environment import cpu_has_native_bf16

    caps = []
    for gpu in tf.config.list_physical_devices("GPU"):
        cap = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if cap:
            caps.append(tuple(cap))
    return resolve(precision, caps, cpu_has_native_bf16())


@contextlib.contextmanager
def global_policy(policy: str) -> Iterator[str]:
    """Keras' global dtype policy set to `policy` inside the block, the previous one restored after."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy(previous)


def uses_loss_scaling(policy: str) -> bool:
    """float16's 5-bit exponent underflows small gradients; bfloat16 has float32's range."""
    return policy == "mixed_float16"
