"""`bench compare`: onnxruntime vs the TensorFlow model it came from, and the model's variants.

Side by side in one run, same machine, same inputs, same timing loop, at each batch size, each
engine in a fresh process of its own (one at a time) so no runtime's idle threads tax another's:
  * onnxruntime on the float32 ONNX model,
  * each variant (default: STEM.float16.onnx and STEM.int8.onnx beside the model, where present,
    as `alexnet-export` writes them),
  * TensorFlow/Keras on the model it was exported from (default: model.keras beside the ONNX file),
    called through one `tf.function` (the fastest plain-Keras inference path; `model.predict`
    adds a tf.data pipeline per call), fed the same samples as onnxruntime.
Each is an engine of bench/engines.py, measured by the same timing loop. With --profile, each
engine then says where its time went at each batch size (bench/profile.py): onnxruntime's
per-node profile, and TensorFlow's per-op one where its profiler gives it (on CPU).
Every row's ratio is its throughput over TensorFlow's at that batch (onnxruntime float32's
where TensorFlow is left out), and each row gets a verdict against that reference, "faster",
"slower" or "no significant difference", from a paired t-test on the rounds' log ratios
(bench/check.py paired_comparison): a change of load between rounds hits both sides of a round,
and within a round the engines go in mirrored order (A B B A), so a linear drift cancels too;
with --rounds 1 there is no verdict (between-run variation is not estimated).
Both sides run with every usable logical CPU: TensorFlow with its own defaults, onnxruntime with
the benchmark's session defaults (bench/session.py: one intra-op thread per usable CPU, not
pinned, no spin-waiting; --intra-op-threads 0 and --session-config
session.intra_op.allow_spinning=1 give onnxruntime's own defaults back).

    bench compare --model runs/alexnet/alexnet.onnx --batch 1,32,256 --json compare.json
    bench compare --batch 1,32 --profile                # and the top operators of each engine
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import multiprocessing
from pathlib import Path
from typing import Any, Callable, Sequence

from bench import profile
from bench.check import paired_comparison
from bench.engines import Engine, EngineRecord, OnnxEngine, TensorFlowEngine
from bench.inputs import InputConfig, InputSpec
from bench.measure import engine_result
from bench.resources import measure_with_resources
from bench.results import BenchResult, DeviceTimes, Profile, Resources, Row
from bench.runner import RunConfig, Stage
from bench.session import SessionConfig
from bench.stats import Comparison
from toolkit.cli import UsageError
from toolkit.runs import VARIANTS, RunDir, variant_path

REFERENCE_LABEL = "onnxruntime float32"
# Recorded in the result's config: the order within each round that the paired verdicts rely on.
TURN_ORDER = "mirrored: in each round the engines go in order, then in reverse (A B B A), each turn half the round"
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


@dataclasses.dataclass(frozen=True)
class Contender:
    """One engine to measure, as the parent process describes it to the engine's own process."""

    label: str
    path: Path
    engine: str = OnnxEngine.name   # or TensorFlowEngine.name
    session: SessionConfig | None = None  # None: the run's session config (`bench tune` gives each its own)


@dataclasses.dataclass(frozen=True)
class Measured:
    """What an engine's process sends back for one round at one batch size."""

    times: tuple[float, ...]
    samples: int
    record: EngineRecord
    resources: Resources
    device_times: DeviceTimes | None = None  # on a GPU, sampled in the first round at each batch size

    def then(self, later: "Measured") -> "Measured":
        """This turn and a `later` one of the same round as one: their runs in order, resources added."""
        return dataclasses.replace(later, times=self.times + later.times,
                                   resources=self.resources.then(later.resources),
                                   device_times=self.device_times or later.device_times)


# Per child process: the one engine it serves, loaded once, and the inputs of the batch size it is at.
_CHILD: dict[str, Any] = {}


def _open(contender: Contender, session_config: SessionConfig, signature: Sequence[InputSpec]) -> Engine:
    if contender.engine == TensorFlowEngine.name:
        return TensorFlowEngine(contender.path, signature, outputs=session_config.outputs)
    return OnnxEngine.open(contender.path, session_config)


def _child_measure(contender: Contender, signature: Sequence[InputSpec], batch: int, session_config: SessionConfig,
                   inputs: InputConfig, run_config: RunConfig) -> Measured:
    """In the engine's own process: one round at one batch size; warm-up only in its first round there.

    `signature`: the reference ONNX model's inputs, which TensorFlow's are generated from (so the
    same samples reach every engine); onnxruntime engines read their own model's.
    """
    if "engine" not in _CHILD:
        _CHILD["engine"] = _open(contender, session_config, signature)
    engine: Engine = _CHILD["engine"]
    first = _CHILD.get("batch") != batch
    if first:
        _CHILD.update(batch=batch, prepared=engine.prepare(batch, inputs))
    times, used = measure_with_resources(engine.step(_CHILD["prepared"]), run_config, load_seconds=engine.load_seconds,
                                         providers=engine.providers, first_run=first)
    return Measured(times=tuple(times), samples=_CHILD["prepared"].samples, record=engine.record(), resources=used,
                    device_times=engine.device_times(_CHILD["prepared"]) if first else None)


def _child_profile(contender: Contender, signature: Sequence[InputSpec], batches: Sequence[int],
                   session_config: SessionConfig, inputs: InputConfig, run_config: RunConfig) -> list[Profile]:
    """In the engine's own process, after its rounds: where its time goes at each batch size."""
    engine = _CHILD.pop("engine") if contender.engine == TensorFlowEngine.name else None
    _CHILD.clear()  # an onnxruntime engine profiles in a new session: the measured one's memory goes first
    return profile.profiles_of(engine, contender.path, session_config, label=contender.label, batches=batches,
                               inputs=inputs, run=run_config)


class EngineProcesses:
    """A process of its own for each contender, spawned once and kept for the whole run.

    Only one engine works at a time: two runtimes' thread pools in one process (both spin-wait
    after work) slowed each other down 2x here, which would measure the neighbour, not the engine.
    """

    def __init__(self, contenders: Sequence[Contender], session_config: SessionConfig, inputs: InputConfig):
        self.contenders = list(contenders)
        self.session_config = session_config
        self.inputs = inputs
        self.signature: tuple[InputSpec, ...] = ()
        context = multiprocessing.get_context("spawn")
        self._pools = {c.label: concurrent.futures.ProcessPoolExecutor(1, mp_context=context) for c in contenders}

    def __enter__(self) -> "EngineProcesses":
        return self

    def __exit__(self, *exc) -> None:
        for pool in self._pools.values():
            pool.shutdown()

    def _call(self, contender: Contender, function: Callable, batches: int | Sequence[int],
              run_config: RunConfig) -> Any:
        """`function(contender, signature, batches, session_config, inputs, run_config)` in the contender's process."""
        return self._pools[contender.label].submit(function, contender, self.signature, batches,
                                                   contender.session or self.session_config, self.inputs,
                                                   run_config).result()

    def take_turns(self, batch: int, run_config: RunConfig, rounds: int, progress: Stage | None, *,
                   name: str, done: int = 0, steps: int | None = None) -> dict[str, list[Measured]]:
        """At one batch size the contenders take turns for `rounds` rounds, each round a `rounds`-th of
        the minimum time and count, so load that drifts during the run (a shared machine) is spread
        over all of them instead of landing on whichever ran last. Within a round they go in order and
        then in mirrored order (A B B A), each turn half the round's share: a load that drifts linearly
        through the round then weighs on every contender alike (`TURN_ORDER`). The first contender
        measures first: its signature is known before TensorFlow needs it.

        `progress(description, step, steps)` (bench.report.MeasureProgress.step) is called as each
        contender starts its first turn of a round, `name` first in its description; these turns are
        steps `done` on of `steps` (default: just these)."""
        share = dataclasses.replace(run_config, min_time=run_config.min_time / (2 * rounds),
                                    min_iterations=-(-run_config.min_iterations // (2 * rounds)))
        steps = steps or rounds * len(self.contenders)
        measured: dict[str, list[Measured]] = {c.label: [] for c in self.contenders}
        for round_index in range(rounds):
            halves: dict[str, list[Measured]] = {c.label: [] for c in self.contenders}
            for index, contender in [*enumerate(self.contenders), *reversed(list(enumerate(self.contenders)))]:
                if progress is not None and not halves[contender.label]:
                    progress(f"{name}: batch {batch}, {contender.label}, round {round_index + 1}/{rounds}",
                             done + round_index * len(self.contenders) + index, steps)
                turn: Measured = self._call(contender, _child_measure, batch, share)
                halves[contender.label].append(turn)
                if not self.signature and contender is self.contenders[0]:
                    self.signature = turn.record.inputs
            for label, (first, second) in halves.items():
                measured[label].append(first.then(second))
        return measured

    def profiles(self, batches: Sequence[int], run_config: RunConfig, progress: Stage | None,
                 name: str) -> list[Profile]:
        """Every contender's profile at each batch size (ends their measuring: engines are released)."""
        found = []
        for index, contender in enumerate(self.contenders):
            if progress is not None:
                progress(f"{name}: profiling {contender.label}, {run_config.min_iterations} runs per batch size",
                         index, len(self.contenders))
            found.extend(self._call(contender, _child_profile, batches, run_config))
        return found


def row_of(label: str, rounds: Sequence[Measured]) -> Row:
    """One row from an engine's rounds at one batch size: all their runs (each round's count kept, for the
    paired verdicts), the resources of all of them."""
    used = functools.reduce(Resources.then, (m.resources for m in rounds))
    split = next((m.device_times for m in rounds if m.device_times is not None), None)
    row = rounds[-1].record.row(label, rounds[-1].samples, [t for m in rounds for t in m.times], used, split)
    return dataclasses.replace(row, rounds=tuple(len(m.times) for m in rounds))


# How every engine handed back its outputs (SessionConfig.outputs): the same way for all, said in the notes.
OUTPUT_NOTES = {
    "host": "outputs: every engine copies each run's outputs to the host (onnxruntime: session.run, or IO binding "
            "with the outputs bound to the CPU; TensorFlow: .numpy()); inputs come from host arrays in every run",
    "device": "outputs: every engine leaves each run's outputs in the memory it computed them in (onnxruntime: IO "
              "binding with the outputs bound to the GPU, synchronised; TensorFlow: the tensor, sync_devices); "
              "inputs come from host arrays in every run"}


def _session_summary(config: SessionConfig) -> str:
    threads = (f"{config.intra_op_threads} intra-op threads" if config.intra_op_threads
               else "onnxruntime's default intra-op threads (physical cores, pinned)")
    entries = ", ".join(f"{k}={v}" for k, v in config.entries)
    return f"{threads}, graph optimisation {config.graph_optimization}" + (f", {entries}" if entries else "")


def run_compare(model: Path, *, batches: Sequence[int], session_config: SessionConfig, inputs: InputConfig,
                run_config: RunConfig, keras_path: Path | None, variants: dict[str, Path], rounds: int,
                progress: Stage | None, profile_run: RunConfig | None = None) -> BenchResult:
    """`progress(description, step, steps)` is called as each engine starts a round (bench.report.MeasureProgress).

    Each engine (the model, each variant, TensorFlow) lives in a process of its own (`EngineProcesses`);
    at each batch size they take turns for `rounds` rounds. `profile_run`: afterwards, profile every
    engine at each batch size over that many runs (bench/profile.py).
    """
    if rounds < 1:
        raise UsageError(f"--rounds {rounds} must be >= 1")
    if keras_path is not None and not keras_path.is_file():
        raise UsageError(f"Keras model {keras_path} does not exist: pass --keras PATH or --no-tensorflow")
    contenders = [Contender(REFERENCE_LABEL, model), *(Contender(label, path) for label, path in variants.items())]
    if keras_path is not None:
        contenders.append(Contender(TF_LABEL, keras_path, TensorFlowEngine.name))
    turns: dict[int, dict[str, list[Measured]]] = {}
    profiles: list[Profile] = []
    per_batch = rounds * len(contenders)
    with EngineProcesses(contenders, session_config, inputs) as processes:
        for index, batch in enumerate(batches):
            turns[batch] = processes.take_turns(batch, run_config, rounds, progress, name="compare",
                                                done=index * per_batch, steps=len(batches) * per_batch)
        if profile_run is not None:
            profiles = processes.profiles(batches, profile_run, progress, "compare")
    records = {label: measured[-1].record for label, measured in turns[batches[-1]].items()}
    rows: list[Row] = []
    comparisons: list[Comparison] = []
    reference = TF_LABEL if keras_path is not None else REFERENCE_LABEL
    for batch in batches:
        batch_rows = [row_of(c.label, turns[batch][c.label]) for c in contenders]
        base_row = next(r for r in batch_rows if r.label == reference)
        base = base_row.throughput.samples_per_second
        rows.extend(dataclasses.replace(r, ratio=r.throughput.samples_per_second / base) for r in batch_rows)
        comparisons.extend(paired_comparison(base_row, r) for r in batch_rows if r is not base_row)
    notes = [f"ratio: throughput over {reference}'s at the same batch",
             f"each engine ran in its own process; at each batch they took turns, {rounds} rounds, each in "
             "mirrored order (A B B A) so a drift within a round cancels in the paired verdicts",
             f"onnxruntime session: {_session_summary(session_config)}",
             OUTPUT_NOTES[session_config.outputs]]
    if keras_path is not None:
        notes.append("tensorflow: its defaults (intra/inter-op threads 0 = every logical CPU), float32, "
                     "one tf.function around model(x, training=False); on a GPU with memory growth on, so "
                     "onnxruntime's process has room beside it")
    notes.extend(f"{label}: {record.fallback}" for label, record in records.items() if record.fallback)
    if profile_run is not None:
        missing = [c.label for c in contenders if not any(p.label == c.label for p in profiles)]
        notes.extend(f"{label}: no profile (TensorFlow's GPU kernels are not parsed)" for label in missing)
    config = {"batches": list(batches), "rounds": rounds, "turn_order": TURN_ORDER,
              "session": dataclasses.asdict(session_config),
              "inputs": dataclasses.asdict(inputs), "run": dataclasses.asdict(run_config),
              "keras": str(keras_path) if keras_path else None,
              "variants": {label: str(p) for label, p in variants.items()},
              "profile_run": None if profile_run is None else dataclasses.asdict(profile_run)}
    others = [records[c.label] for c in contenders[1:]]
    result = engine_result("compare", records[REFERENCE_LABEL], rows, config, notes, others, comparisons)
    return dataclasses.replace(result, profiles=tuple(profiles))
