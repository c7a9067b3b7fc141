"""Verification: the one place that compares an exported model with its reference.

    from export.verify import run_keras, run_onnx, compare
    reference = run_keras(model, images)
    result = compare("alexnet.onnx", "keras", reference, run_onnx("alexnet.onnx", images))
    result.require(max_abs_diff=1e-4)            # CheckFailed (exit 1) outside the tolerance

The ONNX side runs in onnxruntime (CPU unless providers are given), the Keras side in
TensorFlow, on the same inputs; an NCHW export gets the same images transposed.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from toolkit.cli import CheckFailed
from toolkit.onnxfile import load_session

BATCH = 64


def run_keras(model, inputs: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0), dtype=np.float32)


def run_onnx(path: str | os.PathLike, inputs: np.ndarray, *, nchw: bool = False,
             providers: Sequence[str] | None = None, batch_size: int = BATCH) -> np.ndarray:
    session = load_session(path, providers)
    if nchw:
        inputs = np.ascontiguousarray(np.moveaxis(inputs, -1, 1))
    name = session.get_inputs()[0].name
    batches = [session.run(None, {name: inputs[i:i + batch_size]})[0] for i in range(0, len(inputs), batch_size)]
    return np.concatenate(batches).astype(np.float32)


@dataclass(frozen=True)
class Comparison:
    """How far `candidate` (a file) is from `reference` ("keras" or another file) on the same inputs."""

    candidate: str
    reference: str
    samples: int
    max_abs_diff: float
    top1_agreement: float

    def require(self, *, max_abs_diff: float | None = None, min_agreement: float | None = None) -> None:
        """CheckFailed, naming the numbers and the option to change, when outside the given limits."""
        if max_abs_diff is not None and not self.max_abs_diff <= max_abs_diff:
            raise CheckFailed(f"{self.candidate}: max |difference| from {self.reference} is {self.max_abs_diff:.3g}, "
                              f"over the tolerance {max_abs_diff:g} ({self.samples} inputs)")
        if min_agreement is not None and not self.top1_agreement >= min_agreement:
            raise CheckFailed(f"{self.candidate}: top-1 agreement with {self.reference} is {self.top1_agreement:.2%}, "
                              f"under the required {min_agreement:.2%} ({self.samples} inputs)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compare(candidate: str, reference_name: str, reference: np.ndarray, outputs: np.ndarray) -> Comparison:
    if reference.shape != outputs.shape:
        raise CheckFailed(f"{candidate}: output shape {outputs.shape} differs from {reference_name}'s "
                          f"{reference.shape}")
    diff = np.abs(reference.astype(np.float64) - outputs.astype(np.float64))
    max_diff = float(np.nanmax(diff)) if np.isfinite(diff).all() else float("inf")
    agreement = float(np.mean(reference.reshape(len(reference), -1).argmax(1)
                              == outputs.reshape(len(outputs), -1).argmax(1)))
    return Comparison(str(candidate), reference_name, len(reference), max_diff, agreement)
