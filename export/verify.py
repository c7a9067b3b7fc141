"""Verification: the one place that compares an exported model with its reference.

    from export.verify import run_keras, run_onnx, compare
    reference = run_keras(model, images)
    result = compare("alexnet.onnx", "keras", reference, run_onnx("alexnet.onnx", images))
    result.require(max_abs_diff=1e-4)            # CheckFailed (exit 1) outside the tolerance

    check = FileCheck("alexnet.onnx", images, reference, max_abs_diff=1e-4)
    export_keras(model, "alexnet.onnx", check=check)   # checked before it gets its name; check.vs_keras

The ONNX side runs in onnxruntime (CPU unless providers are given), the Keras side in
TensorFlow, on the same inputs; an NCHW export gets the same images transposed.
`FileCheck` is the numerical check `toolkit.onnxfile.write_checked` runs on a file under
its temporary name, so an export or variant outside its limits never gets its final name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from toolkit.cli import CheckFailed
from toolkit.onnxfile import load_session
from toolkit.runs import Comparison

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


def compare(candidate: str, reference_name: str, reference: np.ndarray, outputs: np.ndarray) -> Comparison:
    if reference.shape != outputs.shape:
        raise CheckFailed(f"{candidate}: output shape {outputs.shape} differs from {reference_name}'s "
                          f"{reference.shape}")
    diff = np.abs(reference.astype(np.float64) - outputs.astype(np.float64))
    max_diff = float(np.nanmax(diff)) if np.isfinite(diff).all() else float("inf")
    agreement = float(np.mean(reference.reshape(len(reference), -1).argmax(1)
                              == outputs.reshape(len(outputs), -1).argmax(1)))
    return Comparison(str(candidate), reference_name, len(reference), max_diff, agreement)


@dataclass
class FileCheck:
    """The numerical check of one exported file: run it on `inputs`, compare, enforce the limits.

    max_abs_diff limits the distance from Keras' outputs; min_agreement, the top-1 agreement
    with the float32 file's outputs (`float32`, that file's own check, already run: a variant
    stands in for the float32 file). Outputs and comparisons stay here for the record.
    """

    name: str                                 # the file's final name, for messages
    inputs: np.ndarray                        # NHWC, as the Keras model takes them
    keras: np.ndarray                         # the Keras model's outputs on `inputs`
    nchw: bool = False                        # the file takes NCHW: it gets `inputs` transposed
    float32: FileCheck | None = None
    max_abs_diff: float | None = None
    min_agreement: float | None = None
    outputs: np.ndarray | None = field(default=None, init=False)
    vs_keras: Comparison | None = field(default=None, init=False)
    vs_float32: Comparison | None = field(default=None, init=False)

    def __post_init__(self):
        if self.min_agreement is not None and self.float32 is None:
            raise ValueError("min_agreement is agreement with the float32 file: pass its check as float32")

    @property
    def checked_outputs(self) -> np.ndarray:
        """`outputs`, which exist once the check has run on a file."""
        if self.outputs is None:
            raise ValueError(f"{self.name}: read before the check ran on it")
        return self.outputs

    @property
    def checked_vs_keras(self) -> Comparison:
        """`vs_keras`, which exists once the check has run on a file."""
        if self.vs_keras is None:
            raise ValueError(f"{self.name}: read before the check ran on it")
        return self.vs_keras

    def __call__(self, path: str | os.PathLike) -> None:
        self.outputs = run_onnx(path, self.inputs, nchw=self.nchw)
        self.vs_keras = compare(self.name, "keras", self.keras, self.outputs)
        if self.float32 is not None:
            self.vs_float32 = compare(self.name, self.float32.name, self.float32.checked_outputs, self.outputs)
        self.vs_keras.require(max_abs_diff=self.max_abs_diff)
        if self.vs_float32 is not None:
            self.vs_float32.require(min_agreement=self.min_agreement)
