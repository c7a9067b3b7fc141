"""`bench compare`: onnxruntime vs the TensorFlow model it came from, and the model's variants.

Side by side in one run, same machine, same inputs, same timing loop, at each batch size, each
engine in a fresh process of its own (one at a time) so no runtime's idle threads tax another's:
  * onnxruntime on the float32 ONNX model,
  * each variant (default: STEM.float16.onnx and STEM.int8.onnx beside the model, where present,
    as `alexnet-export` writes them),
  * TensorFlow/Keras on the model it was exported from (default: model.keras beside the ONNX file),
    called through one `tf.function` (the fastest plain-Keras inference path; `model.predict`
    adds a tf.data pipeline per call), fed the same samples as onnxruntime.
Each is an engine of bench/engines.py, measured by the same timing loop.
Every row's ratio is its throughput over TensorFlow's at that batch (onnxruntime float32's
where TensorFlow is left out), and each row gets a verdict against that reference, "faster",
"slower" or "no significant difference", from a paired t-test on the rounds' log ratios
(bench/check.py paired_comparison): a change of load between rounds hits both sides of a round.
Both sides run with every usable logical CPU: TensorFlow with its
own defaults, onnxruntime with the benchmark's session defaults (bench/session.py: one intra-op
thread per usable CPU, not pinned, no spin-waiting; --intra-op-threads 0 and
--session-config session.intra_op.allow_spinning=1 give onnxruntime's own defaults back).

    bench compare --model runs/alexnet/alexnet.onnx --batch 1,32,256 --json compare.json
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.check import paired_comparison
from bench.engines import Engine, EngineRecord, OnnxEngine, TensorFlowEngine
from bench.inputs import InputConfig, InputSpec
from bench.measure import engine_result
from bench.results import BenchResult, Row
from bench.runner import RunConfig, measure
from bench.session import SessionConfig
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


@dataclasses.dataclass(frozen=True)
class Contender:
    """One engine to measure, as the parent process describes it to the engine's own process."""

    label: str
    path: Path
    engine: str = OnnxEngine.name   # or TensorFlowEngine.name


@dataclasses.dataclass(frozen=True)
class Measured:
    """What an engine's process sends back for one round at one batch size."""

    times: tuple[float, ...]
    samples: int
    record: EngineRecord


# Per child process: the one engine it serves, loaded once, and the inputs of the batch size it is at.
_CHILD: dict[str, Any] = {}


def _open(contender: Contender, session_config: SessionConfig, signature: Sequence[InputSpec]) -> Engine:
    if contender.engine == TensorFlowEngine.name:
        return TensorFlowEngine(contender.path, signature)
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
    if _CHILD.get("batch") != batch:
        _CHILD.update(batch=batch, prepared=engine.prepare(batch, inputs))
    else:
        run_config = dataclasses.replace(run_config, warmup=0)
    times = measure(engine.step(_CHILD["prepared"]), run_config)
    return Measured(times=tuple(times), samples=_CHILD["prepared"].samples, record=engine.record())


def _session_summary(config: SessionConfig) -> str:
    threads = (f"{config.intra_op_threads} intra-op threads" if config.intra_op_threads
               else "onnxruntime's default intra-op threads (physical cores, pinned)")
    entries = ", ".join(f"{k}={v}" for k, v in config.entries)
    return f"{threads}, graph optimisation {config.graph_optimization}" + (f", {entries}" if entries else "")


def run_compare(model: Path, *, batches: Sequence[int], session_config: SessionConfig, inputs: InputConfig,
                run_config: RunConfig, keras_path: Path | None, variants: dict[str, Path], rounds: int,
                progress: Callable[[str, int, int], Any]) -> BenchResult:
    """`progress(description, step, steps)` is called as each engine starts a round (bench.report.MeasureProgress).

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
    contenders = [Contender(REFERENCE_LABEL, model), *(Contender(label, path) for label, path in variants.items())]
    if keras_path is not None:
        contenders.append(Contender(TF_LABEL, keras_path, TensorFlowEngine.name))
    share = dataclasses.replace(run_config, min_time=run_config.min_time / rounds,
                                min_iterations=-(-run_config.min_iterations // rounds))
    context = multiprocessing.get_context("spawn")
    pools = {c.label: concurrent.futures.ProcessPoolExecutor(1, mp_context=context) for c in contenders}
    times: dict[tuple[str, int], list[float]] = {}
    rounds_run: dict[tuple[str, int], list[int]] = {}
    samples: dict[tuple[str, int], int] = {}
    records: dict[str, EngineRecord] = {}
    steps = len(batches) * rounds * len(contenders)
    try:
        for batch_index, batch in enumerate(batches):
            for round_index in range(rounds):
                for index, contender in enumerate(contenders):
                    progress(f"compare: batch {batch}, {contender.label}, round {round_index + 1}/{rounds}",
                             (batch_index * rounds + round_index) * len(contenders) + index, steps)
                    # The reference measures first: its signature is known before TensorFlow needs it.
                    signature = records[REFERENCE_LABEL].inputs if REFERENCE_LABEL in records else ()
                    measured: Measured = pools[contender.label].submit(
                        _child_measure, contender, signature, batch, session_config, inputs, share).result()
                    times.setdefault((contender.label, batch), []).extend(measured.times)
                    rounds_run.setdefault((contender.label, batch), []).append(len(measured.times))
                    samples[(contender.label, batch)] = measured.samples
                    records[contender.label] = measured.record
    finally:
        for pool in pools.values():
            pool.shutdown()
    rows: list[Row] = []
    comparisons = []
    reference = TF_LABEL if keras_path is not None else REFERENCE_LABEL
    for batch in batches:
        batch_rows = [dataclasses.replace(records[c.label].row(c.label, samples[(c.label, batch)],
                                                               times[(c.label, batch)]),
                                          rounds=tuple(rounds_run[(c.label, batch)])) for c in contenders]
        base_row = next(r for r in batch_rows if r.label == reference)
        base = base_row.throughput.samples_per_second
        rows.extend(dataclasses.replace(r, ratio=r.throughput.samples_per_second / base) for r in batch_rows)
        comparisons.extend(paired_comparison(base_row, r) for r in batch_rows if r is not base_row)
    notes = [f"ratio: throughput over {reference}'s at the same batch",
             f"each engine ran in its own process; at each batch they took turns, {rounds} rounds",
             f"onnxruntime session: {_session_summary(session_config)}"]
    if keras_path is not None:
        notes.append("tensorflow: its defaults (intra/inter-op threads 0 = every logical CPU), float32, "
                     "one tf.function around model(x, training=False)")
    notes.extend(f"{label}: {record.fallback}" for label, record in records.items() if record.fallback)
    config = {"batches": list(batches), "rounds": rounds, "session": dataclasses.asdict(session_config),
              "inputs": dataclasses.asdict(inputs), "run": dataclasses.asdict(run_config),
              "keras": str(keras_path) if keras_path else None,
              "variants": {label: str(p) for label, p in variants.items()}}
    others = [records[c.label] for c in contenders[1:]]
    return engine_result("compare", records[REFERENCE_LABEL], rows, config, notes, others, comparisons)
