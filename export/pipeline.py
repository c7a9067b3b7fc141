"""The whole export: convert, verify, make and verify the variants, report, record.

    from export.pipeline import ExportJob, run
    run(ExportJob(model="runs/alexnet/model.keras", output="runs/alexnet/alexnet.onnx",
                  dataset="fashion_mnist"))

Every file is written under a temporary name and renamed into place only after its
own checks passed (onnx.checker, onnxruntime load, outputs within tolerance), so a
failed run leaves no plausible-looking file behind. The record (config, environment,
every comparison) goes to OUTPUT.json, e.g. alexnet.onnx.json.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from export import METHODS, report, samples, variants, verify
from toolkit import cli
from toolkit.cli import UsageError
from toolkit.constants import REAL_DATASETS
from toolkit.environment import collect
from toolkit.files import atomic_path, require_parent_dir, write_json_atomic
from toolkit.onnxfile import loadable_providers
from toolkit.runs import VARIANTS, RunDir, export_record_path, variant_path

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
        if "int8" in self.variants and not self.dataset:
            raise UsageError("the int8 variant is calibrated on real images: pass --dataset (e.g. fashion_mnist) "
                             "or leave int8 out of --variants")

    def to_json(self) -> dict:
        return asdict(self)


def _inputs(job: ExportJob, source, split: str, count: int) -> tuple[np.ndarray, str]:
    """(inputs as the exported model takes them, NHWC; where they came from)."""
    shape, dtype = source.raw_input
    if job.dataset:
        raw = samples.fit_to_input(samples.dataset_images(job.dataset, job.data_dir, split, count), shape, dtype)
        origin = f"{len(raw)} {job.dataset} {split} images"
    else:
        raw = samples.random_inputs(shape, dtype, count, job.seed)
        origin = f"{len(raw)} random inputs (seed {job.seed})"
    return source.to_model_input(raw), origin


def _row(path: Path, opset: int, vs_keras: verify.Comparison,
         vs_float32: verify.Comparison | None = None) -> report.Row:
    return report.Row(file=path.name, size_bytes=os.path.getsize(path), opset=opset,
                      providers=loadable_providers(path),
                      max_abs_diff=vs_keras.max_abs_diff, top1_agreement=vs_keras.top1_agreement,
                      top1_vs_float32=None if vs_float32 is None else vs_float32.top1_agreement)


def run(job: ExportJob, console: Console | None = None) -> dict:
    """Run the export job; returns the record also written to OUTPUT.json. CheckFailed if a check fails."""
    from export.convert import export_keras, load_source

    console = console or cli.console(stderr=True)
    output = Path(job.output)
    started = time.perf_counter()
    rows: list[report.Row] = []
    record: dict = {"config": job.to_json(), "files": []}
    with report.Steps(console) as steps:
        with steps.step(f"load {job.model}"):
            source = load_source(job.model, preprocessing=job.preprocessing, keep_precision=job.keep_precision,
                                 class_names=job.class_names)
        with steps.step("test inputs"):
            x, origin = _inputs(job, source, "test", job.samples)
            reference = verify.run_keras(source.model, x)
        record["verification_inputs"] = origin
        with atomic_path(output, suffix=".onnx") as tmp:
            with steps.step(f"convert ({job.method} path), check, load"):
                result = export_keras(source, tmp, opset=job.opset, nchw=job.nchw, method=job.method)
            with steps.step(f"verify {output.name} against Keras"):
                outputs = verify.run_onnx(tmp, x, nchw=result.nchw)
                float32 = verify.compare(output.name, "keras", reference, outputs)
                float32.require(max_abs_diff=job.tolerance)
        result.path = str(output)
        record["export"] = result.to_json()
        rows.append(_row(output, result.opset, float32))
        record["files"].append({"path": str(output), "variant": "float32", "vs_keras": float32.to_json()})

        layout_x = np.ascontiguousarray(np.moveaxis(x, -1, 1)) if result.nchw else x
        for variant in job.variants:
            path = variant_path(output, variant)
            with atomic_path(path, suffix=".onnx") as tmp:
                if variant == "float16":
                    with steps.step(f"float16 variant {path.name}"):
                        variants.to_float16(output, tmp)
                else:
                    with steps.step(f"int8 variant {path.name} (calibrating)"):
                        calibration, _ = _inputs(job, source, "train", job.calibration_samples)
                        if result.nchw:
                            calibration = np.ascontiguousarray(np.moveaxis(calibration, -1, 1))
                        variants.to_int8(output, tmp, calibration)
                with steps.step(f"verify {path.name}"):
                    variant_out = verify.run_onnx(tmp, layout_x)
                    vs_keras = verify.compare(path.name, "keras", reference, variant_out)
                    vs_float32 = verify.compare(path.name, output.name, outputs, variant_out)
                    if variant == "float16":
                        vs_keras.require(max_abs_diff=job.float16_tolerance)
                    else:
                        vs_float32.require(min_agreement=job.int8_min_agreement)
            rows.append(_row(path, result.opset, vs_keras, vs_float32))
            record["files"].append({"path": str(path), "variant": variant, "vs_keras": vs_keras.to_json(),
                                    "vs_float32": vs_float32.to_json()})
    for row, entry in zip(rows, record["files"]):
        entry.update(size_bytes=row.size_bytes, providers=row.providers)
    record["seconds"] = time.perf_counter() - started
    record["environment"] = collect()
    write_json_atomic(export_record_path(output), record)
    console.print(report.table(rows, f"{result.input_name}: {result.input_dtype} {result.layout} "
                                     f"{result.input_shape}; verified on {origin}"))
    if result.fallback_reason:
        console.print(f"[yellow]note: the fast path failed ({result.fallback_reason}); the stock path was used")
    return record

