"""The whole export: convert, verify, make and verify the variants, report, record.

    from export.job import ExportJob
    from export.pipeline import run
    run(ExportJob(model="runs/alexnet/model.keras", output="runs/alexnet/alexnet.onnx",
                  dataset="fashion_mnist"))

Every file is written once, through `toolkit.onnxfile.write_checked`: under a temporary
name, onnx.checker, an onnxruntime load, then this job's numerical check
(`export.verify.FileCheck`: the float32 file and the float16 variant within tolerance of
Keras, the int8 variant's top-1 agreement with the float32 file), into a staged set
(`export.writing.staged`) that is put in place only after every file passed, so a failed run
leaves no plausible-looking file behind and a killed one no mix of two exports. The record
(`toolkit.runs.ExportRecord`: config, environment, every comparison, every file's sha256) goes
to OUTPUT.json, e.g. alexnet.onnx.json.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from export import report, samples, variants, verify, writing
from export.convert import export_keras
from export.job import ExportJob
from export.source import Source, load_source
from toolkit import cli
from toolkit.environment import collect
from toolkit.onnxfile import loadable_providers
from toolkit.runs import ExportedFile, ExportRecord, variant_path


def _inputs(job: ExportJob, source: Source, split: str, count: int) -> tuple[np.ndarray, str]:
    """(inputs as the exported model takes them, NHWC; where they came from)."""
    shape, dtype = source.raw_input
    if job.dataset:
        raw = samples.fit_to_input(samples.dataset_images(job.dataset, job.data_dir, split, count), shape, dtype)
        origin = f"{len(raw)} {job.dataset} {split} images"
    else:
        raw = samples.random_inputs(shape, dtype, count, job.seed)
        origin = f"{len(raw)} random inputs (seed {job.seed})"
    return source.to_model_input(raw), origin


def _variant(job: ExportJob, source: Source, steps: report.Steps, float32: verify.FileCheck, stage: writing.StagedSet,
             variant: str) -> tuple[Path, verify.FileCheck]:
    """One variant of the staged float32 file (which `float32` verified), verified before it is renamed into the
    stage; returns its final path."""
    output = stage.path(job.resolved_output)
    final = variant_path(job.resolved_output, variant)
    path = stage.path(final)
    if variant == "float16":
        check = verify.FileCheck(path.name, float32.inputs, float32.keras, nchw=job.nchw, float32=float32,
                                 max_abs_diff=job.float16_tolerance)
        with steps.step(f"float16 variant {path.name}, verified"):
            variants.to_float16(output, path, check)
    else:
        check = verify.FileCheck(path.name, float32.inputs, float32.keras, nchw=job.nchw, float32=float32,
                                 min_agreement=job.int8_min_agreement)
        with steps.step(f"int8 variant {path.name} (calibrating), verified"):
            calibration, _ = _inputs(job, source, "train", job.calibration_samples)
            if job.nchw:
                calibration = np.ascontiguousarray(np.moveaxis(calibration, -1, 1))
            variants.to_int8(output, path, calibration, check)
    return final, check


def _file(stage: writing.StagedSet, path: Path, variant: str, opset: int,
          check: verify.FileCheck) -> tuple[report.Row, ExportedFile]:
    """One staged file as the closing table shows it and as the record keeps it (under its final name)."""
    providers = loadable_providers(stage.path(path))
    size = os.path.getsize(stage.path(path))
    vs_float32 = check.vs_float32
    row = report.Row(file=path.name, size_bytes=size, opset=opset, providers=providers,
                     max_abs_diff=check.checked_vs_keras.max_abs_diff,
                     top1_agreement=check.checked_vs_keras.top1_agreement,
                     top1_vs_float32=None if vs_float32 is None else vs_float32.top1_agreement)
    entry = ExportedFile(path=str(path), variant=variant, vs_keras=check.checked_vs_keras, vs_float32=vs_float32,
                         size_bytes=size, providers=tuple(providers), sha256=stage.sha256(path))
    return row, entry


def run(job: ExportJob, console: Console | None = None) -> ExportRecord:
    """Run the export job; returns the record also written to OUTPUT.json. CheckFailed if a check fails."""
    console = console or cli.console(stderr=True)
    output = Path(job.resolved_output)
    started = time.perf_counter()
    with writing.staged(output) as stage:
        with report.Steps(console) as steps:
            with steps.step(f"load {job.model}"):
                source = load_source(job.model, preprocessing=job.preprocessing, keep_precision=job.keep_precision,
                                     class_names=job.class_names)
            with steps.step("test inputs"):
                x, origin = _inputs(job, source, "test", job.samples)
                float32 = verify.FileCheck(output.name, x, verify.run_keras(source.model, x), nchw=job.nchw,
                                           max_abs_diff=job.tolerance)
            with steps.step(f"convert ({job.method} path), check, verify {output.name} against Keras"):
                result = export_keras(source, stage.path(output), opset=job.opset, nchw=job.nchw, method=job.method,
                                      check=float32, rewrites=job.resolved_rewrites)
            files = [("float32", output, float32)]
            files += [(variant, *_variant(job, source, steps, float32, stage, variant))
                      for variant in job.resolved_variants]
        rows, entries = zip(*(_file(stage, path, variant, result.opset, check) for variant, path, check in files))
        record = ExportRecord(config=job.to_json(), verification_inputs=origin,
                              export=dataclasses.replace(result, path=str(output)), files=entries,
                              seconds=time.perf_counter() - started, environment=collect())
        stage.commit(record)
    console.print(report.table(list(rows), f"{result.input_name}: {result.input_dtype} {result.layout} "
                                           f"{result.input_shape}; verified on {origin}"))
    if result.fallback_reason:
        console.print(f"[yellow]note: the fast path failed ({result.fallback_reason}); the stock path was used")
    return record
