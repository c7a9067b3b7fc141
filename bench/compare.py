"""`bench compare`: onnxruntime vs the TensorFlow model it came from, and the model's variants.

Side by side in one run, same machine, same inputs, same timing loop, at each batch size:
  * onnxruntime on the float32 ONNX model,
  * each variant (default: STEM.float16.onnx and STEM.int8.onnx beside the model, where present,
    as `alexnet-export` writes them),
  * TensorFlow/Keras on the model it was exported from (default: model.keras beside the ONNX file),
    called through one `tf.function` (the fastest plain-Keras inference path; `model.predict`
    adds a tf.data pipeline per call).
Every row's ratio is its throughput over TensorFlow's at that batch (onnxruntime float32's
where TensorFlow is left out).

    bench compare --model runs/alexnet/alexnet.onnx --batch 1,32,256 --json compare.json
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from alexnet.cli import UsageError
from bench import inputs as inputs_lib
from bench.measure import InputConfig, measure_onnx, model_record, session_environment
from bench.results import BenchResult, Row
from bench.runner import Progress, RunConfig, measure
from bench.session import SessionConfig, open_session

REFERENCE_LABEL = "onnxruntime float32"
TF_LABEL = "tensorflow float32"


def default_variants(model: Path) -> dict[str, Path]:
    """The export step's variants beside the model (alexnet.float16.onnx, alexnet.int8.onnx), where present."""
    from export.variants import VARIANTS, variant_path
    found = {}
    for variant in VARIANTS:
        path = variant_path(model, variant)
        if path.is_file():
            found[f"onnxruntime {variant}"] = path
    return found


def default_keras(model: Path) -> Path | None:
    path = model.with_name("model.keras")
    return path if path.is_file() else None


class TensorFlowModel:
    """A Keras model behind the same zero-argument step the ONNX rows use."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise UsageError(f"Keras model {path} does not exist: pass --keras PATH or --no-tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        import alexnet.model  # noqa: F401  registers the custom layers for load_model
        try:
            self.model = keras.models.load_model(path, compile=False)
        except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors, ...
            raise UsageError(f"cannot load Keras model {path} ({type(exc).__name__}): pass a .keras file "
                             "saved by the training job") from None
        self.tf = tf
        self._call = tf.function(lambda *xs: self.model(list(xs) if len(xs) > 1 else xs[0], training=False),
                                 reduce_retracing=True)
        self.path = path

    def step(self, pool: Sequence[dict], order: Sequence[str]) -> Callable[[], Any]:
        call = self._call
        shapes = [tuple(t.shape) for t in self.model.inputs]
        feeds = itertools.cycle([[to_keras_layout(feed[name], shape) for name, shape in zip(order, shapes)]
                                 for feed in pool])
        # .numpy(): onnxruntime hands back host arrays, so TensorFlow must too.
        return lambda: call(*next(feeds)).numpy()

    @property
    def device(self) -> str:
        return "TensorFlow GPU" if self.tf.config.list_physical_devices("GPU") else "TensorFlow CPU"

    def record(self) -> dict[str, Any]:
        threading = self.tf.config.threading
        return {"version": self.tf.__version__, "device": self.device,
                "intra_op_threads": threading.get_intra_op_parallelism_threads(),
                "inter_op_threads": threading.get_inter_op_parallelism_threads()}


def to_keras_layout(array: np.ndarray, keras_shape: tuple) -> np.ndarray:
    """The same samples in the Keras model's layout: an NCHW export's feed transposed back to NHWC.

    Done once, before timing: the TensorFlow row measures the model, not a transpose.
    """
    def fits(shape):
        return len(shape) == len(keras_shape) and all(k is None or k == d for k, d in zip(keras_shape[1:], shape[1:]))
    if fits(array.shape):
        return array
    if array.ndim == 4 and fits(array.shape[:1] + array.shape[2:] + array.shape[1:2]):
        return np.ascontiguousarray(array.transpose(0, 2, 3, 1))
    raise UsageError(f"the ONNX input shape {list(array.shape)} does not fit the Keras model's input "
                     f"{list(keras_shape)}: pass the --keras model this ONNX file was exported from")


def run_compare(model: Path, *, batches: Sequence[int], session_config: SessionConfig, inputs: InputConfig,
                run_config: RunConfig, keras_path: Path | None, variants: dict[str, Path],
                progress_for: Callable[[str], Any]) -> BenchResult:
    """`progress_for(description)`: a context manager yielding a progress callback (or None)."""
    main = open_session(model, session_config)
    sessions = {REFERENCE_LABEL: main, **{label: open_session(path, session_config)
                                          for label, path in variants.items()}}
    tf_model = TensorFlowModel(keras_path) if keras_path else None
    specs = inputs_lib.input_specs(main.session)
    order = [s.name for s in specs]
    rows: list[Row] = []
    for batch in batches:
        batch_rows = []
        for label, bs in sessions.items():
            with progress_for(f"{label} batch {batch}") as progress:
                batch_rows.append(measure_onnx(bs, batch=batch, inputs=inputs, run=run_config, label=label,
                                               progress=progress))
        if tf_model is not None:
            with progress_for(f"{TF_LABEL} batch {batch}") as progress:
                batch_rows.append(_measure_tf(tf_model, specs, order, batch, inputs, run_config, progress))
        reference = batch_rows[-1] if tf_model is not None else batch_rows[0]
        rows.extend(dataclasses.replace(r, ratio=r.throughput.samples_per_second /
                                        reference.throughput.samples_per_second) for r in batch_rows)
    notes = [f"ratio: throughput over {reference.label}'s at the same batch"]
    notes.extend(f"{label}: {bs.fallback}" for label, bs in sessions.items() if bs.fallback)
    config = {"batches": list(batches), "session": dataclasses.asdict(session_config),
              "inputs": dataclasses.asdict(inputs), "run": dataclasses.asdict(run_config),
              "keras": str(keras_path) if keras_path else None,
              "variants": {label: str(p) for label, p in variants.items()}}
    env = session_environment(main)
    if tf_model is not None:
        env["tensorflow"] = tf_model.record()
    return BenchResult(kind="compare", config=config, environment=env, rows=tuple(rows),
                       model=model_record(main), requested_providers=session_config.providers,
                       providers=main.providers, fallback=main.fallback, notes=tuple(notes))


def _measure_tf(tf_model: TensorFlowModel, specs, order, batch: int, inputs: InputConfig, run_config: RunConfig,
                progress: Progress | None) -> Row:
    pool = inputs.feeds(specs, batch)
    samples = inputs_lib.batch_of(specs, {name: a.shape for name, a in pool[0].items()})
    times = measure(tf_model.step(pool, order), run_config, progress)
    return Row.from_times(label=TF_LABEL, engine="tensorflow", model=str(tf_model.path), batch=samples,
                          providers=(tf_model.device,), times_s=times)

