"""`bench`: onnxruntime throughput and latency benchmarks, TF comparison, Horovod training scaling.

    bench throughput --batch 256                      # samples/s on runs/alexnet/alexnet.onnx
    bench latency --batch 1 --model m.onnx            # mean, p50, p90, p95, p99, max, stdev
    bench sweep --batch 1,8,32,128,256 --plot-dir .   # both, per batch size; table + plots
    bench compare --batch 1,32,256                    # onnxruntime vs TensorFlow, float32/float16/int8
    bench train -np 1,2                               # Horovod training img/s and scaling efficiency
    bench overhead --model m.onnx                     # the harness vs a bare session.run loop
    bench peak                                        # float32/int8 matrix-multiply peak -> runs/bench-peak.json
    bench report a.json b.json --compare --export r.md --plot-dir plots

Every measuring subcommand takes --model, --batch, --json PATH, --quiet, --provider cpu|cuda|tensorrt
(a list, in preference order), --strict and --peak (rows get GOP per sample, GOP/s and % of the
measured peak: bench/peak.py); see `bench SUBCOMMAND --help`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from bench import inputs as inputs_lib
from bench import report, results
from bench.inputs import InputConfig
from bench.measure import DEFAULT_MODEL, default_model
from bench.runner import RunConfig
from bench.session import (
    DEFAULT_ENTRIES,
    EXECUTION_MODES,
    GRAPH_OPTIMIZATION,
    IO_BINDING,
    SessionConfig,
    parse_providers,
    with_default_entries,
)
from toolkit import cli
from toolkit.environment import usable_cpus
from toolkit.files import require_parent_dir, write_json_atomic

PROG = "bench"


def _batch_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise cli.UsageError(f"--batch {text!r} is not a comma-separated list of integers: e.g. 1,8,32") from None
    if not values or any(v < 1 for v in values):
        raise cli.UsageError(f"--batch {text}: batch sizes must be >= 1")
    return values


def _measuring_options(default_batch: str | None, batch_help: str) -> argparse.ArgumentParser:
    p = cli.ArgumentParser(add_help=False)
    g = p.add_argument_group("model and inputs")
    g.add_argument("--model", help=f"ONNX model (default: {DEFAULT_MODEL}, relative to the current directory: "
                                   "where the main training job exports)")
    g.add_argument("--batch", default=default_batch, help=batch_help)
    g.add_argument("--dim", action="append", default=[], metavar="NAME=N",
                   help="size of a named dynamic dimension (repeatable)")
    g.add_argument("--shape", action="append", default=[], metavar="INPUT=AxBxC",
                   help="whole shape of one input (repeatable); must agree with the model's fixed dims")
    g.add_argument("--images", metavar="IDX", help="real images from an IDX file for the model's image input, "
                                                   "e.g. /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
    g.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    g.add_argument("--distinct-inputs", type=int, default=4, help="distinct random feeds, cycled")
    g.add_argument("--int-range", default="1,100", metavar="LOW,HIGH",
                   help="integer inputs are drawn from [LOW, HIGH)")
    g = p.add_argument_group("onnxruntime")
    g.add_argument("--provider", default="cpu", help="cpu, cuda, tensorrt, or a list in preference order")
    g.add_argument("--strict", action="store_true", help="fail (exit 1) instead of falling back to another provider")
    g.add_argument("--intra-op-threads", type=int, default=usable_cpus(),
                   help="default: the logical CPUs this process may use; 0: onnxruntime's default (one per "
                        "physical core, pinned to it)")
    g.add_argument("--inter-op-threads", type=int, default=0, help="0: onnxruntime's default")
    g.add_argument("--graph-opt", default="all", choices=list(GRAPH_OPTIMIZATION), help="graph optimisation level")
    g.add_argument("--execution-mode", default="sequential", choices=list(EXECUTION_MODES))
    g.add_argument("--io-binding", default="auto", choices=list(IO_BINDING),
                   help="auto: on for CUDA/TensorRT (inputs copied in each run, outputs left on the device)")
    g.add_argument("--device-id", type=int, default=0, help="GPU index for CUDA/TensorRT")
    g.add_argument("--trt-fp16", action="store_true", help="let TensorRT build float16 engines")
    g.add_argument("--trt-cache-dir", help="TensorRT engine cache directory (reused across runs)")
    g.add_argument("--session-config", action="append", default=[], metavar="KEY=VALUE",
                   help="onnxruntime session config entry (repeatable; default: "
                        f"{', '.join(f'{k}={v}' for k, v in DEFAULT_ENTRIES)}, each overridable), "
                        "e.g. session.intra_op.allow_spinning=1")
    g = p.add_argument_group("measurement")
    g.add_argument("--warmup", type=int, default=RunConfig.warmup, help="warm-up iterations, not measured")
    g.add_argument("--min-time", type=float, default=RunConfig.min_time, help="measure at least this many seconds")
    g.add_argument("--min-iterations", type=int, default=RunConfig.min_iterations,
                   help="... and at least this many iterations")
    g.add_argument("--peak", metavar="PATH", help="a `bench peak` result to compare each row's GOP/s with "
                   "(default: runs/bench-peak.json where it was measured on this CPU with the same threads)")
    _output_options(p)
    return p


def _peak_options() -> argparse.ArgumentParser:
    from bench.peak import DEFAULT_PEAK, DEFAULT_SHAPES

    p = cli.ArgumentParser(add_help=False)
    p.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in DEFAULT_SHAPES),
                   help="MxKxN of the matrix products, comma-separated")
    p.add_argument("--rounds", type=int, default=3, help="the kernels take turns this many times")
    p.add_argument("--intra-op-threads", type=int, default=usable_cpus(), help="as for the other subcommands")
    p.add_argument("--session-config", action="append", default=[], metavar="KEY=VALUE",
                   help="onnxruntime session config entry (repeatable), as for the other subcommands")
    p.add_argument("--warmup", type=int, default=2, help="warm-up runs per kernel, not measured")
    p.add_argument("--min-time", type=float, default=6.0, help="measure each kernel at least this many seconds")
    p.add_argument("--min-iterations", type=int, default=6, help="... and at least this many runs")
    _output_options(p)
    p.set_defaults(json=str(DEFAULT_PEAK))
    return p


def _output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="PATH", help="write the result (schema: bench/results.py) to PATH")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no table (scripts: use --json)")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True,
                                parser_class=cli.ArgumentParser)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    sub.add_parser("throughput", help="samples/s at one batch size", formatter_class=fmt,
                   parents=[_measuring_options(None, "samples per run (default: the model's fixed batch, else 256)")])
    sub.add_parser("latency", help="latency percentiles at one batch size", formatter_class=fmt,
                   parents=[_measuring_options(None, "samples per run (default: the model's fixed batch, else 1)")])
    p = sub.add_parser("sweep", help="throughput and latency over several batch sizes", formatter_class=fmt,
                       parents=[_measuring_options("1,8,32,128,256", "comma-separated batch sizes")])
    p.add_argument("--plot-dir", help="write throughput-vs-batch.png and latency-histogram.png here")
    p = sub.add_parser("compare", help="onnxruntime vs TensorFlow, and float32 vs float16 vs int8 variants",
                       formatter_class=fmt, parents=[_measuring_options("1,32,256", "comma-separated batch sizes")])
    p.add_argument("--keras", help="Keras model the ONNX came from (default: model.keras beside --model)")
    p.add_argument("--no-tensorflow", action="store_true", help="leave TensorFlow out")
    p.add_argument("--rounds", type=int, default=3,
                   help="the engines take turns this many times per batch size, each round a share of --min-time")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=PATH",
                   help="another ONNX model to compare (default: STEM.float16.onnx/STEM.int8.onnx beside --model)")
    p = sub.add_parser("overhead", help="the harness vs a bare session.run loop (should be within 2%%)",
                       formatter_class=fmt, parents=[_measuring_options("1", "samples per run")])
    p.add_argument("--rounds", type=int, default=5, help="interleaved harness/bare rounds; the median ratio counts")
    sub.add_parser("peak", help="this machine's float32 and int8 matrix-multiply peak (GOP/s), with onnxruntime",
                   formatter_class=fmt, parents=[_peak_options()])
    p = sub.add_parser("train", help="Horovod training throughput on synthetic data, and scaling efficiency",
                       formatter_class=fmt)
    d = _train_defaults()
    p.add_argument("-np", dest="nps", default=",".join(map(str, d.nps)), help="world sizes, comma-separated")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per rank")
    p.add_argument("--steps", type=int, default=d.steps, help="measured steps per rank, after warm-up")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps per throughput interval")
    p.add_argument("--precision", default=d.precision, help="as alexnet.train --precision")
    p.add_argument("--timeout", type=float, default=d.timeout_s, help="seconds allowed per world size")
    p.add_argument("--keep-dir", help="keep each run's output (npN/summary.json, model) in this directory")
    _output_options(p)
    p = sub.add_parser("report", help="render saved results, compare two runs, export, plot", formatter_class=fmt)
    p.add_argument("results", nargs="+", metavar="RESULTS.json")
    p.add_argument("--compare", action="store_true", help="two files: delta and ratio (second/first) per row")
    p.add_argument("--export", action="append", default=[], metavar="PATH",
                   help=f"write the report; format by extension: {', '.join(report.EXPORT_FORMATS)} (repeatable)")
    p.add_argument("--plot-dir", help="write PNG plots (throughput vs batch, latency histogram) here")
    p.add_argument("--width", type=int, default=140, help="console width for text/HTML/SVG exports")
    return parser


def _train_defaults():
    from bench.train import TrainBenchConfig
    return TrainBenchConfig()


def _session_config(args) -> SessionConfig:
    return SessionConfig(providers=parse_providers(args.provider), strict=args.strict,
                         intra_op_threads=args.intra_op_threads, inter_op_threads=args.inter_op_threads,
                         graph_optimization=args.graph_opt, execution_mode=args.execution_mode,
                         io_binding=args.io_binding, device_id=args.device_id, trt_fp16=args.trt_fp16,
                         trt_cache_dir=args.trt_cache_dir,
                         entries=with_default_entries(inputs_lib.parse_assignments(
                             args.session_config, "session-config", "session.intra_op.allow_spinning=1")))


def _input_config(args) -> InputConfig:
    return InputConfig(dims=tuple(inputs_lib.parse_dims(args.dim).items()),
                       shapes=tuple(inputs_lib.parse_shapes(args.shape).items()), seed=args.seed,
                       distinct=args.distinct_inputs, int_range=inputs_lib.parse_int_range(args.int_range),
                       images=args.images)


def _config_record(args, **parts: Any) -> dict[str, Any]:
    record = {k: v for k, v in vars(args).items() if k != "output"}
    record.update({k: dataclasses.asdict(v) for k, v in parts.items()})
    return record


class _Output:
    """Where things go: tables to stdout, progress and warnings to stderr, the JSON atomically."""

    def __init__(self, args):
        self.quiet = args.quiet
        self.json = require_parent_dir(args.json) if args.json else None
        self.out = cli.console()
        self.err = cli.console(stderr=True)

    def progress(self, description: str, run: RunConfig):
        return report.progress_bar(self.err, description, self.quiet, run.min_time, run.min_iterations)

    def finish(self, result: results.BenchResult) -> int:
        if result.fallback:
            print(f"{PROG}: warning: {result.fallback}", file=sys.stderr)
        if not self.quiet:
            report.print_result(self.out, result)
        if self.json:
            write_json_atomic(self.json, result.to_json())
        return 0


def _run_config(args) -> RunConfig:
    return RunConfig(warmup=args.warmup, min_time=args.min_time, min_iterations=args.min_iterations)


def _measure_cmd(args, kind: str, batches: Sequence[int | None], fallback_batch: int) -> results.BenchResult:
    from bench.engines import OnnxEngine
    from bench.measure import engine_result, measure_engine

    run, session_config, inputs = _run_config(args), _session_config(args), _input_config(args)
    engine = OnnxEngine.open(args.model or default_model(), session_config)
    rows = []
    for batch in batches:
        batch = batch or inputs_lib.default_batch(engine.specs, fallback_batch, dict(inputs.shapes))
        with args.output.progress(f"{kind} batch {batch}", run) as progress:
            rows.append(measure_engine(engine, batch=batch, inputs=inputs, run=run, progress=progress))
    return _with_operations(engine_result(kind, engine.record(), rows,
                                          _config_record(args, session=session_config, inputs=inputs, run=run)),
                            args, session_config, inputs)


def _with_operations(result: results.BenchResult, args, session_config: SessionConfig,
                     inputs: InputConfig) -> results.BenchResult:
    """Every row with its operations per sample, GOP/s and % of the measured peak (bench/peak.py)."""
    from bench.peak import resolve_peak, with_operations

    return with_operations(result, inputs, *resolve_peak(args.peak, session_config))


def _cmd_throughput(args) -> results.BenchResult:
    return _measure_cmd(args, "throughput", [_single_batch(args.batch)], 256)


def _cmd_latency(args) -> results.BenchResult:
    return _measure_cmd(args, "latency", [_single_batch(args.batch)], 1)


def _single_batch(text: str | None) -> int | None:
    if text is None:
        return None
    values = _batch_list(text)
    if len(values) != 1:
        raise cli.UsageError(f"--batch {text}: give one batch size here (`bench sweep` takes a list)")
    return values[0]


def _cmd_sweep(args) -> results.BenchResult:
    result = _measure_cmd(args, "sweep", _batch_list(args.batch), 1)
    if args.plot_dir:
        report.plot([result], args.plot_dir)
    return result


def _cmd_overhead(args) -> results.BenchResult:
    from bench.engines import OnnxEngine
    from bench.measure import engine_result, measure_overhead, overhead_notes

    run, session_config, inputs = _run_config(args), _session_config(args), _input_config(args)
    engine = OnnxEngine.open(args.model or default_model(), session_config)
    with args.output.progress("harness vs bare loop", run) as progress:
        rows, ratios = measure_overhead(engine, batch=_single_batch(args.batch), inputs=inputs, run=run,
                                        rounds=args.rounds, progress=progress)
    return _with_operations(engine_result("overhead", engine.record(), rows,
                                          _config_record(args, session=session_config, inputs=inputs, run=run),
                                          overhead_notes(rows, ratios)), args, session_config, inputs)


def _cmd_compare(args) -> results.BenchResult:
    from bench import compare

    run = _run_config(args)
    model = Path(args.model) if args.model else default_model()
    given = inputs_lib.parse_assignments(args.variant, "variant", "int8=alexnet.int8.onnx")
    variants = {label: Path(p) for label, p in given.items()} if given else compare.default_variants(model)
    for label, path in variants.items():
        if not path.is_file():
            raise cli.UsageError(f"--variant {label}={path}: no such file; pass an existing ONNX model")
    keras_path = None
    if not args.no_tensorflow:
        keras_path = Path(args.keras) if args.keras else compare.default_keras(model)
        if keras_path is None:
            raise cli.UsageError(f"no model.keras beside {model}: pass --keras PATH or --no-tensorflow")
    session_config, inputs = _session_config(args), _input_config(args)
    result = compare.run_compare(model, batches=_batch_list(args.batch), session_config=session_config,
                                 inputs=inputs, run_config=run, keras_path=keras_path,
                                 variants=variants, rounds=args.rounds,
                                 # The bar counts rounds: each engine measures in its own process.
                                 progress_for=lambda d: args.output.progress(
                                     d, RunConfig(warmup=0, min_time=0, min_iterations=args.rounds)))
    return _with_operations(result, args, session_config, inputs)


def _cmd_peak(args) -> results.BenchResult:
    from bench import peak

    session_config = SessionConfig(entries=with_default_entries(inputs_lib.parse_assignments(
        args.session_config, "session-config", "session.intra_op.allow_spinning=1")),
        intra_op_threads=args.intra_op_threads)
    with args.output.progress(f"peak: {len(peak.KERNELS)} kernels x {args.rounds} rounds",
                              RunConfig(warmup=0, min_time=0, min_iterations=args.rounds)) as progress:
        return peak.run_peak(shapes=peak.parse_shapes(args.shapes), session_config=session_config,
                             run_config=_run_config(args), rounds=args.rounds, progress=progress, source=args.json)


def _cmd_train(args) -> results.BenchResult:
    from bench import train
    config = train.TrainBenchConfig(nps=_batch_list(args.nps), image_size=args.image_size,
                                    batch_size=args.batch_size, steps=args.steps, warmup_steps=args.warmup_steps,
                                    log_every=args.log_every, precision=args.precision, timeout_s=args.timeout)

    def done(np: int, intervals: Sequence[float]) -> None:
        if not args.quiet:
            args.output.err.print(f"-np {np}: {sum(intervals) / len(intervals):,.1f} img/s total")
    return train.run(config, keep_dir=args.keep_dir, on_done=done)


def _cmd_report(args) -> int:
    loaded = [results.load(path) for path in args.results]
    if args.compare and len(loaded) != 2:
        raise cli.UsageError(f"--compare takes exactly two results files, got {len(loaded)}")
    for path in args.export:
        require_parent_dir(path)
    if args.compare:
        report.comparison_table(loaded[0], loaded[1])  # refuse before writing anything
    report.print_all(cli.console(), loaded, compare=args.compare)
    for path in args.export:
        report.export(loaded, path, compare=args.compare, width=args.width)
    if args.plot_dir:
        report.plot(loaded, args.plot_dir)
    return 0


COMMANDS = {"throughput": _cmd_throughput, "latency": _cmd_latency, "sweep": _cmd_sweep,
            "compare": _cmd_compare, "overhead": _cmd_overhead, "train": _cmd_train, "peak": _cmd_peak}


def _main(argv: Sequence[str] | None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if args.command == "report":
        return _cmd_report(args)
    if args.command == "peak" and args.json == _peak_options().get_default("json"):
        Path(args.json).parent.mkdir(exist_ok=True)         # bench peak's default place, runs/, may be new
    args.output = _Output(args)
    return args.output.finish(COMMANDS[args.command](args))


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
