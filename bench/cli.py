"""`bench`: onnxruntime throughput and latency benchmarks, TF comparison, Horovod training scaling.

    bench throughput --batch 256                      # samples/s on runs/alexnet/alexnet.onnx
    bench latency --batch 1 --model m.onnx            # mean, p50, p90, p95, p99, max, stdev
    bench sweep --batch 1,8,32,128,256 --plot-dir .   # both, per batch size; table + plots
    bench compare --batch 1,32,256                    # onnxruntime vs TensorFlow, float32/float16/int8
    bench train -np 1,2                               # Horovod training img/s and scaling efficiency
    bench allreduce -np 2,3 --sizes 1K..256M          # Horovod all-reduce time, algbw, busbw per message size
    bench overhead --model m.onnx                     # the harness vs a bare session.run loop
    bench peak                                        # float32/int8 matrix-multiply peak -> runs/bench-peak.json
    bench load --scenario server --qps 100 --latency-bound-ms 50   # MLPerf LoadGen scenarios, VALID/INVALID
    bench load --scenario server --find-peak --latency-bound-ms 50 # the highest QPS that meets the bound
    bench load --engine loadgen --scenario offline --json off.json # the same through MLPerf's own LoadGen
    bench check new*.json --baseline base*.json --max-slowdown 5%  # exit 1 if significantly slower
    bench profile --model m.onnx --batch 32           # the top operators by time, provider per node
    bench tune --model m.onnx --latency-budget-ms 20  # the best settings here; writes m.tuned.json
    bench throughput --config m.tuned.json            # run with them (flags given override them)
    bench report a.json b.json --compare --export r.md --export r.csv --plot-dir plots
    bench report runs/alexnet/bench-*.json --run runs/alexnet --html runs/alexnet/report.html   # the whole run

Every measuring subcommand takes --model, --batch, --json PATH, --csv PATH, --quiet, --provider
cpu|cuda|tensorrt (a list, in preference order; tensorrt falls back to cuda, then cpu), --strict and
--config (a file `bench tune` wrote); see `bench SUBCOMMAND --help`. Every result records the resources
the measuring process used: peak resident memory, CPU utilisation, session creation and first-run time,
GPU memory on CUDA; and on CUDA, where a run's time goes: input copy, compute, output copy. throughput,
latency, sweep, compare and overhead also take --peak: their rows get GOP per sample, GOP/s and % of
the measured peak (bench/peak.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from bench import inputs as inputs_lib
from bench import report, results, scenarios
from bench.inputs import InputConfig
from bench.measure import DEFAULT_MODEL, default_model
from bench.runner import RunConfig
from bench.session import (
    DEFAULT_ENTRIES,
    EXECUTION_MODES,
    GRAPH_OPTIMIZATION,
    IO_BINDING,
    OUTPUTS,
    SessionConfig,
    parse_providers,
    with_default_entries,
)
from toolkit import cli
from toolkit.environment import THREADS_PER_CPU, thread_limit, usable_cpus
from toolkit.files import require_output_dir, require_parent_dir, write_json_atomic
from toolkit.runs import ExportRecord, RunDir

PROG = "bench"


def _batch_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise cli.UsageError(f"--batch {text!r} is not a comma-separated list of integers: e.g. 1,8,32") from None
    if not values or any(v < 1 for v in values):
        raise cli.UsageError(f"--batch {text}: batch sizes must be >= 1")
    return values


def _number(low: float, *, above: bool = False):
    """An argparse type: a finite float >= `low` (> `low` if `above`). A NaN compares false with every bound, so
    `--min-time nan` would pass a `< 0` check and never reach its deadline; infinity never ends either."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"{text} must be a finite number {'>' if above else '>='} {low:g}")
        return value
    return parse


SECONDS = _number(0)           # a duration: 0 or more
POSITIVE = _number(0, above=True)


def _force_option(p) -> None:
    p.add_argument("--force", action="store_true",
                   help=f"start more threads than {THREADS_PER_CPU} per usable CPU, and allocate inputs over half "
                        "the memory available (both refused otherwise)")


def _measuring_options(default_batch: str | None, batch_help: str, measurement: bool = True,
                       config: bool = True) -> argparse.ArgumentParser:
    """The settings file (unless `config` is False: `tune` writes it), model, inputs, onnxruntime, measurement
    (unless `measurement` is False: `load` has its own) and output."""
    p = cli.ArgumentParser(add_help=False)
    if config:
        p.add_argument_group("settings file").add_argument(
            "--config", metavar="TUNED.json", help="settings `bench tune` wrote (model variant, batch, session "
                                                   "options); options given here override them")
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
                   help="auto: on for CUDA/TensorRT (inputs copied in from host arrays in each run)")
    g.add_argument("--outputs", default="host", choices=list(OUTPUTS),
                   help="where each run leaves its outputs: copied to the host, or in GPU memory (IO binding); "
                        "compare holds TensorFlow to the same")
    g.add_argument("--device-id", type=int, default=0, help="GPU index for CUDA/TensorRT")
    g.add_argument("--trt-fp16", action="store_true", help="let TensorRT build float16 engines")
    g.add_argument("--trt-int8", action="store_true",
                   help="let TensorRT use int8 kernels: for QDQ models (the export's int8 variant), whose "
                        "QuantizeLinear/DequantizeLinear nodes give the scales")
    g.add_argument("--trt-workspace-mb", type=int, help="TensorRT builder workspace (default: TensorRT's)")
    g.add_argument("--trt-cache-dir", help="TensorRT engine cache directory (reused across runs)")
    g.add_argument("--trt-timing-cache-dir", help="TensorRT timing cache directory (kernel timings, reused across "
                                                  "runs and models: faster engine builds)")
    g.add_argument("--session-config", action="append", default=[], metavar="KEY=VALUE",
                   help="onnxruntime session config entry (repeatable; default: "
                        f"{', '.join(f'{k}={v}' for k, v in DEFAULT_ENTRIES)}, each overridable), "
                        "e.g. session.intra_op.allow_spinning=1")
    _force_option(g)
    if measurement:
        g = p.add_argument_group("measurement")
        g.add_argument("--warmup", type=int, default=RunConfig.warmup, help="warm-up iterations, not measured")
        g.add_argument("--min-time", type=SECONDS, default=RunConfig.min_time,
                       help="measure at least this many seconds")
        g.add_argument("--min-iterations", type=int, default=RunConfig.min_iterations,
                       help="... and at least this many iterations")
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
    p.add_argument("--min-time", type=SECONDS, default=6.0, help="measure each kernel at least this many seconds")
    p.add_argument("--min-iterations", type=int, default=6, help="... and at least this many runs")
    _force_option(p)
    _output_options(p)
    p.set_defaults(json=str(DEFAULT_PEAK))
    return p


def _peak_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--peak", metavar="PATH", help="a `bench peak` result to compare each row's GOP/s with "
                   "(default: runs/bench-peak.json where it was measured on this CPU with the same threads)")


def _top_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top", type=int, default=report.DEFAULT_TOP,
                   help="profiles: the operators and nodes shown (the JSON keeps all)")


def _output_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="PATH", help="write the result (schema: bench/results.py) to PATH")
    g.add_argument("--csv", metavar="PATH", help="write the result's tables as CSV: the first to PATH, each other "
                                                 "beside it as STEM-NAME.csv")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bar, no table, no warnings (scripts: use --json); the bar shows only on a "
                        "terminal")


def _stability_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("stability")
    g.add_argument("--until-stable", type=POSITIVE, metavar="PCT",
                   help="after the minimums, run on until the throughput's 95%% confidence interval is within "
                        "+-PCT%% of it (bench/stats.py: batch means)")
    g.add_argument("--max-time", type=SECONDS, default=RunConfig.max_time, help="... but no longer than this (s)")


def _load_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("load (after MLPerf LoadGen; bench/scenarios.py)")
    g.add_argument("--scenario", default=scenarios.SINGLE_STREAM, choices=scenarios.SCENARIOS,
                   help="single-stream: one query at a time, p90 latency; multi-stream: queries of --batch (8) "
                        "samples, p99; server: Poisson arrivals at --qps, p99 within --latency-bound-ms; "
                        "offline: every sample at once, samples/s")
    g.add_argument("--qps", type=POSITIVE, help="server: mean arrival rate, queries per second")
    g.add_argument("--latency-bound-ms", type=POSITIVE,
                   help=f"server: the p99 latency bound (default: LoadGen's {scenarios.DEFAULT_LATENCY_BOUND_MS:g})")
    g.add_argument("--concurrency", type=int, default=1,
                   help="server, offline: queries in flight at once, each on a worker thread over one shared session")
    g.add_argument("--find-peak", action="store_true",
                   help="server: search for the highest QPS whose p99 meets the bound (from --qps, default: half "
                        "what one worker does); every point tried is kept")
    g.add_argument("--rules", default="quick", choices=scenarios.RULES,
                   help=f"minimums: quick ({scenarios.MIN_DURATION_S['quick']:g} s, LoadGen's query counts), mlperf "
                        f"(LoadGen's: {scenarios.MIN_DURATION_S['mlperf']:g} s, multi-stream 662 queries, offline "
                        f"{scenarios.MIN_OFFLINE_SAMPLES['mlperf']:,} samples)")
    g.add_argument("--min-duration", type=SECONDS, help="seconds (default: the rules')")
    g.add_argument("--min-queries", type=int, help="query count; offline: sample count (default: the rules')")
    g.add_argument("--warmup", type=int, default=RunConfig.warmup,
                   help="warm-up queries, one at a time (at least 1: the bound check and offline's sample count "
                        "use them)")
    g.add_argument("--expected-qps", type=POSITIVE,
                   help="offline: samples/s to size the run for (default: the warm-up's)")
    g.add_argument("--until-stable", type=POSITIVE, metavar="PCT",
                   help="single-/multi-stream: run on until the percentile's 95%% interval is within +-PCT%% of it")
    g.add_argument("--max-time", type=SECONDS, default=60.0, help="... but no longer than this (s)")
    g.add_argument("--engine", default="bench", choices=("bench", "loadgen"),
                   help="the load generator: bench's own, or MLPerf's LoadGen (mlcommons-loadgen; its official "
                        "logs go beside --json, in STEM.mlperf/; bench/loadgen.py)")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True,
                                parser_class=cli.ArgumentParser)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    _add_timing_commands(sub, fmt)
    _add_compare_command(sub, fmt)
    _add_search_commands(sub, fmt)
    _add_overhead_and_peak(sub, fmt)
    _add_train_and_load(sub, fmt)
    _add_allreduce_command(sub, fmt)
    _add_result_commands(sub, fmt)
    return parser


def _add_timing_commands(sub, fmt) -> None:
    """throughput, latency, sweep: measuring at one or several batch sizes."""
    p = sub.add_parser("throughput", help="samples/s at one batch size", formatter_class=fmt, parents=[
        _measuring_options(None, "samples per run (default: the model's fixed batch, else 256)")])
    _stability_options(p)
    _peak_option(p)
    p = sub.add_parser("latency", help="latency percentiles at one batch size", formatter_class=fmt, parents=[
        _measuring_options(None, "samples per run (default: the model's fixed batch, else 1)")])
    _stability_options(p)
    _peak_option(p)
    p = sub.add_parser("sweep", help="throughput and latency over several batch sizes", formatter_class=fmt,
                       parents=[_measuring_options("1,8,32,128,256", "comma-separated batch sizes")])
    p.add_argument("--plot-dir", help="write throughput-vs-batch.png and latency-batch-N.png (one per batch size) "
                                      "here")
    _stability_options(p)
    _peak_option(p)


def _add_compare_command(sub, fmt) -> None:
    """compare: onnxruntime vs TensorFlow and the variants."""
    p = sub.add_parser("compare", help="onnxruntime vs TensorFlow, and float32 vs float16 vs int8 variants",
                       formatter_class=fmt, parents=[_measuring_options("1,32,256", "comma-separated batch sizes")])
    p.add_argument("--keras", help="Keras model the ONNX came from (default: model.keras beside --model)")
    p.add_argument("--no-tensorflow", action="store_true", help="leave TensorFlow out")
    p.add_argument("--rounds", type=int, default=3,
                   help="the engines take turns this many times per batch size, each round a share of --min-time")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=PATH",
                   help="another ONNX model to compare (default: STEM.float16.onnx/STEM.int8.onnx beside --model)")
    p.add_argument("--profile", action="store_true",
                   help="then profile every engine at each batch size: top operators, provider per node")
    p.add_argument("--profile-runs", type=int, default=10, help="runs per engine and batch size profiled")
    _top_option(p)
    _peak_option(p)


def _add_search_commands(sub, fmt) -> None:
    """profile and tune: where the time goes, and which settings."""
    p = sub.add_parser("profile", help="where the time goes: top operators, their share, provider per node",
                       description="onnxruntime's profiler on, in a session of its own: the kernel time per "
                                   "operator type and per node over --min-iterations runs after --warmup, their "
                                   "share, the provider of each node, the nodes that fell back to the CPU, and "
                                   "how much of the measured time the kernels account for. Details: "
                                   "bench/profile.py.",
                       formatter_class=fmt, parents=[_measuring_options(
                           None, "samples per run (default: the model's fixed batch, else 1)")])
    _top_option(p)
    # The trace holds every kernel of every run: a fixed number of runs (--min-iterations) keeps it small.
    p.set_defaults(min_time=0.0)
    p = sub.add_parser("tune", help="search variant, threads, spinning, graph optimisation, execution mode, "
                                    "batch (and provider) for the best throughput, within a p99 budget",
                       description="Short measurements (--min-time, --min-iterations) at the defaults and every "
                                   "batch size, coordinate descent one axis at a time, then the best --candidates "
                                   "confirmed against the defaults in interleaved rounds, each in a process of its "
                                   "own. Prints the Pareto front of throughput vs p99 and writes the fastest "
                                   "confirmed setting within the budget for --config. Details: bench/tune.py.",
                       formatter_class=fmt, parents=[_measuring_options(
                           None, "batch sizes to try (default: the model's fixed batch, else 1,8,32)", config=False)])
    tune_defaults, search = _tune_defaults()
    p.add_argument("--latency-budget-ms", type=POSITIVE, help="the highest p99 latency (ms per run) allowed")
    p.add_argument("-o", "--output", dest="settings_file", metavar="TUNED.json",
                   help="settings file to write; default: STEM.tuned.json beside the model")
    p.add_argument("--passes", type=int, default=tune_defaults.passes, help="coordinate-descent passes at most")
    p.add_argument("--min-gain", type=SECONDS, default=tune_defaults.min_gain,
                   help="a value replaces the current one only if this much better (a fraction: noise margin)")
    p.add_argument("--candidates", type=int, default=tune_defaults.candidates,
                   help="the best settings of the search confirmed against the starting point")
    p.add_argument("--rounds", type=int, default=tune_defaults.rounds,
                   help="interleaved rounds of the confirmation")
    p.add_argument("--confirm-time", type=POSITIVE, default=tune_defaults.confirm_time,
                   help="seconds of confirmation per setting, over all rounds")
    p.set_defaults(warmup=search.warmup, min_time=search.min_time, min_iterations=search.min_iterations)


def _add_overhead_and_peak(sub, fmt) -> None:
    """overhead and peak: the harness's own cost, and the machine's."""
    p = sub.add_parser("overhead", help="the harness vs a bare session.run loop (should be within 2%%)",
                       formatter_class=fmt, parents=[_measuring_options("1", "samples per run")])
    p.add_argument("--rounds", type=int, default=5, help="interleaved harness/bare rounds; the median ratio counts")
    _peak_option(p)
    sub.add_parser("peak", help="this machine's float32 and int8 matrix-multiply peak (GOP/s), with onnxruntime",
                   formatter_class=fmt, parents=[_peak_options()])


def _add_train_and_load(sub, fmt) -> None:
    """train and load: Horovod training throughput, and LoadGen's scenarios."""
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
    p.add_argument("--timeout", type=POSITIVE, default=d.timeout_s, help="seconds allowed per world size")
    p.add_argument("--keep-dir", help="keep each run's output (npN/summary.json, model) in this directory")
    _output_options(p)
    p = sub.add_parser("load", help="MLPerf LoadGen scenarios: single-stream, multi-stream, server, offline; "
                                    "VALID/INVALID", formatter_class=fmt,
                       parents=[_measuring_options(None, "samples per query (default: the model's fixed batch, else "
                                                         "1; multi-stream 8; offline 32, per run)", measurement=False)])
    _load_options(p)


def _add_allreduce_command(sub, fmt) -> None:
    p = sub.add_parser("allreduce", help="Horovod all-reduce time, algorithm and bus bandwidth per message size "
                                         "(nccl-tests, OSU)", formatter_class=fmt)
    p.add_argument("-np", dest="nps", default="2", help="world sizes (>= 2), comma-separated")
    p.add_argument("--sizes", default="1K..256M", help="bytes: a list (1K,64K,1M) or LOW..HIGH stepped by --factor; "
                                                       "K, M, G are powers of 1024")
    p.add_argument("--factor", type=int, default=4, help="LOW..HIGH: each size this many times the last")
    p.add_argument("--iterations", type=int, default=20, help="timed all-reduces per size")
    p.add_argument("--warmup", type=int, default=5, help="untimed all-reduces per size, first")
    p.add_argument("--mpi", action="store_true", help="Horovod's MPI controller (horovodrun --mpi) instead of Gloo")
    p.add_argument("--timeout", type=POSITIVE, default=1800.0, help="seconds allowed per world size")
    _output_options(p)


def _add_result_commands(sub, fmt) -> None:
    """check and report: commands on saved results."""
    p = sub.add_parser("check", help="exit 1 if a result is significantly slower than a baseline", formatter_class=fmt)
    p.add_argument("result", nargs="+", metavar="RESULT.json",
                   help="the new side's runs: 2 or more (each from its own bench process) for a verdict")
    p.add_argument("--baseline", required=True, nargs="+", metavar="BASE.json",
                   help="the runs to hold RESULT against: as many as RESULT's, or one against one (no verdict)")
    p.add_argument("--max-slowdown", default="5%", help="slowdown allowed (time per sample, or latency)")
    p.add_argument("--allow-different-environment", action="store_true",
                   help="compare results from different machines or package versions")
    _output_options(p)
    p = sub.add_parser("report", help="render saved results, compare two runs, export, plot; the run's HTML page",
                       formatter_class=fmt)
    p.add_argument("results", nargs="+", metavar="RESULTS.json")
    p.add_argument("--compare", action="store_true",
                   help="two files: delta and ratio (second/first) per row, and whether the difference is significant")
    p.add_argument("--run", metavar="DIR",
                   help="the training run whose summary.json and alexnet.onnx.json the report shows, where present "
                        "(default: the directory of the first results file)")
    p.add_argument("--html", metavar="PATH",
                   help="write the whole run as one self-contained HTML page (plots inline; opens from a file)")
    p.add_argument("--export", action="append", default=[], metavar="PATH",
                   help=f"write the report; format by extension: {', '.join(report.EXPORT_FORMATS)} (repeatable; "
                        ".md and .html hold the whole run, .svg and .txt the benchmark tables as the terminal "
                        "shows them, .csv those tables, one file each: PATH, then STEM-NAME.csv beside it)")
    p.add_argument("--plot-dir", help="write the plots here as PNG files (training curves, throughput vs batch, "
                                      "latency per batch size, training scaling); the .md export embeds them")
    p.add_argument("--width", type=int, default=140, help="console width for the .txt and .svg exports")


def _train_defaults():
    from bench.train import TrainBenchConfig
    return TrainBenchConfig()


def _tune_defaults():
    """bench tune's options, and its short measurements per point (its --warmup/--min-time/--min-iterations)."""
    from bench.tune import SEARCH_RUN, TuneOptions
    return TuneOptions(), SEARCH_RUN


def _given(argv: Sequence[str] | None) -> set[str]:
    """The options typed on the command line, as dests: what a parser whose every default is
    SUPPRESS leaves in its namespace (a value equal to a default still counts as given)."""
    def suppress(parser: argparse.ArgumentParser) -> None:
        parser._defaults.clear()
        for action in parser._actions:
            action.default = argparse.SUPPRESS
            if isinstance(action, argparse._SubParsersAction):
                for subparser in action.choices.values():
                    suppress(subparser)
    parser = build_parser()
    suppress(parser)
    return set(vars(parser.parse_args(argv))) - {"command"}


def _session_config(args) -> SessionConfig:
    return SessionConfig(providers=parse_providers(args.provider), strict=args.strict,
                         intra_op_threads=args.intra_op_threads, inter_op_threads=args.inter_op_threads,
                         graph_optimization=args.graph_opt, execution_mode=args.execution_mode,
                         io_binding=args.io_binding, outputs=args.outputs, device_id=args.device_id,
                         trt_fp16=args.trt_fp16, trt_int8=args.trt_int8, trt_workspace_mb=args.trt_workspace_mb,
                         trt_cache_dir=args.trt_cache_dir, trt_timing_cache_dir=args.trt_timing_cache_dir,
                         entries=with_default_entries(inputs_lib.parse_assignments(
                             args.session_config, "session-config", "session.intra_op.allow_spinning=1")),
                         force=args.force)


def _input_config(args) -> InputConfig:
    return InputConfig(dims=tuple(inputs_lib.parse_dims(args.dim).items()),
                       shapes=tuple(inputs_lib.parse_shapes(args.shape).items()), seed=args.seed,
                       distinct=args.distinct_inputs, int_range=inputs_lib.parse_int_range(args.int_range),
                       images=args.images, force=args.force)


def _config_record(args, **parts: Any) -> dict[str, Any]:
    record = {k: v for k, v in vars(args).items() if k != "output"}
    record.update({k: dataclasses.asdict(v) for k, v in parts.items()})
    return record


class _Output:
    """Where things go: tables to stdout, progress and warnings to stderr, the JSON atomically."""

    def __init__(self, args):
        self.quiet = args.quiet
        self.top = getattr(args, "top", report.DEFAULT_TOP)
        if self.top < 1:
            raise cli.UsageError(f"--top {self.top} must be >= 1")
        self.json = require_parent_dir(args.json) if args.json else None
        self.csv = report.csv_path(args.csv) if args.csv else None
        plot_dir = getattr(args, "plot_dir", None)
        self.plot_dir = require_output_dir(plot_dir, "--plot-dir") if plot_dir else None
        self.out = cli.console()
        self.err = cli.console(stderr=True)

    def progress(self) -> report.MeasureProgress:
        return report.MeasureProgress(self.err, self.quiet)

    def finish(self, result: results.BenchResult) -> int:
        if result.fallback:
            print(f"{PROG}: warning: {result.fallback}", file=sys.stderr)
        if not self.quiet:
            for warning in result.warnings:
                print(f"{PROG}: warning: {warning}", file=sys.stderr)
            report.print_result(self.out, result, self.top)
        if self.json:
            write_json_atomic(self.json, result.to_json())
        if self.csv:
            report.write_csv(report.tables(result, self.top), self.csv)
        if self.plot_dir:  # last: the measurement is on disk whatever a plot does
            report.plot([result], self.plot_dir)
        return 0


def _run_config(args) -> RunConfig:
    stability = {k: v for k, v in vars(args).items() if k in ("until_stable", "max_time")}
    return RunConfig(warmup=args.warmup, min_time=args.min_time, min_iterations=args.min_iterations, **stability)


def _measure_cmd(args, kind: str, batches: Sequence[int | None], fallback_batch: int) -> results.BenchResult:
    from bench.engines import OnnxEngine
    from bench.measure import engine_result, measure_engine

    run, session_config, inputs = _run_config(args), _session_config(args), _input_config(args)
    engine = OnnxEngine.open(args.model or default_model(), session_config)
    rows = []
    with args.output.progress() as progress:
        for index, batch in enumerate(batches):
            batch = batch or inputs_lib.default_batch(engine.specs, fallback_batch, dict(inputs.shapes))
            step = progress.step(f"{kind}: {engine.name} batch {batch} ({index + 1}/{len(batches)})", index,
                                 len(batches), run)
            rows.append(measure_engine(engine, batch=batch, inputs=inputs, run=run, progress=step))
    return _with_operations(engine_result(kind, engine.record(), rows,
                                          _config_record(args, session=session_config, inputs=inputs, run=run),
                                          run=run), args, session_config, inputs)


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
    return _measure_cmd(args, "sweep", _batch_list(args.batch), 1)


def _cmd_overhead(args) -> results.BenchResult:
    from bench.engines import OnnxEngine
    from bench.measure import engine_result, measure_overhead, overhead_notes

    run, session_config, inputs = _run_config(args), _session_config(args), _input_config(args)
    engine = OnnxEngine.open(args.model or default_model(), session_config)
    with args.output.progress() as progress:
        # Each round refills the bar: the rounds' lengths are only known as they run.
        step = progress.step(f"overhead: harness vs bare loop, {args.rounds} rounds", 0, 1, run)
        # --batch defaults to 1 here (never None): overhead measures one batch size.
        rows, ratios = measure_overhead(engine, batch=_single_batch(args.batch) or 1, inputs=inputs, run=run,
                                        rounds=args.rounds, progress=step)
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
    if args.profile_runs < 1:
        raise cli.UsageError(f"--profile-runs {args.profile_runs} must be >= 1")
    session_config, inputs = _session_config(args), _input_config(args)
    with args.output.progress() as progress:
        # Each engine measures in a process of its own: the bar moves a step per engine and round.
        result = compare.run_compare(model, batches=_batch_list(args.batch), session_config=session_config,
                                     inputs=inputs, run_config=run, keras_path=keras_path,
                                     variants=variants, rounds=args.rounds, progress=progress.step,
                                     profile_run=dataclasses.replace(run, min_time=0,
                                                                     min_iterations=args.profile_runs)
                                     if args.profile else None)
    return _with_operations(result, args, session_config, inputs)


def _cmd_peak(args) -> results.BenchResult:
    from bench import peak

    session_config = SessionConfig(entries=with_default_entries(inputs_lib.parse_assignments(
        args.session_config, "session-config", "session.intra_op.allow_spinning=1")),
        intra_op_threads=args.intra_op_threads, force=args.force)
    with args.output.progress() as progress:
        return peak.run_peak(shapes=peak.parse_shapes(args.shapes), session_config=session_config,
                             run_config=_run_config(args), rounds=args.rounds, progress=progress.step,
                             source=args.json)


def _cmd_profile(args) -> results.BenchResult:
    from bench.measure import engine_result
    from bench.profile import profile_onnx

    run, session_config, inputs = _run_config(args), _session_config(args), _input_config(args)
    with args.output.progress() as progress:
        record, row, found = profile_onnx(args.model or default_model(), session_config, label="onnxruntime",
                                          batch=_single_batch(args.batch), inputs=inputs, run=run,
                                          progress=progress.step)
    result = engine_result("profile", record, [row], _config_record(args, session=session_config, inputs=inputs,
                                                                    run=run))
    return dataclasses.replace(result, profiles=(found,))


def _cmd_tune(args) -> results.BenchResult:
    from bench import tune, tuned

    model = Path(args.model) if args.model else default_model()
    output = require_parent_dir(args.settings_file or tuned.default_path(model))
    tuned.check_location(output, model)
    options = tune.TuneOptions(budget_ms=args.latency_budget_ms, passes=args.passes, min_gain=args.min_gain,
                               candidates=args.candidates, rounds=args.rounds, confirm_time=args.confirm_time)
    with args.output.progress() as progress:
        return tune.run_tune(model, batches=_batch_list(args.batch) if args.batch else None,
                             base=_session_config(args), inputs=_input_config(args), run=_run_config(args),
                             options=options, output=output, progress=progress.step)


def _cmd_train(args) -> results.BenchResult:
    from bench import train
    config = train.TrainBenchConfig(nps=_batch_list(args.nps), image_size=args.image_size,
                                    batch_size=args.batch_size, steps=args.steps, warmup_steps=args.warmup_steps,
                                    log_every=args.log_every, precision=args.precision, timeout_s=args.timeout)

    def done(np: int, intervals: Sequence[float]) -> None:
        if not args.quiet:
            args.output.err.print(f"-np {np}: {sum(intervals) / len(intervals):,.1f} img/s total")
    return train.run(config, keep_dir=args.keep_dir, on_done=done)


def _cmd_allreduce(args) -> results.BenchResult:
    from bench import allreduce
    config = allreduce.AllreduceConfig(nps=_batch_list(args.nps), sizes=allreduce.parse_sizes(args.sizes, args.factor),
                                       iterations=args.iterations, warmup=args.warmup,
                                       controller="mpi" if args.mpi else "gloo", timeout_s=args.timeout,
                                       link=os.environ.get(allreduce.LINK_VARIABLE) or None)

    def done(rows: Sequence[results.AllreduceRow]) -> None:
        if not args.quiet and rows:
            args.output.err.print(f"-np {rows[0].np}: busbw {rows[-1].busbw_gb_s:.3f} GB/s at {rows[-1].bytes:,} bytes")
    return allreduce.run(config, on_done=done)


def _cmd_load(args) -> results.BenchResult:
    from bench.engines import OnnxEngine
    from bench.load import run_load
    from bench.measure import measured_environment

    if args.warmup < 0:
        raise cli.UsageError(f"--warmup {args.warmup} must be >= 0")
    if args.concurrency > thread_limit() and not args.force:
        raise cli.UsageError(f"--concurrency {args.concurrency} starts a thread per query in flight, more than "
                             f"{thread_limit()} ({THREADS_PER_CPU} per usable CPU): lower it, or pass --force")
    session_config, inputs = _session_config(args), _input_config(args)
    batch = _single_batch(args.batch)
    settings = scenarios.LoadSettings(
        scenario=args.scenario, rules=args.rules, batch=batch or 1, concurrency=args.concurrency, qps=args.qps,
        latency_bound_ms=args.latency_bound_ms, min_duration_s=args.min_duration, min_queries=args.min_queries,
        until_stable=args.until_stable, max_time_s=args.max_time, seed=args.seed, expected_qps=args.expected_qps)
    if args.scenario != scenarios.SERVER:
        for name in ("qps", "latency_bound_ms"):
            if getattr(args, name) is not None:
                raise cli.UsageError(f"--{name.replace('_', '-')} applies to --scenario server, not {args.scenario}")
    logs = None
    if args.engine == "loadgen":
        from bench import loadgen
        logs = loadgen.logs_dir(args.json)
        loadgen.check_settings(settings)
    engine = OnnxEngine.open(args.model or default_model(), session_config)
    if batch is None:
        batch = inputs_lib.default_batch(engine.specs, scenarios.DEFAULT_BATCH[args.scenario], dict(inputs.shapes))
        settings = dataclasses.replace(settings, batch=batch)
    with args.output.progress() as progress:
        if logs is None:
            outcome = run_load(engine, settings, inputs, warmup=args.warmup, find_peak=args.find_peak,
                               progress=progress.step)
        else:
            outcome = loadgen.run_loadgen(engine, settings, inputs, warmup=args.warmup, find_peak=args.find_peak,
                                          progress=progress.step, logs=logs)
    record = engine.record()
    return results.BenchResult(
        kind="load", config=_config_record(args, session=session_config, inputs=inputs, load=settings),
        environment=measured_environment(**{record.engine: record.runtime}), model=record.model_json(),
        requested_providers=record.requested_providers, providers=record.providers, fallback=record.fallback,
        load=outcome.rows, notes=outcome.notes, warnings=outcome.warnings, peak_check=outcome.peak_check,
        loadgen=outcome.loadgen)


def _cmd_check(args) -> results.BenchResult:
    from bench import check

    allowed = check.parse_slowdown(args.max_slowdown)
    bases, news = [results.load(p) for p in args.baseline], [results.load(p) for p in args.result]
    return check.check(bases, news, max_slowdown=allowed, allow_different_environment=args.allow_different_environment,
                       base_sources=args.baseline, new_sources=args.result)


def _run_dir(args) -> RunDir:
    if args.run is None:
        return RunDir.of(args.results[0])
    if not Path(args.run).is_dir():
        raise cli.UsageError(f"--run {args.run}: no such directory; pass the directory a training run wrote "
                             "(its --output-dir) or leave --run out")
    return RunDir(args.run)


def _cmd_report(args) -> int:
    """Everything is read and checked before the first file is written: a refusal leaves nothing behind."""
    loaded = [results.load(path) for path in args.results]
    if args.compare and len(loaded) != 2:
        raise cli.UsageError(f"--compare takes exactly two results files, got {len(loaded)}")
    if args.html and Path(args.html).suffix.lower() != ".html":
        raise cli.UsageError(f"--html {args.html}: the page's name must end in .html, e.g. report.html")
    exports = [report.check_export_path(path) for path in [*args.export, *([args.html] if args.html else [])]]
    if args.plot_dir:
        require_output_dir(args.plot_dir, "--plot-dir")
    if args.compare:
        report.comparison_tables(loaded[0], loaded[1])  # refuses runs that share no rows
    run = _run_dir(args)
    # The run's parts, where present: a user with only bench results still gets a report.
    summary = run.read_summary() if run.summary.is_file() else None
    record = ExportRecord.read(run.export_record) if run.export_record.is_file() else None
    sources = [*args.results, *(str(p) for p, part in ((run.summary, summary), (run.export_record, record)) if part)]
    doc = report.document(loaded, compare=args.compare, summary=summary, record=record, run=str(run.root),
                          sources=sources)
    report.print_all(cli.console(), loaded, compare=args.compare)
    plot_files = report.write_plots(doc, args.plot_dir) if args.plot_dir else None
    for path in exports:
        report.export(doc, path, results=loaded, compare=args.compare, width=args.width, plot_files=plot_files)
    return 0


COMMANDS = {"throughput": _cmd_throughput, "latency": _cmd_latency, "sweep": _cmd_sweep,
            "compare": _cmd_compare, "overhead": _cmd_overhead, "train": _cmd_train, "load": _cmd_load,
            "allreduce": _cmd_allreduce,
            "check": _cmd_check, "profile": _cmd_profile, "tune": _cmd_tune, "peak": _cmd_peak}


def _main(argv: Sequence[str] | None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if args.command == "report":
        return _cmd_report(args)
    if args.command == "peak" and args.json == _peak_options().get_default("json"):
        Path(args.json).parent.mkdir(exist_ok=True)         # bench peak's default place, runs/, may be new
    notes = []
    if getattr(args, "config", None):  # every subcommand with the shared measuring options
        from bench import tuned
        notes.append(tuned.apply(args, _given(argv), run_variant=args.command != "compare"))
    args.output = _Output(args)
    result = COMMANDS[args.command](args)
    result = dataclasses.replace(result, notes=(*result.notes, *notes))
    args.output.finish(result)
    if result.kind == "check":
        from bench.check import failure
        message = failure(result)
        if message:
            raise cli.CheckFailed(message)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
