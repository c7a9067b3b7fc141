"""`bench peak`: this machine's attainable float32 and int8 matrix-multiply rates, measured with
onnxruntime itself, and every benchmark row's distance to them.

    bench peak                                  # writes runs/bench-peak.json (what later runs compare with)
    bench peak --size 2048 --json peak.json
    bench sweep --peak peak.json                # every row: GOP per sample, GOP/s and % of that peak
    bench compare                               # uses runs/bench-peak.json where it was measured here

Why: samples/s alone cannot say whether a model runs well; the rate of its arithmetic next to
the best rate this CPU reaches, through the same runtime, threads and session options, can.
The kernels (square M = K = N = --size; B a constant, prepacked as a model's weights are; A fed
each run, fresh random values, as every bench input):
  float32 MatMul, float32 Gemm;
  int8 MatMulInteger uint8 x int8 and int8 x int8, QLinearMatMul uint8 x int8 (a QDQ MatMul is
  fused into QLinearMatMul by onnxruntime, so it is the same kernel).
They take turns for --rounds rounds; a kernel's rate is its operations (2 x M x K x N per run)
over all its runs' time, and the peak of a precision is its fastest kernel's rate.

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
from typing import Mapping, Sequence

import numpy as np

from bench.inputs import InputConfig, InputSpec, resolve_shapes
from bench.results import BenchResult, Peak, load
from bench.runner import RunConfig, measure
from bench.session import SessionConfig
from toolkit import environment
from toolkit.cli import UsageError

DEFAULT_PEAK = Path("runs/bench-peak.json")
DEFAULT_SIZE = 1024


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


def kernel_model(kernel: Kernel, size: int):
    """Y = A @ B as one node; A [size, size] the input, B a constant."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    b = (rng.random((size, size), np.float32) if kernel.b == "float32"
         else rng.integers(-100, 100, (size, size)).astype(kernel.b))
    constants = {"B": b}
    inputs = ["A", "B"]
    out_type = {"MatMul": "float32", "Gemm": "float32", "MatMulInteger": "int32", "QLinearMatMul": "uint8"}[kernel.op]
    if kernel.op == "QLinearMatMul":
        constants.update(scale=np.float32(0.01), a_zero=np.zeros((), kernel.a), b_zero=np.zeros((), kernel.b),
                         y_zero=np.uint8(128))
        inputs = ["A", "scale", "a_zero", "B", "scale", "b_zero", "scale", "y_zero"]
    to_onnx = helper.np_dtype_to_tensor_dtype
    graph = helper.make_graph(
        [helper.make_node(kernel.op, inputs, ["Y"])], "peak",
        [helper.make_tensor_value_info("A", to_onnx(np.dtype(kernel.a)), [size, size])],
        [helper.make_tensor_value_info("Y", to_onnx(np.dtype(out_type)), [size, size])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def run_peak(*, size: int, session_config: SessionConfig, run_config: RunConfig, rounds: int,
             progress=None, source: str = str(DEFAULT_PEAK)) -> BenchResult:
    """Measure every kernel, taking turns for `rounds` rounds (see the module docstring)."""
    import onnx

    from bench.engines import OnnxEngine

    if size < 64:
        raise UsageError(f"--size {size} is too small to be compute-bound: use at least 64 (default {DEFAULT_SIZE})")
    if rounds < 1:
        raise UsageError(f"--rounds {rounds} must be >= 1")
    share = dataclasses.replace(run_config, min_time=run_config.min_time / rounds,
                                min_iterations=-(-run_config.min_iterations // rounds))
    inputs = InputConfig()
    times: dict[str, list[float]] = {k.label: [] for k in KERNELS}
    with tempfile.TemporaryDirectory(prefix="bench-peak-") as tmp:
        engines, steps = {}, {}
        for kernel in KERNELS:
            path = Path(tmp) / f"{kernel.label.replace(' ', '-')}.onnx"
            onnx.save(kernel_model(kernel, size), str(path))
            engines[kernel.label] = engine = OnnxEngine.open(path, session_config)
            steps[kernel.label] = engine.step(engine.prepare(size, inputs))
        for index in range(rounds):
            for kernel in KERNELS:
                round_config = share if index == 0 else dataclasses.replace(share, warmup=0)
                times[kernel.label].extend(measure(steps[kernel.label], round_config))
            if progress is not None:
                progress(index + 1, 0.0)
        record = next(iter(engines.values())).record()
    rows = [dataclasses.replace(record.row(k.label, size, times[k.label]), ops_per_sample=2.0 * size * size,
                                precision=k.precision) for k in KERNELS]
    config = {"size": size, "rounds": rounds, "session": dataclasses.asdict(session_config),
              "run": dataclasses.asdict(run_config), "kernels": [dataclasses.asdict(k) for k in KERNELS]}
    result = BenchResult(kind="peak", config=config, environment=environment.collect(onnxruntime=record.runtime),
                         rows=tuple(rows), providers=record.providers, requested_providers=record.requested_providers,
                         notes=(f"each kernel: Y = A @ B, {size}x{size} by {size}x{size}, B constant; rows of A per "
                                f"second as samples/s; GOP/s = 2 x {size}^2 x rows/s",
                                f"the kernels took turns, {rounds} rounds; the peak of a precision is its fastest "
                                "kernel's rate over all its runs"))
    peak = Peak.from_result(result, source)
    return dataclasses.replace(result, peak=peak, rows=tuple(dataclasses.replace(r, peak_gops=peak.rates[r.precision])
                                                             for r in rows))


def resolve_peak(path: str | None, session_config: SessionConfig) -> tuple[Peak | None, str]:
    """The peak to compare rows with, and a note saying which one (or why none): see the module docstring."""
    explicit = path is not None
    path = Path(path) if explicit else DEFAULT_PEAK
    if not path.is_file():
        if explicit:
            raise UsageError(f"--peak {path}: no such file: measure one with `bench peak --json {path}`")
        return None, f"% of peak: none ({DEFAULT_PEAK} not found; `bench peak` measures it)"
    result = load(path)
    if result.kind != "peak":
        raise UsageError(f"--peak {path} holds a `bench {result.kind}` result: pass a file `bench peak` wrote")
    peak = Peak.from_result(result, str(path))
    here = environment.cpu_info()["model"]
    differences = ([f"CPU {peak.cpu}"] if peak.cpu != here else []) + (
        [f"{peak.intra_op_threads} intra-op threads"] if peak.intra_op_threads != session_config.intra_op_threads
        else [])
    if differences and not explicit:
        return None, (f"% of peak: none ({path} was measured with {', '.join(differences)}; "
                      "run `bench peak` again with this run's settings)")
    rates = ", ".join(f"{p} {r:,.1f} GOP/s" for p, r in sorted(peak.rates.items()))
    caveat = f"; note: measured with {', '.join(differences)}" if differences else ""
    return peak, f"% of peak: of {path} ({peak.created}: {rates}){caveat}"


def with_operations(result: BenchResult, inputs: InputConfig, peak: Peak | None, note: str) -> BenchResult:
    """Each row with its operations per sample (counted from its ONNX graph at the shapes it was fed),
    precision and the peak of that precision, and `note` (which peak) among the notes; a result whose
    models have no convolution or matrix product is returned as it was.
    TensorFlow's rows are counted on the reference ONNX model (see the module docstring)."""
    from bench.opcount import count_ops

    specs: Sequence[InputSpec] = [InputSpec(i["name"], i["dtype"], tuple(i["shape"])) for i in result.model["inputs"]]
    rows, counted = [], False
    for row in result.rows:
        path = row.model if row.engine == "onnxruntime" else result.model["path"]
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
