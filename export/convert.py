"""Keras 3 -> ONNX: `export_keras`, the one entry point that exports a model to a file.

    from export.convert import export_keras
    result = export_keras("runs/alexnet/model.keras", "runs/alexnet/alexnet.onnx")   # opset: newest both support
    result = export_keras(model, "alexnet_nchw.onnx", nchw=True, preprocessing=False)
    result = export_keras(source, "alexnet.onnx", check=export.verify.FileCheck(...))  # numerical check too

    result = export_keras(source, "alexnet.onnx", rewrites=("batchnorm",))   # only some exact rewrites

Why it is five steps in five modules: each has its own reasons and its own tests.
  export.opsets      which opset (probed at run time from tf2onnx and onnxruntime)
  export.source      what is converted (loaded, float32 compute, with or without its preprocessing)
  export.conversion  how (tf2onnx, weights kept out of the conversion: the fast path)
  export.rewrite     exact graph rewrites that make onnxruntime faster (each named and switchable)
  export.writing     the file (metadata; written once, checked before it is renamed into place)
This module only sequences them and times each, so `python -m export.benchmark` and the
record beside every export can say where the time went.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import keras

from export import METHODS, REWRITES, conversion, rewrite, writing
from export.opsets import resolve_opset
from export.source import Source, load_source
from toolkit.cli import UsageError
from toolkit.files import require_parent_dir
from toolkit.runs import ExportResult


def export_keras(
    model_or_path: Source | keras.Model | str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    opset: int | None = None,
    nchw: bool = False,
    method: str = "fast",
    preprocessing: bool = True,
    keep_precision: bool = False,
    class_names: Sequence[str] | None = None,
    check: Callable[[Path], None] | None = None,
    rewrites: Sequence[str] = REWRITES,
) -> ExportResult:
    """Export a single-input, single-output Keras model to a checked, loadable ONNX file.

    opset: default the newest that tf2onnx and onnxruntime both support.
    nchw: the ONNX input takes NCHW images (GPU providers' layout); default NHWC, as Keras.
    method: "fast" (weights kept out of conversion) or "stock" (plain tf2onnx from_function).
    preprocessing=False leaves the model's leading preprocessing layers out of the
    graph (see `export.source.split_preprocessing`); the input is then what those layers output.
    keep_precision=True exports a mixed-precision model's 16-bit compute as is
    (default: float32, see `export.source.as_float32`).
    class_names: recorded in the metadata; default from the training run's summary.json.
    The last three are ignored when a prepared `Source` is passed.
    check: called with the file under its temporary name after onnx.checker and the
    onnxruntime load; an exception from it keeps the file from being renamed into place.
    rewrites: the export.rewrite passes to apply (default all; () for the converter's graph as is).
    """
    if method not in METHODS:
        raise UsageError(f"unknown conversion method {method!r}: use one of {', '.join(METHODS)}")
    output_path = require_parent_dir(output_path)
    opset = resolve_opset(opset)
    started = time.perf_counter()
    source = model_or_path if isinstance(model_or_path, Source) else load_source(
        model_or_path, preprocessing=preprocessing, keep_precision=keep_precision, class_names=class_names)
    timings = {"load": time.perf_counter() - started}
    tick = time.perf_counter()
    converted = conversion.convert(source.model, source.input_name, source.output_name, opset=opset, nchw=nchw,
                                   method=method)
    timings["convert"] = time.perf_counter() - tick
    tick = time.perf_counter()
    applied = rewrite.rewrite(converted.proto, rewrites)
    timings["rewrite"] = time.perf_counter() - tick
    tick = time.perf_counter()
    written = writing.write(converted, output_path, source, nchw=nchw, check=check, rewrites=applied)
    timings["write_and_check"] = time.perf_counter() - tick
    return ExportResult(
        path=str(output_path), opset=opset, method=converted.method, input_name=source.input_name,
        output_name=source.output_name, input_dtype=written.input.dtype, input_shape=written.input.shape,
        layout=written.input.layout, preprocessing=written.input.description,
        size_bytes=os.path.getsize(output_path), seconds=time.perf_counter() - started, metadata=written.metadata,
        fallback_reason=converted.fallback_reason, source_sha256=source.sha256, timings=timings, rewrites=applied)
