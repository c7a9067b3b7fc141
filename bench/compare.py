"""`bench compare`: onnxruntime vs the TensorFlow model it came from, and the model's variants.

Side by side in one run, same machine, same inputs, same timing loop, at each batch size, each
engine in a fresh process of its own (one at a time) so no runtime's idle threads tax another's:
  * onnxruntime on the float32 ONNX model,
  * each variant (default: STEM.float16.onnx and STEM.int8.onnx beside the model, where present,
    as `alexnet-export` writes them),
  * TensorFlow/Keras on the model it was exported from (default: model.keras beside the ONNX file),
    called through one `tf.function` (the fastest plain-Keras inference path; `model.predict`
    adds a tf.data pipeline per call).
Every row's ratio is its throughput over TensorFlow's at that batch (onnxruntime float32's
where TensorFlow is left out). Both sides run with every usable logical CPU: TensorFlow with its
own defaults, onnxruntime with the benchmark's session defaults (bench/session.py: one intra-op
thread per usable CPU, not pinned, no spin-waiting; --intra-op-threads 0 and
--session-config session.intra_op.allow_spinning=1 give onnxruntime's own defaults back).

    bench compare --model runs/alexnet/alexnet.onnx --batch 1,32,256 --json compare.json
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import multiprocessing
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bench import inputs as inputs_lib
from bench.measure import InputConfig, model_record, session_environment
from bench.results import BenchResult, Row
from bench.runner import RunConfig, measure
from bench.session import SessionConfig, open_session
from toolkit.cli import UsageError
from toolkit.runs import VARIANTS, RunDir, variant_path

REFERENCE_LABEL = "onnxruntime float32"
TF_LABEL = "tensorflow float32"


def default_variants(model: Path) -> dict[str, Path]:
    """The export step's variants beside the model (alexnet.float16.onnx, alexnet.int8.onnx), where present."""
    found = {}
    for variant in VARIANTS:
        path = variant_path(model, variant)
        if path.is_file():
            found[f"onnxruntime {variant}"] = path
    return found


def default_keras(model: Path) -> Path | None:
    path = RunDir.of(model).model
    return path if path.is_file() else None


class TensorFlowModel:
    """A Keras model behind the same zero-argument step the ONNX rows use."""

    def __init__(self, path: Path):
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


@dataclasses.dataclass(frozen=True)
class _Engine:
    """One engine to measure: an ONNX file under onnxruntime, or a Keras file under TensorFlow."""

    label: str
    path: Path
    tensorflow: bool = False


# Per child process: the engine it serves, loaded once, and its input feeds per batch.
_CHILD: dict[str, Any] = {}


def _child_measure(engine: _Engine, specs: Sequence[inputs_lib.InputSpec] | None, batch: int,
                   session_config: SessionConfig, inputs: InputConfig, run_config: RunConfig):
    """In the engine's own process: one round at one batch size.

    Returns (times, samples per run, providers, fallback, record).
    """
    if "engine" not in _CHILD:
        _CHILD["engine"] = TensorFlowModel(engine.path) if engine.tensorflow else open_session(engine.path,
                                                                                               session_config)
    loaded = _CHILD["engine"]
    if engine.tensorflow:
        pool = inputs.feeds(specs, batch)
        step, providers, fallback = loaded.step(pool, [s.name for s in specs]), (loaded.device,), None
        record = {"environment": loaded.record()}
    else:
        specs = inputs_lib.input_specs(loaded.session)
        pool = inputs.feeds(specs, batch)
        step, providers, fallback = loaded.runner(pool), loaded.providers, loaded.fallback
        record = {"environment": session_environment(loaded), "model": model_record(loaded), "specs": specs}
    warm = _CHILD.setdefault("warm", set())
    times = measure(step, run_config if batch not in warm else dataclasses.replace(run_config, warmup=0))
    warm.add(batch)
    samples = inputs_lib.batch_of(specs, {name: a.shape for name, a in pool[0].items()})
    return times, samples, providers, fallback, record


def _session_summary(config: SessionConfig) -> str:
    threads = (f"{config.intra_op_threads} intra-op threads" if config.intra_op_threads
               else "onnxruntime's default intra-op threads (physical cores, pinned)")
    entries = ", ".join(f"{k}={v}" for k, v in config.entries)
    return f"{threads}, graph optimisation {config.graph_optimization}" + (f", {entries}" if entries else "")


def run_compare(model: Path, *, batches: Sequence[int], session_config: SessionConfig, inputs: InputConfig,
                run_config: RunConfig, keras_path: Path | None, variants: dict[str, Path], rounds: int,
                progress_for: Callable[[str], Any]) -> BenchResult:
    """`progress_for(description)`: a context manager yielding a progress callback.

    Each engine (the model, each variant, TensorFlow) lives in a process of its own, and only one
    measures at a time: two runtimes' thread pools in one process (both spin-wait after work)
    slow each other down 2x here, which would measure the neighbour, not the engine. At each
    batch size the engines take turns for `rounds` rounds, each round a `rounds`-th of the
    minimum time and count, so load that drifts during the run (a shared machine) is spread
    over all of them instead of landing on whichever ran last.
    """
    if rounds < 1:
        raise UsageError(f"--rounds {rounds} must be >= 1")
    if keras_path is not None and not keras_path.is_file():
        raise UsageError(f"Keras model {keras_path} does not exist: pass --keras PATH or --no-tensorflow")
    engines = [_Engine(REFERENCE_LABEL, model), *(_Engine(label, path) for label, path in variants.items())]
    if keras_path is not None:
        engines.append(_Engine(TF_LABEL, keras_path, tensorflow=True))
    share = dataclasses.replace(run_config, min_time=run_config.min_time / rounds,
                                min_iterations=-(-run_config.min_iterations // rounds))
    context = multiprocessing.get_context("spawn")
    pools = {e.label: concurrent.futures.ProcessPoolExecutor(1, mp_context=context) for e in engines}
    times: dict[tuple[str, int], list[float]] = {}
    samples: dict[tuple[str, int], int] = {}
    info: dict[str, tuple] = {}  # label -> (providers, fallback, record)
    try:
        for batch in batches:
            with progress_for(f"batch {batch}: {len(engines)} engines x {rounds} rounds") as progress:
                for round_index in range(rounds):
                    for engine in engines:
                        specs = info[REFERENCE_LABEL][2]["specs"] if engine.tensorflow else None
                        got, samples[(engine.label, batch)], *info[engine.label] = pools[engine.label].submit(
                            _child_measure, engine, specs, batch, session_config, inputs, share).result()
                        times.setdefault((engine.label, batch), []).extend(got)
                    progress(round_index + 1, 0.0)
    finally:
        for pool in pools.values():
            pool.shutdown()
    rows: list[Row] = []
    reference = TF_LABEL if keras_path is not None else REFERENCE_LABEL
    for batch in batches:
        batch_rows = [Row.from_times(label=e.label, engine="tensorflow" if e.tensorflow else "onnxruntime",
                                     model=str(e.path), batch=samples[(e.label, batch)],
                                     providers=info[e.label][0], times_s=times[(e.label, batch)])
                      for e in engines]
        base = next(r for r in batch_rows if r.label == reference).throughput.samples_per_second
        rows.extend(dataclasses.replace(r, ratio=r.throughput.samples_per_second / base) for r in batch_rows)
    main = info[REFERENCE_LABEL]
    notes = [f"ratio: throughput over {reference}'s at the same batch",
             f"each engine ran in its own process; at each batch they took turns, {rounds} rounds",
             f"onnxruntime session: {_session_summary(session_config)}"]
    if keras_path is not None:
        notes.append("tensorflow: its defaults (intra/inter-op threads 0 = every logical CPU), float32, "
                     "one tf.function around model(x, training=False)")
    notes.extend(f"{label}: {i[1]}" for label, i in info.items() if i[1])
    config = {"batches": list(batches), "rounds": rounds, "session": dataclasses.asdict(session_config),
              "inputs": dataclasses.asdict(inputs), "run": dataclasses.asdict(run_config),
              "keras": str(keras_path) if keras_path else None,
              "variants": {label: str(p) for label, p in variants.items()}}
    env = dict(main[2]["environment"])
    if keras_path is not None:
        env["tensorflow"] = info[TF_LABEL][2]["environment"]
    return BenchResult(kind="compare", config=config, environment=env, rows=tuple(rows), model=main[2]["model"],
                       requested_providers=session_config.providers, providers=main[0], fallback=main[1],
                       notes=tuple(notes))
