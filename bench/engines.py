"""Engines: one interface over the runtimes the benchmark measures, onnxruntime and TensorFlow.

An engine
  * prepares the inputs for a batch size before anything is timed (`prepare`): generated from
    one input signature, then put in the form its runtime takes (IO bindings, the Keras layout),
    so no conversion is ever measured;
  * runs one batch per call (`runner()`; `step()` cycles it through the prepared feeds, and is
    what `runner.measure` times);
  * says which providers it really ran on (`providers`, `fallback`): a GPU provider onnxruntime
    could not create is never reported under its name;
  * describes itself for the result's JSON (`record()`): an `EngineRecord`, plain values that
    cross process boundaries (`bench compare` runs each engine in a process of its own).

    from bench.engines import OnnxEngine, TensorFlowEngine
    from bench.inputs import InputConfig
    from bench.session import SessionConfig
    ort_engine = OnnxEngine.open("runs/alexnet/alexnet.onnx", SessionConfig())
    prepared = ort_engine.prepare(32, InputConfig())
    step = ort_engine.step(prepared)                                  # one batch of 32 per call
    tf_engine = TensorFlowEngine("runs/alexnet/model.keras", ort_engine.specs)  # the same samples
    ort_engine.record().providers, tf_engine.record().runtime["version"]

onnxruntime and TensorFlow are imported only when an engine of theirs is made.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
import itertools
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bench.inputs import InputConfig, InputSpec, batch_of, input_specs
from bench.results import Resources, Row
from bench.session import BenchSession, SessionConfig, open_session
from toolkit.cli import UsageError

Step = Callable[[], Any]


@dataclasses.dataclass(frozen=True)
class EngineRecord:
    """What an engine says about itself in a result."""

    engine: str                        # "onnxruntime" | "tensorflow": Row.engine, and its key in the environment
    model: str                         # the model file
    inputs: tuple[InputSpec, ...]      # the signature its inputs are generated from
    outputs: tuple[str, ...]
    requested_providers: tuple[str, ...]
    providers: tuple[str, ...]         # what it really ran on
    fallback: str | None               # why that is not what was requested
    runtime: dict[str, Any]            # version, device, threads: the JSON's environment[engine]

    def model_json(self) -> dict[str, Any]:
        return {"path": self.model, "inputs": [s.to_json() for s in self.inputs], "outputs": list(self.outputs)}

    def row(self, label: str, samples: int, times_s: Sequence[float], resources: Resources | None = None) -> Row:
        return Row.from_times(label=label, engine=self.engine, model=self.model, batch=samples,
                              providers=self.providers, times_s=times_s, resources=resources)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The inputs for one batch size, in the engine's own form."""

    samples: int                       # per run: the batch axis of the generated inputs
    feeds: tuple[Any, ...]             # cycled through, one per run


def cycling_step(run: Callable[[Any], Any], feeds: Sequence[Any]) -> Step:
    """One batch per call, cycling through `feeds`: all that the harness adds around `run`."""
    cycle = itertools.cycle(feeds)
    return lambda: run(next(cycle))


class Engine(abc.ABC):
    """A model on a runtime; subclasses set the attributes below and convert feeds."""

    name: str                          # as in EngineRecord.engine
    model_path: Path
    specs: tuple[InputSpec, ...]
    providers: tuple[str, ...]
    fallback: str | None = None
    load_seconds: float | None = None  # creating the session / loading the Keras file: its cold start

    def prepare(self, batch: int, inputs: InputConfig) -> Prepared:
        pool = inputs.feeds(self.specs, batch)
        samples = batch_of(self.specs, {name: array.shape for name, array in pool[0].items()})
        return Prepared(samples=samples, feeds=tuple(self.convert(feed) for feed in pool))

    def step(self, prepared: Prepared) -> Step:
        return cycling_step(self.runner(), prepared.feeds)

    @abc.abstractmethod
    def convert(self, feed: Mapping[str, np.ndarray]) -> Any:
        """One generated feed in the form `runner()` takes."""

    @abc.abstractmethod
    def runner(self) -> Callable[[Any], Any]:
        """The call that runs one batch on one converted feed, as direct as the runtime allows:
        the harness and `bench overhead`'s bare loop both time it."""

    @abc.abstractmethod
    def record(self) -> EngineRecord:
        """The engine's part of the result's JSON."""


class OnnxEngine(Engine):
    """An ONNX model under onnxruntime, in a `BenchSession` (providers, fallback, IO binding)."""

    name = "onnxruntime"

    def __init__(self, session: BenchSession):
        self.session = session
        self.model_path = session.model_path
        self.specs = tuple(input_specs(session.session))
        self.providers = session.providers
        self.fallback = session.fallback
        self.load_seconds = session.create_seconds

    @classmethod
    def open(cls, path: str | os.PathLike, config: SessionConfig, profile_prefix: str | None = None) -> OnnxEngine:
        """`profile_prefix`: run with onnxruntime's profiler on, its trace written to PREFIX_DATE.json."""
        return cls(open_session(path, config, profile_prefix))

    def convert(self, feed: Mapping[str, np.ndarray]) -> Any:
        return self.session.bind(feed) if self.session.io_binding else dict(feed)

    def runner(self) -> Callable[[Any], Any]:
        session = self.session.session
        if not self.session.io_binding:
            # A partial is C code: each call is session.run(None, feed) and nothing more.
            return functools.partial(session.run, None)
        run_bound = session.run_with_iobinding

        def run(binding):
            run_bound(binding)
            binding.synchronize_outputs()
        return run

    def record(self) -> EngineRecord:
        import onnxruntime as ort

        config = self.session.config
        return EngineRecord(
            engine=self.name, model=str(self.model_path), inputs=self.specs,
            outputs=tuple(o.name for o in self.session.session.get_outputs()),
            requested_providers=config.providers, providers=self.providers, fallback=self.fallback,
            runtime={"version": ort.__version__, "device": ort.get_device(), "providers": list(self.providers),
                     "available_providers": ort.get_available_providers(),
                     "intra_op_threads": config.intra_op_threads, "inter_op_threads": config.inter_op_threads,
                     "io_binding": self.session.io_binding})


class TensorFlowEngine(Engine):
    """A Keras model file (toolkit.kerasfile.load_keras) called through one `tf.function`.

    `tf.function` around `model(x, training=False)` is the fastest plain-Keras inference path
    (`model.predict` adds a tf.data pipeline per call). `specs` is the signature the inputs are
    generated from: the ONNX model's, so that both runtimes see the very same samples.
    """

    name = "tensorflow"

    def __init__(self, path: str | os.PathLike, specs: Sequence[InputSpec]):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        from toolkit.kerasfile import load_keras

        self.model_path = Path(path)
        start = time.perf_counter()
        self.model = model = load_keras(self.model_path)
        self.load_seconds = time.perf_counter() - start
        self.specs = tuple(specs)
        self._shapes = [tuple(t.shape) for t in model.inputs]
        if len(self._shapes) != len(self.specs):
            raise UsageError(f"the Keras model {path} takes {len(self._shapes)} input(s), the ONNX model "
                             f"{len(self.specs)}: pass the --keras model the ONNX file was exported from")
        self._tf = tf
        self._call = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False),
                                 reduce_retracing=True)
        self.providers = ("TensorFlow GPU" if tf.config.list_physical_devices("GPU") else "TensorFlow CPU",)

    def convert(self, feed: Mapping[str, np.ndarray]) -> Any:
        return [to_keras_layout(feed[spec.name], shape) for spec, shape in zip(self.specs, self._shapes)]

    def runner(self) -> Callable[[Any], Any]:
        call = self._call
        # .numpy(): onnxruntime hands back host arrays, so TensorFlow must too.
        return lambda xs: call(*xs).numpy()

    def record(self) -> EngineRecord:
        threading = self._tf.config.threading
        return EngineRecord(
            engine=self.name, model=str(self.model_path), inputs=self.specs,
            outputs=tuple(t.name for t in self.model.outputs), requested_providers=(), providers=self.providers,
            fallback=None,
            runtime={"version": self._tf.__version__, "device": self.providers[0],
                     "intra_op_threads": threading.get_intra_op_parallelism_threads(),
                     "inter_op_threads": threading.get_inter_op_parallelism_threads()})


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
