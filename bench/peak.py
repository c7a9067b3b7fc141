"""`bench peak`: this machine's attainable float32 and int8 matrix-multiply rates, measured with
onnxruntime itself, and every benchmark row's distance to them.

    bench peak                                  # writes runs/bench-peak.json (what later runs compare with)
    bench peak --shapes 2048x2048x2048 --json peak.json
    bench sweep --peak peak.json                # every row: GOP per sample, GOP/s and % of that peak
    bench compare                               # uses runs/bench-peak.json where it was measured here

Why: samples/s alone cannot say whether a model runs well; the rate of its arithmetic next to
the best rate this CPU reaches, through the same runtime, threads and session options, can.
The kernels (Y = A @ B, A M x K fed each run with fresh random values as every bench input, B a
K x N constant, prepacked as a model's weights are), at each of --shapes MxKxN:
  float32 MatMul, float32 Gemm;
  int8 MatMulInteger uint8 x int8 and int8 x int8, QLinearMatMul uint8 x int8 (a QDQ MatMul is
  fused into QLinearMatMul by onnxruntime, so it is the same kernel).
They take turns for --rounds rounds; a kernel's rate is its operations (2 x M x K x N per run)
over all its runs' time, and the peak of a precision is its fastest kernel's rate. Each kernel's
row also records the CPU time its runs took ("resources"): on a shared machine, where the wall-time
peak moves with the load, operations per CPU-second can still be set against a model's (`bench
compare` records each engine's CPU time the same way). Two shapes by
default, because the rate depends on the shape: square 1024 reached 190 GFLOP/s here, and
1024x2304x384 (AlexNet's conv3 as a matrix product: K = 3x3x256, N = 384) 217, more than the
square one and as much as onnxruntime's NCHWc convolutions reach in the model itself.

Which peak a run is compared with: --peak PATH, else runs/bench-peak.json (relative to the current
directory, like the default model) if it was measured on this CPU with the same intra-op threads;
otherwise the rows still get their operations and GOP/s, and a note says why there is no % of peak.
Operations per sample are counted from the ONNX graph (bench/opcount.py); TensorFlow's row uses
the reference ONNX model's count (the same network; where an exact rewrite removed work, e.g.
the grey channel convolved once instead of three times, TensorFlow's graph does that much more).
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from bench.inputs import InputConfig, InputSpec, resolve_shapes
from bench.resources import measure_with_resources
from bench.results import BenchResult, Peak, Resources, load
from bench.runner import RunConfig, Stage
from bench.session import SessionConfig
from toolkit import environment
from toolkit.cli import UsageError

DEFAULT_PEAK = Path("runs/bench-peak.json")
DEFAULT_SHAPES = ((1024, 1024, 1024), (1024, 2304, 384))


@dataclasses.dataclass(frozen=True)
class Kernel:
    label: str
    op: str
    a: str                  # numpy dtype names of A and B
    b: str
    precision: str


KERNELS = (
    Kernel("float32 MatMul", "MatMul", "float32", "float32", "float32"),
    Kernel("float32 Gemm", "Gemm", "float32", "float32", "float32"),
    Kernel("int8 MatMulInteger u8s8", "MatMulInteger", "uint8", "int8", "int8"),
    Kernel("int8 MatMulInteger s8s8", "MatMulInteger", "int8", "int8", "int8"),
    Kernel("int8 QLinearMatMul u8s8", "QLinearMatMul", "uint8", "int8", "int8"),
)


def parse_shapes(text: str) -> tuple[tuple[int, int, int], ...]:
    """"1024x1024x1024,1024x2304x384" -> ((1024, 1024, 1024), (1024, 2304, 384)); UsageError if not that."""
    try:
        shapes = tuple(tuple(int(d) for d in item.split("x")) for item in text.split(",") if item.strip())
    except ValueError:
        shapes = ()
    if not shapes or any(len(s) != 3 or min(s) < 64 for s in shapes):
        raise UsageError(f"--shapes {text!r}: give MxKxN sizes of at least 64 each (compute-bound), comma-separated, "
                         "e.g. 1024x1024x1024,1024x2304x384")
    return tuple((m, k, n) for m, k, n in shapes)


def kernel_model(kernel: Kernel, m: int, k: int, n: int):
    """Y = A @ B as one node; A [m, k] the input, B [k, n] a constant."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    b = (rng.random((k, n), np.float32) if kernel.b == "float32"
         else rng.integers(-100, 100, (k, n)).astype(kernel.b))
    constants: dict[str, Any] = {"B": b}
    inputs = ["A", "B"]
    out_type = {"MatMul": "float32", "Gemm": "float32", "MatMulInteger": "int32", "QLinearMatMul": "uint8"}[kernel.op]
    if kernel.op == "QLinearMatMul":
        constants.update(scale=np.float32(0.01), a_zero=np.zeros((), kernel.a), b_zero=np.zeros((), kernel.b),
                         y_zero=np.uint8(128))
        inputs = ["A", "scale", "a_zero", "B", "scale", "b_zero", "scale", "y_zero"]
    to_onnx = helper.np_dtype_to_tensor_dtype
    graph = helper.make_graph(
        [helper.make_node(kernel.op, inputs, ["Y"])], "peak",
        [helper.make_tensor_value_info("A", to_onnx(np.dtype(kernel.a)), [m, k])],
        [helper.make_tensor_value_info("Y", to_onnx(np.dtype(out_type)), [m, n])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def run_peak(*, shapes: tuple[tuple[int, int, int], ...] = DEFAULT_SHAPES, session_config: SessionConfig,
             run_config: RunConfig, rounds: int, progress: Stage | None = None,
             source: str = str(DEFAULT_PEAK)) -> BenchResult:
    """Measure every kernel at every shape, taking turns for `rounds` rounds (see the module docstring).
    `progress(description, step, steps)` (bench.report.MeasureProgress.step) is called as each round starts."""
    import onnx

    from bench.engines import OnnxEngine

    if rounds < 1:
        raise UsageError(f"--rounds {rounds} must be >= 1")
    share = dataclasses.replace(run_config, min_time=run_config.min_time / rounds,
                                min_iterations=-(-run_config.min_iterations // rounds))
    runs = [(kernel, shape, f"{kernel.label} {'x'.join(map(str, shape))}") for shape in shapes for kernel in KERNELS]
    times: dict[str, list[float]] = {label: [] for _, _, label in runs}
    used: dict[str, Resources] = {}
    with tempfile.TemporaryDirectory(prefix="bench-peak-") as tmp:
        steps = {}
        for index, (kernel, (m, k, n), label) in enumerate(runs):
            path = Path(tmp) / f"{index}.onnx"
            onnx.save(kernel_model(kernel, m, k, n), str(path))
            engine = OnnxEngine.open(path, session_config)
            steps[label] = engine.step(engine.prepare(m, InputConfig()))
        for index in range(rounds):
            if progress is not None:
                progress(f"peak: {len(runs)} kernels, round {index + 1}/{rounds}", index, rounds)
            for _, _, label in runs:
                # The CPU time of each kernel's runs too: on a shared machine, operations per CPU-second
                # are what can be set against a model's (bench compare records its engines' CPU time).
                got, window = measure_with_resources(steps[label], share, load_seconds=None,
                                                     providers=engine.providers, first_run=index == 0)
                times[label].extend(got)
                used[label] = used[label].then(window) if label in used else window
        record = engine.record()
    rows = [dataclasses.replace(record.row(label, m, times[label], used[label]), ops_per_sample=2.0 * k * n,
                                precision=kernel.precision) for kernel, (m, k, n), label in runs]
    config = {"shapes": [list(s) for s in shapes], "rounds": rounds, "session": dataclasses.asdict(session_config),
              "run": dataclasses.asdict(run_config), "kernels": [dataclasses.asdict(k) for k in KERNELS]}
    result = BenchResult(kind="peak", config=config, environment=environment.collect(onnxruntime=record.runtime),
                         rows=tuple(rows), providers=record.providers, requested_providers=record.requested_providers,
                         notes=("each kernel: Y = A @ B at the shape MxKxN its label ends with, B constant; "
                                "samples/s = rows of A per second; GOP/s = 2 x K x N x rows/s",
                                f"the kernels took turns, {rounds} rounds; the peak of a precision is its fastest "
                                "kernel's rate over all its runs"))
    peak = Peak.from_result(result, source)
    return dataclasses.replace(result, peak=peak, rows=tuple(
        dataclasses.replace(r, peak_gops=peak.rates[kernel.precision]) for r, (kernel, _, _) in zip(rows, runs)))


def resolve_peak(path: str | None, session_config: SessionConfig) -> tuple[Peak | None, str]:
    """The peak to compare rows with, and a note saying which one (or why none): see the module docstring."""
    explicit = path is not None
    found = Path(path) if path is not None else DEFAULT_PEAK
    if not found.is_file():
        if explicit:
            raise UsageError(f"--peak {found}: no such file: measure one with `bench peak --json {found}`")
        return None, f"% of peak: none ({DEFAULT_PEAK} not found; `bench peak` measures it)"
    result = load(found)
    if result.kind != "peak":
        raise UsageError(f"--peak {found} holds a `bench {result.kind}` result: pass a file `bench peak` wrote")
    peak = Peak.from_result(result, str(found))
    here = environment.cpu_info()["model"]
    differences = ([f"CPU {peak.cpu}"] if peak.cpu != here else []) + (
        [f"{peak.intra_op_threads} intra-op threads"] if peak.intra_op_threads != session_config.intra_op_threads
        else [])
    if differences and not explicit:
        return None, (f"% of peak: none ({found} was measured with {', '.join(differences)}; "
                      "run `bench peak` again with this run's settings)")
    rates = ", ".join(f"{p} {r:,.1f} GOP/s" for p, r in sorted(peak.rates.items()))
    caveat = f"; note: measured with {', '.join(differences)}" if differences else ""
    return peak, f"% of peak: of {found} ({peak.created}: {rates}){caveat}"


def with_operations(result: BenchResult, inputs: InputConfig, peak: Peak | None, note: str) -> BenchResult:
    """Each row with its operations per sample (counted from its ONNX graph at the shapes it was fed),
    precision and the peak of that precision, and `note` (which peak) among the notes; a result whose
    models have no convolution or matrix product is returned as it was.
    TensorFlow's rows are counted on the reference ONNX model (see the module docstring)."""
    from bench.opcount import count_ops

    model = result.model
    if model is None:
        raise ValueError(f"a `bench {result.kind}` result that names no model: no graph to count operations in")
    specs: Sequence[InputSpec] = [InputSpec(i["name"], i["dtype"], tuple(i["shape"])) for i in model["inputs"]]
    rows, counted = [], False
    for row in result.rows:
        path = row.model if row.engine == "onnxruntime" else model["path"]
        shapes: Mapping[str, tuple[int, ...]] = resolve_shapes(specs, row.batch, dict(inputs.dims), dict(inputs.shapes))
        count = count_ops(path, shapes)
        if count.total:
            counted = True
            row = dataclasses.replace(row, ops_per_sample=count.per_sample(row.batch), precision=count.precision,
                                      peak_gops=peak.rates.get(count.precision) if peak else None)
        rows.append(row)
    if not counted:
        return result                 # no convolution or matrix product: nothing to compare with a peak
    return dataclasses.replace(result, rows=tuple(rows), peak=peak, notes=(*result.notes, note))
