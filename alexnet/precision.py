"""Choosing the mixed-precision policy: `auto` resolves to what the hardware runs fast.

  auto -> mixed_float16 on GPUs with fast float16 (compute capability 7.0+: tensor cores),
          mixed_bfloat16 on CPUs with native bf16 (AVX512_BF16 / AMX) and on GPUs without,
          float32 otherwise.
Only the caller (alexnet.train) sets the global policy; the model never does.
"""
from __future__ import annotations

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


def uses_loss_scaling(policy: str) -> bool:
    """float16's 5-bit exponent underflows small gradients; bfloat16 has float32's range."""
    return policy == "mixed_float16"
