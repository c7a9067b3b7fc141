"""An export job: every option of `python -m export`, with its defaults, validated on construction.

    from export.job import ExportJob
    job = ExportJob(model="runs/alexnet/model.keras", dataset="fashion_mnist")   # UsageError names the fix
    job.output, job.variants        # runs/alexnet/model.onnx, ("float16", "int8")

Why apart from export.pipeline, which runs it: building and validating a job needs neither
TensorFlow nor onnxruntime, so `python -m export --help` and bad input are answered at once
(tests/toolkit/test_imports.py checks it), before seconds of framework imports.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from export import METHODS, REWRITES
from toolkit.cli import UsageError
from toolkit.constants import REAL_DATASETS
from toolkit.files import require_parent_dir
from toolkit.runs import VARIANTS, RunDir

T = TypeVar("T")

DEFAULT_SAMPLES = 256
DEFAULT_CALIBRATION_SAMPLES = 512
DEFAULT_TOLERANCE = 1e-4
DEFAULT_FLOAT16_TOLERANCE = 1e-2
DEFAULT_INT8_MIN_AGREEMENT = 0.99


@dataclass
class ExportJob:
    """Everything `python -m export` does, validated on construction (UsageError names the fix)."""

    model: str
    output: str | None = None             # default: MODEL with the suffix .onnx
    opset: int | None = None              # default: newest tf2onnx and onnxruntime both support
    nchw: bool = False
    preprocessing: bool = True
    keep_precision: bool = False
    method: str = "fast"
    class_names: list[str] | None = None  # default: from summary.json beside the model
    dataset: str | None = None            # default: from summary.json beside the model; else random inputs
    data_dir: str | None = None
    samples: int = DEFAULT_SAMPLES
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    variants: tuple[str, ...] | None = None   # default: float16, plus int8 when there are real images
    tolerance: float = DEFAULT_TOLERANCE
    float16_tolerance: float = DEFAULT_FLOAT16_TOLERANCE
    int8_min_agreement: float = DEFAULT_INT8_MIN_AGREEMENT
    seed: int = 0
    rewrites: tuple[str, ...] | None = None   # export.rewrite passes; default all; () none
    no_rewrite: tuple[str, ...] = ()          # taken out of `rewrites`

    def __post_init__(self):
        if self.output is None:
            self.output = str(Path(self.model).with_suffix(".onnx"))
        if not self.output.endswith(".onnx"):
            raise UsageError(f"output {self.output} must end in .onnx: choose a name like alexnet.onnx")
        require_parent_dir(self.output)
        if self.method not in METHODS:
            raise UsageError(f"unknown --method {self.method!r}: use one of {', '.join(METHODS)}")
        for name in ("samples", "calibration_samples"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("tolerance", "float16_tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
        if not 0 <= self.int8_min_agreement <= 1:
            raise UsageError(f"--int8-min-agreement must be between 0 and 1, got {self.int8_min_agreement}")
        if self.dataset is None:
            summary = RunDir.of(self.model).summary_if_any()
            self.dataset = summary.dataset if summary and summary.dataset in REAL_DATASETS else None
        elif self.dataset not in REAL_DATASETS:
            raise UsageError(f"unknown dataset {self.dataset!r}: use one of {', '.join(REAL_DATASETS)}")
        if self.variants is None:
            self.variants = ("float16", "int8") if self.dataset else ("float16",)
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise UsageError(f"unknown variant(s) {', '.join(sorted(unknown))}: use {', '.join(VARIANTS)}")
        unknown = set(self.rewrites or ()) | set(self.no_rewrite)
        unknown -= set(REWRITES)
        if unknown:
            raise UsageError(f"unknown rewrite(s) {', '.join(sorted(unknown))}: use {', '.join(REWRITES)} (or none)")
        chosen = REWRITES if self.rewrites is None else self.rewrites
        self.rewrites = tuple(name for name in REWRITES if name in chosen and name not in self.no_rewrite)
        if "int8" in self.variants and not self.dataset:
            raise UsageError("the int8 variant is calibrated on real images: pass --dataset (e.g. fashion_mnist) "
                             "or leave int8 out of --variants")

    # The defaults __post_init__ fills in, typed as the pipeline reads them.
    @property
    def resolved_output(self) -> str:
        return _resolved(self.output, "output")

    @property
    def resolved_variants(self) -> tuple[str, ...]:
        return _resolved(self.variants, "variants")

    @property
    def resolved_rewrites(self) -> tuple[str, ...]:
        return _resolved(self.rewrites, "rewrites")

    def to_json(self) -> dict:
        return asdict(self)


def _resolved(value: T | None, name: str) -> T:
    if value is None:
        raise ValueError(f"ExportJob.{name} read before __post_init__ resolved it")
    return value
