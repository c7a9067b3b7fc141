"""The one place that renders results: rich tables, the run report (Markdown, one HTML page), plots, progress.

A result becomes neutral `TableData` (title, columns, string cells) once; rich, Markdown, HTML
and CSV all render that, so they cannot disagree. The run report is a `Document` of `Section`s
(facts, tables, plots, notes): the training run (toolkit.runs.TrainSummary), the export
(toolkit.runs.ExportRecord), one section per benchmark result (with its confidence intervals and
verdicts and the resources its process used; a `bench load` result: VALID or INVALID and why; a
`bench check` result: regression or not; a `bench profile` result: the top operators; a `bench tune`
result: the chosen setting and the Pareto front), the throughput/latency plots, the environment;
each appears only when its input exists.
It renders to Markdown (plots as PNG files under --plot-dir, linked by relative path) and to one
self-contained HTML page (plots as SVG data URIs, no script, no network resource, readable at
phone width). The figures themselves are pure functions in bench/figures.py. SVG and text
exports are rich's console recording of the very tables the terminal shows; CSV holds those
tables one per file: the first in the file named, each other beside it as STEM-NAME.csv (NAME:
the table's `name`).

    from bench import report, results
    from toolkit.runs import ExportRecord, RunDir
    r = results.load("runs/alexnet/bench-sweep.json")
    report.print_result(rich.console.Console(), r)
    run = RunDir("runs/alexnet")
    doc = report.document([r], summary=run.read_summary(), record=ExportRecord.read(run.export_record))
    files = report.write_plots(doc, "runs/alexnet/plots")
    report.export(doc, "runs/alexnet/report.md", plot_files=files); report.export(doc, "runs/alexnet/report.html")
    report.export(doc, "runs/alexnet/sweep.csv", results=[r])

Text from files (labels, model names, notes) is escaped for each renderer: control characters shown as
`\\x1b` on the terminal and in .txt/.svg (an ANSI or OSC sequence from a JSON string would otherwise drive the
terminal), HTML escaped in Markdown (a viewer that renders HTML would run it) and the page, `$` for
matplotlib (bench/figures.py).

A new result kind gets its section by adding a builder to RESULT_SECTIONS (kind -> Section);
bench sweep, compare, load, profile, tune, ... show their progress through `MeasureProgress`.
"""
from __future__ import annotations

import base64
import csv
import dataclasses
import datetime
import functools
import html
import io
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from bench.results import AllreduceRow, BenchResult, Profile, Resources, Row, Setting, Spread, Tune
from bench.runner import Progress as ProgressCallback
from bench.runner import RunConfig
from bench.scenarios import ARRIVALS_ALPHA, LoadRow, headline_rows
from bench.stats import Comparison, Interval
from toolkit.cli import UsageError, visible
from toolkit.files import atomic_path, require_parent_dir, write_text_atomic
from toolkit.runs import ExportRecord, TrainSummary, now_utc

EXPORT_FORMATS = (".md", ".html", ".svg", ".txt", ".csv")
NUMERIC = {"batch", "samples/s", "mean", "p50", "p90", "p95", "p99", "max", "stdev", "iters", "ratio", "np",
           "efficiency", "intervals", "1.96 sd", "delta", "new/old", "p50 delta", "p50 new/old", "cv", "queries",
           "value", "value 95% CI", "base", "new", "allowed",
           "epoch", "loss", "accuracy", "val loss", "val accuracy", "learning rate", "seconds", "rank", "images",
           "first index", "size", "opset", "max |diff| vs Keras", "top-1 = Keras", "top-1 = float32", "cores",
           "peak RSS MB", "CPU util", "CPU s", "load s", "first run ms", "GPU MB", "nodes", "calls", "share",
           "threads", "ms per run", "GOP/sample", "GOP/s", "% peak", "runs", "ms/run p50", "limit"}
DEFAULT_TOP = 15  # operators and nodes a profile table shows (the JSON keeps all)


@dataclasses.dataclass(frozen=True)
class TableData:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    name: str = "results"   # the CSV file's suffix when a result has several tables
    caption: tuple[str, ...] = ()  # lines shown under the table


def _ms(value: float) -> str:
    return f"{value:.4f}" if value < 1 else f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _rate(value: float) -> str:
    return f"{value:,.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _short(providers: Sequence[str]) -> str:
    return "+".join(p.replace("ExecutionProvider", "") for p in providers)


def _operations(row: Row, show_peak: bool) -> tuple[str, ...]:
    """GOP per sample, GOP/s achieved and, where a peak is known, its share of it ("-" where not counted)."""
    if row.ops_per_sample is None:
        return ("-", "-") + ("-",) * show_peak
    share = row.peak_fraction
    return ((f"{row.ops_per_sample / 1e9:.3f}", f"{row.gops:,.1f}")
            + (("-" if share is None else f"{share:.1%}"),) * show_peak)


def inference_table(result: BenchResult) -> TableData:
    """Optional columns only where they vary or exist: label, providers (compare mixes engines), operations
    (GOP per sample, GOP/s, % of the measured peak: bench/peak.py), ratio."""
    show_label = len({r.label for r in result.rows}) > 1
    show_providers = any(r.providers != result.providers for r in result.rows)
    show_ops = any(r.ops_per_sample is not None for r in result.rows)
    show_peak = any(r.peak_fraction is not None for r in result.rows)
    show_ratio = any(r.ratio is not None for r in result.rows)
    columns = (("label",) * show_label + ("batch",) + ("providers",) * show_providers
               + ("samples/s", "mean", "p50", "p90", "p95", "p99", "max", "stdev", "iters")
               + ("GOP/sample", "GOP/s") * show_ops + ("% peak",) * show_peak + ("ratio",) * show_ratio)
    rows = []
    for r in result.rows:
        lat = r.latency
        rows.append((r.label,) * show_label + (str(r.batch),) + (_short(r.providers),) * show_providers
                    + (_rate(r.throughput.samples_per_second), *map(_ms, (lat.mean, lat.p50, lat.p90, lat.p95,
                                                                          lat.p99, lat.max, lat.stdev)),
                       str(lat.count))
                    + (_operations(r, show_peak) if show_ops else ()) + (_ratio(r.ratio),) * show_ratio)
    title = f"bench {result.kind} (latency in ms per run of one batch"
    title += "; GOP: 10^9 operations, 2 per multiply-add, FLOP for float32 rows)" if show_ops else ")"
    return TableData(title, columns, tuple(rows))


def peak_table(result: BenchResult) -> TableData:
    """`bench peak`: each kernel's rate and its share of its precision's fastest."""
    columns = ("kernel MxKxN", "precision", "runs", "ms/run p50", "GOP/s", "% peak")
    rows = tuple((r.label, r.precision or "-", str(r.latency.count), _ms(r.latency.p50),
                  "-" if r.gops is None else f"{r.gops:,.1f}",
                  "-" if r.peak_fraction is None else f"{r.peak_fraction:.1%}") for r in result.rows)
    return TableData("bench peak (matrix multiply Y = A @ B with onnxruntime; GOP/s: 10^9 x 2 x multiply-adds "
                     "per second)", columns, rows)


def _mean_and_ci(spread: Spread) -> str:
    if spread.mean_ci95 is None:
        return _rate(spread.mean)
    return f"{_rate(spread.mean)} +- {_rate(spread.mean_ci95[1] - spread.mean)}"


def train_table(result: BenchResult) -> TableData:
    columns = ("np", "total img/s", "1.96 sd", "per rank img/s", "efficiency", "intervals")
    rows = tuple((str(t.np), _mean_and_ci(t.total), _rate(t.total.half_range95), _mean_and_ci(t.per_rank),
                  "-" if t.efficiency is None else f"{t.efficiency:.1%}", str(len(t.intervals)))
                 for t in result.train)
    return TableData("bench train (Horovod, synthetic data; img/s: mean over intervals +- the 95% confidence "
                     "interval of the mean, Student's t; 1.96 sd: ~95% of intervals lie within the mean +- this, "
                     "if normal)", columns, rows)


def _size(size: int) -> str:
    """Bytes as nccl-tests' -b/-e take them: the largest power-of-1024 unit that divides them."""
    for unit, scale in (("G", 2 ** 30), ("M", 2 ** 20), ("K", 2 ** 10)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def allreduce_table(result: BenchResult) -> TableData:
    columns = ("np", "size", "count", "time us", "algbw GB/s", "busbw GB/s", "lat avg us", "lat min us",
               "lat max us", "wrong")
    rows = []
    for r in result.allreduce:
        latency = r.latency_us or {}
        rows.append((str(r.np), _size(r.bytes), str(r.count), "-" if r.time_us is None else f"{r.time_us:.1f}",
                     "-" if r.algbw_gb_s is None else f"{r.algbw_gb_s:.3g}",
                     "-" if r.busbw_gb_s is None else f"{r.busbw_gb_s:.3g}",
                     *(f"{latency[k]:.1f}" if k in latency else "-" for k in ("avg", "min", "max")), str(r.wrong)))
    return TableData("bench allreduce (Horovod, float32 sum; time: the slowest rank's, mean over iterations; "
                     "algbw = bytes / time, busbw = algbw x 2(n-1)/n as nccl-tests; latency over ranks as "
                     "osu_allreduce; GB/s = 1e9 bytes/s)", columns, tuple(rows))


def allreduce_facts(result: BenchResult) -> list[tuple[str, str]]:
    """The bus bandwidth at the largest message of each world size: what a link's rate is compared with."""
    largest: dict[int, tuple[AllreduceRow, float]] = {}
    for row in result.allreduce:
        if row.busbw_gb_s is not None and row.bytes >= largest.get(row.np, (row, 0.0))[0].bytes:
            largest[row.np] = row, row.busbw_gb_s
    link = result.config.get("link")
    return [(f"all-reduce -np {np}", f"busbw {busbw:.3f} GB/s ({busbw * 8:.2f} Gb/s) at "
                                     f"{_size(row.bytes)}" + (f"; link {link}" if link else ""))
            for np, (row, busbw) in sorted(largest.items())]


def _interval(interval: Interval | None, fmt) -> str:
    """[low, high]; ? for a side the data cannot bound; - for no interval."""
    if interval is None:
        return "-"
    def side(value):
        return "?" if value is None else fmt(value)
    return f"[{side(interval.low)}, {side(interval.high)}]"


def interval_table(result: BenchResult) -> TableData:
    show_label = len({r.label for r in result.rows}) > 1
    columns = (("label",) * show_label + ("batch", "samples/s 95% CI", "p50 ms 95% CI", "p90 ms 95% CI",
                                          "p95 ms 95% CI", "p99 ms 95% CI", "cv"))
    rows = []
    for r in result.rows:
        ci = r.intervals
        rows.append((r.label,) * show_label + (str(r.batch), _interval(ci.samples_per_second, _rate),
                                               *(_interval(getattr(ci, p), _ms) for p in ("p50", "p90", "p95", "p99")),
                                               f"{ci.cv:.1%}"))
    return TableData("95% confidence intervals (samples/s: batch means of the run times; percentiles: order "
                     "statistics widened for dependence; ?: too few runs to bound that side) and the run times' "
                     "coefficient of variation",
                     columns, tuple(rows), "intervals")


def _metric_value(metric: str, value: float) -> str:
    return _ms(value) if metric.endswith("ms") else _rate(value)


def load_time_table(rows: Sequence[LoadRow]) -> TableData:
    """Where each query's time went in the system under test: waiting for a worker, computing."""
    columns = ("test", "latency mean ms", "latency p99 ms", "queueing mean ms", "queueing p99 ms", "compute mean ms",
               "compute p99 ms")
    return TableData(
        "where the time went (ms per query; latency from the scheduled time for server, the issue time for "
        "single-/multi-stream, the start for offline; queueing: every worker busy; a server latency is the "
        "generator's late and hand-off, then queueing, then compute)", columns,
        tuple((r.label(), *map(_ms, (r.latency.mean, r.latency.p99, r.queueing.mean, r.queueing.p99, r.compute.mean,
                                     r.compute.p99)))
              for r in rows), "time")


def generator_table(rows: Sequence[LoadRow]) -> TableData:
    """The load generator's own accuracy: its delays, and (server) its issue times against the intended Poisson
    process (bench/scenarios.py ArrivalCheck)."""
    verdict = {True: "Poisson", False: "NOT Poisson", None: "too few"}

    def arrivals(a) -> tuple[str, ...]:
        if a is None:
            return ("-",) * 4
        tests = " / ".join("-" if v is None else f"{v:.3g}" for v in (a.rate_p, a.gaps_p, a.dispersion_p))
        return _rate(a.rate), _interval(a.rate_ci, _rate), tests, verdict[a.passed]
    return TableData(
        "the load generator's own accuracy (ms per query; late: actual - intended issue time; hand-off: a free "
        "worker -> compute start, its queue's wake-up and the GIL; server: the issue times against the intended "
        "Poisson process, two-sided p-values of the rate, of the gaps against the exponential (Kolmogorov-Smirnov) "
        f"and of the counts' dispersion in windows, NOT Poisson where one is below {ARRIVALS_ALPHA:g}/3)",
        ("test", "late mean ms", "late p99 ms", "hand-off mean ms", "hand-off p99 ms", "issued qps", "issued 95% CI",
         "p: rate / gaps / counts", "arrivals"),
        tuple((r.label(), *map(_ms, (r.schedule_error.mean, r.schedule_error.p99, r.handoff.mean, r.handoff.p99)),
               *arrivals(r.arrivals)) for r in rows), "generator")


def load_judged(result: BenchResult) -> list[tuple[LoadRow, bool, float, tuple[str, ...]]]:
    """Each load row with its verdict, metric value and reasons: the load generator's own, so LoadGen's
    (from its log, bench/loadgen.py) for an `--engine loadgen` result."""
    if result.loadgen:
        return [(r, log.valid, log.metric_value, log.reasons) for r, log in zip(result.load, result.loadgen)]
    return [(r, r.valid, r.metric_value, r.reasons) for r in result.load]


def load_engine(result: BenchResult) -> str:
    return ("MLPerf LoadGen: verdict, value and reasons from its mlperf_log_detail.txt" if result.loadgen
            else "bench's own generator")


def load_tables(result: BenchResult) -> list[TableData]:
    """The scenarios' results and verdicts, where each query's time went, why a test is INVALID, and what the
    process used during each test."""
    show_peak = any(r.peak for r in result.load)

    def early(row: LoadRow) -> str:
        found = row.early_stopping
        if found is None:
            return "-"
        if found.overlatency is not None:
            return f"{found.overlatency} over, needs {found.needed}"
        return "-" if found.estimate_ms is None else _ms(found.estimate_ms)
    columns = ("test", "queries", "samples/s", "samples/s 95% CI", "metric", "value", "value 95% CI",
               "early stopping", "result") + ("peak",) * show_peak
    judged = load_judged(result)
    rows = tuple((r.label(), f"{r.queries:,}", _rate(r.samples_per_second), _interval(r.samples_per_second_ci, _rate),
                  r.metric, _metric_value(r.metric, value),
                  _interval(r.metric_ci, lambda v, m=r.metric: _metric_value(m, v)), early(r),
                  "VALID" if valid else "INVALID") + (("peak" if r.peak else "",) * show_peak)
                 for r, valid, value, _ in judged)
    found = [TableData(f"bench load, engine: {load_engine(result)} (MLPerf LoadGen scenarios; percentiles as LoadGen "
                       "takes them, sorted[int(n p)]; early stopping: LoadGen's percentile estimate at 99% confidence, "
                       "or queries over the bound and the count needed)", columns, rows, "load")]
    found += [load_time_table(result.load), generator_table(result.load)]
    invalid = tuple((r.label(), reason) for r, valid, _, reasons in judged if not valid for reason in reasons)
    if invalid:
        found.append(TableData("why INVALID (and the fix)", ("test", "reason"), invalid, "invalid"))
    check = result.peak_check
    if check is not None:
        found.append(TableData(f"find-peak re-check: each test again at its QPS, from the highest that passed; "
                               f"{check.describe()}", ("qps", "re-check"),
                               tuple((f"{qps:g}", "passed" if ok else "failed") for qps, ok in check.rechecks),
                               "recheck"))
    used = resources_table(result)
    if used is not None:
        found.append(used)
    return found


SIGNIFICANCE = ("ratio: new / base with its 95% CI; one run a side, so the CI holds within-run variation only "
                "and gives no verdict: repeat each side and use bench check for one")


def comparisons_table(comparisons: Sequence[Comparison], title: str, name: str = "verdicts") -> TableData:
    """Each pair's ratio, its 95% interval, the verdict and the test; `bench check`'s decision where made."""
    decided = any(c.regression is not None for c in comparisons)
    columns = ("row", "baseline", "metric", "base", "new", "ratio", "95% CI", "verdict", "test") + (
        ("allowed", "check") if decided else ())
    def ratio(value: float | None) -> str:
        return "?" if value is None else f"{value:.3f}x"
    rows = tuple((c.row, c.baseline, c.metric, _metric_value(c.metric, c.base_value), _metric_value(c.metric, c.value),
                  ratio(c.ratio), _interval(c.interval, ratio), c.verdict, c.test) + (
                     (f"{c.allowed_slowdown:.1%}", {True: "REGRESSION", False: "ok", None: "no verdict"}[c.regression])
                     if decided else ())
                 for c in comparisons)
    return TableData(title, columns, rows, name)


VERDICTS = {"compare": "verdicts: each engine against the reference",
            "tune": "verdicts: each candidate against the defaults at its batch size"}


def tables(result: BenchResult, top: int = DEFAULT_TOP) -> list[TableData]:
    """Every table of a result; `top`: the operators and nodes a profile's tables show."""
    if result.kind == "train":
        return [train_table(result)]
    if result.kind == "allreduce":
        return [allreduce_table(result)]
    if result.kind == "peak":
        used = resources_table(result)
        return [peak_table(result)] + ([used] if used is not None else [])
    if result.kind == "load":
        return load_tables(result)
    if result.kind == "check":
        return [comparisons_table(result.comparisons, "bench check: each row against the baseline (ratio: new / "
                                                      "base with its 95% CI; a verdict needs 2 or more runs a side, "
                                                      "one run a side gives the within-run CI and no verdict; "
                                                      "REGRESSION: the slowdown's whole interval is over the slowdown "
                                                      "allowed)")]
    found = [checks_table(result)] if result.kind == "gpucheck" else []
    found += [inference_table(result), interval_table(result)]
    split = device_times_table(result)
    if split is not None:
        found.append(split)
    if result.comparisons:
        found.append(comparisons_table(result.comparisons, f"{VERDICTS.get(result.kind, 'verdicts')} (ratio of "
                                                           "samples/s, 95% CI; paired t: Student's t on the log "
                                                           "ratios of the interleaved rounds)"))
    used = resources_table(result)
    if used is not None:
        found.append(used)
    if result.tune is not None:
        found.append(pareto_table(result))
    for profile in result.profiles:
        found.extend((operators_table(profile, top), nodes_table(profile, top)))
    return found


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f}"


def resources_table(result: BenchResult) -> TableData | None:
    """What the process used for each row (each load test), from version 4 on; None for older files."""
    if result.kind == "load":
        keys: tuple[str, ...] = ("test",)
        entries: list[tuple[tuple[str, ...], Resources]] = [((r.label(),), r.resources) for r in result.load
                                                             if r.resources is not None]
    else:
        show_label = len({r.label for r in result.rows}) > 1
        keys = ("label",) * show_label + ("batch",)
        entries = [((r.label,) * show_label + (str(r.batch),), r.resources) for r in result.rows
                   if r.resources is not None]
    if not entries:
        return None
    show_gpu = any(used.device_memory_bytes is not None for _, used in entries)
    columns = keys + ("peak RSS MB", "CPU util", "CPU s", "load s", "first run ms") + ("GPU MB",) * show_gpu
    rows = tuple(key + (_mb(used.peak_rss_bytes), f"{used.cpu_utilisation:.0%}", f"{used.cpu_seconds:.2f}",
                        "-" if used.load_seconds is None else f"{used.load_seconds:.3f}", _ms(used.first_run_ms))
                 + (_mb(used.device_memory_bytes),) * show_gpu for key, used in entries)
    cpus = entries[0][1].usable_cpus
    return TableData("resources and cold start, read from the measuring process", columns, rows, "resources", (
        f"CPU util: CPU time / wall time / {cpus} usable CPUs over the measured runs, or the load test "
        "(spin-waiting counts as busy); load: session creation or Keras model load; first run: the first at its "
        "batch size, timed alone and not measured (load: the first warm-up query)",
        "peak RSS: the process's resident-memory high-water mark so far (runtime and interpreter included; "
        "compare: each engine's own process)"))


def device_times_table(result: BenchResult) -> TableData | None:
    """Where each GPU row's run time goes (schema version 5); None where no row ran on a GPU. A CPU row in the
    same result says n/a: its inputs and outputs are in host memory already, there is nothing to copy."""
    if not any(r.device_times is not None for r in result.rows):
        return None
    show_label = len({r.label for r in result.rows}) > 1
    columns = ("label",) * show_label + ("batch", "H2D ms", "compute ms", "D2H ms", "sum ms", "timed run ms",
                                         "H2D GB/s", "runs")
    rows = []
    for r in result.rows:
        key = (r.label,) * show_label + (str(r.batch),)
        split = r.device_times
        if split is None:
            rows.append(key + ("n/a (CPU)",) + ("-",) * 3 + (_ms(r.latency.mean),) + ("-", "-"))
            continue
        bandwidth = split.h2d_gb_per_s
        rows.append(key + tuple(map(_ms, (*split.means_ms, split.total_ms, r.latency.mean)))
                    + ("-" if bandwidth is None else f"{bandwidth:.1f}", str(split.runs)))
    methods = sorted({r.device_times.method for r in result.rows if r.device_times is not None})
    return TableData("where GPU time goes (ms per run, mean of sampled runs, each step synchronised: host->device "
                     "copy of the inputs, compute on the device, device->host copy of the outputs)", columns,
                     tuple(rows), "device-times",
                     ("timed run: the row's mean over its timed runs, outputs as the result's config says; the "
                      "split's runs are sampled apart from them", *methods))


def checks_table(result: BenchResult) -> TableData:
    """A GPU check's verdicts: PASS, FAIL, or not run (and why)."""
    def verdict(passed: bool | None) -> str:
        return "not run" if passed is None else "PASS" if passed else "FAIL"

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"
    rows = tuple((c.name, verdict(c.passed), number(c.value), number(c.limit), c.detail) for c in result.checks)
    return TableData("GPU check: each verdict, the number measured and the bound it was held to", (
        "check", "result", "value", "limit", "detail"), rows, "checks")


def _per_run(profile: Profile, total_ms: float) -> str:
    return _ms(total_ms / profile.runs)


def operators_table(profile: Profile, top: int = DEFAULT_TOP) -> TableData:
    columns = ("op", "providers", "nodes", "calls", "ms per run", "share")
    rows = tuple((op.name, _short(op.providers), str(op.nodes), str(op.calls), _per_run(profile, op.total_ms),
                  f"{profile.share(op):.1%}") for op in profile.ops[:top])
    return TableData(f"{profile.label}, batch {profile.batch}: top {len(rows)} of {len(profile.ops)} op types",
                     columns, rows, "operators", profile_lines(profile))


def nodes_table(profile: Profile, top: int = DEFAULT_TOP) -> TableData:
    columns = ("node", "op", "provider", "ms per run", "share")
    rows = tuple((node.name, node.op, _short(node.providers), _per_run(profile, node.total_ms),
                  f"{profile.share(node):.1%}") for node in profile.nodes[:top])
    return TableData(f"{profile.label}, batch {profile.batch}: top {len(rows)} of {len(profile.nodes)} nodes",
                     columns, rows, "nodes")


def profile_lines(profile: Profile) -> tuple[str, ...]:
    """The margin between the kernels and the measured time, and who ran the nodes."""
    wall = profile.wall_ms / profile.runs
    kernels = profile.kernel_ms / profile.runs
    lines = [f"per run ({profile.runs} profiled runs): measured {_ms(wall)} ms, kernels {_ms(kernels)} ms = "
             f"{profile.coverage:.1%} of it"]
    if profile.overlapping:
        lines.append("kernels may run concurrently here (inter-op threads / parallel executor): their sum can "
                     "exceed the measured time")
    if profile.runtime_ms is not None:
        runtime = profile.runtime_ms / profile.runs
        lines.append(f"the rest: {_ms(wall - runtime)} ms outside the session (Python call, input/output "
                     f"conversion), {_ms(runtime - kernels)} ms inside it between kernels (executor, allocation, "
                     "thread synchronisation, profiler)")
    counts = ", ".join(f"{_short([p])} {n}" for p, n in profile.nodes_by_provider.items())
    lines.append(f"nodes by provider: {counts}; {_fallback(profile)}")
    return tuple(lines)


def _fallback(profile: Profile) -> str:
    fallback = profile.cpu_fallback_nodes
    return ("fell back to CPU: none (a CPU session)" if fallback is None
            else f"fell back to CPU: {fallback} of {len(profile.nodes)}")


def _setting_cells(setting: Setting) -> tuple[str, ...]:
    threads = "ort" if setting.intra_op_threads == 0 else str(setting.intra_op_threads)
    return (setting.variant, setting.provider, threads, "on" if setting.spinning else "off",
            setting.graph_optimization, setting.execution_mode, str(setting.batch))


def pareto_table(result: BenchResult) -> TableData:
    """The tune's throughput-vs-p99 front (short search measurements), the chosen setting marked."""
    tune = _tune(result)
    columns = ("", "variant", "provider", "threads", "spinning", "graph", "mode", "batch", "samples/s", "p99")
    rows = []
    for index in tune.pareto:
        point = tune.points[index]
        rows.append(("chosen" if point.setting == tune.chosen else "",) + _setting_cells(point.setting)
                    + (_rate(point.samples_per_second), _ms(point.p99_ms)))
    budget = "no latency budget" if tune.budget_ms is None else f"latency budget: p99 <= {tune.budget_ms:g} ms"
    caption = (f"{budget}; chosen: {tune.chosen.describe()}",
               *(f"{label}{' (chosen)' if setting == tune.chosen else ''}: {setting.describe()}"
                 for label, setting in tune.confirmed),
               "threads ort: onnxruntime's default (one per physical core, pinned)")
    return TableData(f"Pareto front, throughput vs p99: {len(rows)} of {len(tune.points)} settings tried "
                     f"({tune.search_seconds:.0f} s of short measurements; the confirmed rows are above)",
                     columns, tuple(rows), "pareto", caption)


def _delta(old: float, new: float, unit: str = "") -> tuple[str, str]:
    """Signed difference (rates to 0.1, milliseconds to 0.001) and the ratio new/old."""
    difference = f"{new - old:+,.3f} ms" if unit == "ms" else f"{new - old:+,.1f}"
    return difference, _ratio(new / old if old else None)


def comparison_table(old: BenchResult, new: BenchResult) -> TableData:
    """Rows present in both runs, matched by (label, batch) or by np: delta and ratio new/old."""
    if (old.kind == "train") != (new.kind == "train"):
        raise UsageError("cannot compare a `bench train` result with an inference result: pass two of a kind")
    if new.kind == "train":
        before = {t.np: t for t in old.train}
        pairs: list[tuple[str, float, float]] = [(f"np={t.np}", before[t.np].total.mean, t.total.mean)
                                                 for t in new.train if t.np in before]
        columns: tuple[str, ...] = ("row", "old img/s", "new img/s", "delta", "new/old")
        rows: tuple[tuple[str, ...], ...] = tuple((key, _rate(a), _rate(b), *_delta(a, b)) for key, a, b in pairs)
    else:
        before_rows = {(r.label, r.batch): r for r in old.rows}
        matched: list[tuple[Row, Row]] = [(before_rows[(r.label, r.batch)], r) for r in new.rows
                                          if (r.label, r.batch) in before_rows]
        columns = ("row", "old samples/s", "new samples/s", "delta", "new/old", "old p50 ms", "new p50 ms",
                   "p50 delta", "p50 new/old")
        rows = tuple((f"{b.label} @ {b.batch}", _rate(a.throughput.samples_per_second),
                      _rate(b.throughput.samples_per_second),
                      *_delta(a.throughput.samples_per_second, b.throughput.samples_per_second),
                      _ms(a.latency.p50), _ms(b.latency.p50), *_delta(a.latency.p50, b.latency.p50, "ms"))
                     for a, b in matched)
    if not rows:
        raise UsageError("the two results share no rows (same label and batch, or same np): nothing to compare")
    return TableData(f"comparison: {old.created} -> {new.created}", columns, rows, "comparison")


def comparison_tables(old: BenchResult, new: BenchResult) -> list[TableData]:
    """--compare: the deltas (inference, train) and, for inference and load, whether each difference is significant."""
    if "train" in (old.kind, new.kind):
        return [comparison_table(old, new)]
    from bench.check import compare_results

    significance = comparisons_table(compare_results(old, new), f"significance: second run against the first "
                                     f"({SIGNIFICANCE}; separate runs, not interleaved: a change of machine load "
                                     "counts too)", "significance")
    return [significance] if new.kind == "load" else [comparison_table(old, new), significance]


def _numeric(column: str) -> bool:
    return column in NUMERIC or "/s" in column or " ms" in column


def _text(text: str, style: str = "") -> Text:
    # Text, not markup: "[low, high]" cells and titles must print as written.
    return Text(visible(text), style=style)


def to_rich(data: TableData) -> Table:
    table = Table(title=_text(data.title), title_justify="left", box=box.SIMPLE_HEAD)
    for column in data.columns:
        table.add_column(_text(column), justify="right" if _numeric(column) else "left")
    for row in data.rows:
        table.add_row(*map(_text, row))
    return table


def _md(text: str) -> str:
    """Text for Markdown: HTML escaped (a viewer that renders HTML would run it), on one line."""
    return html.escape(text, quote=False).replace("\n", " ")


def to_markdown(data: TableData) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(_md(c).replace("|", "\\|") for c in cells) + " |"
    align = ["---:" if _numeric(c) else "---" for c in data.columns]
    table = "\n".join([f"**{_md(data.title)}**", "", line(data.columns), line(align), *map(line, data.rows)])
    return "\n\n".join([table, *(f"_{_md(c)}_" for c in data.caption)])  # a paragraph per caption line



def _machine(env: dict[str, Any]) -> str:
    cpu = env.get("cpu", {})
    gpus = ", ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in env.get("gpus", [])) or "none"
    return f"{cpu.get('model', '?')}, {cpu.get('usable_cores', '?')} cores; GPU: {gpus}"


def _versions(env: dict[str, Any]) -> str:
    packages = env.get("packages", {})
    return ", ".join(f"{k} {v}" for k, v in packages.items()
                     if k in ("onnxruntime-gpu", "onnxruntime", "tensorflow", "keras", "onnx", "tf2onnx", "horovod"))


def _result_facts(result: BenchResult) -> list[tuple[str, str]]:
    facts = []
    if result.model:
        facts.append(("model", result.model["path"]))
    if result.providers:
        facts.append(("ran on", f"{_short(result.providers)} (requested: {', '.join(result.requested_providers)})"))
    return facts


def header_lines(result: BenchResult) -> list[str]:
    facts = [*_result_facts(result), ("machine", _machine(result.environment))]
    if _versions(result.environment):
        facts.append(("versions", _versions(result.environment)))
    return [f"{key}: {value}" for key, value in facts]


def renderables(result: BenchResult, top: int = DEFAULT_TOP) -> list:
    items: list = [_text(line, style="dim") for line in header_lines(result)]
    if result.fallback:
        items.append(_text(f"warning: {result.fallback}", style="bold yellow"))
    items.extend(_text(f"warning: {w}", style="bold yellow") for w in result.warnings)
    for table in tables(result, top):
        # Captions as lines of their own: the console's width, not the table's.
        items.extend([to_rich(table), *(_text(line) for line in table.caption)])
    items.extend(_text(f"note: {n}") for n in result.notes)
    return items


def print_result(console: Console, result: BenchResult, top: int = DEFAULT_TOP) -> None:
    for item in renderables(result, top):
        console.print(item)


def render_text(results: Sequence[BenchResult], width: int = 120, compare: bool = False) -> str:
    """Plain text at a fixed width: what the golden tests pin."""
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True, force_terminal=False)
    print_all(console, results, compare)
    return console.export_text()


def print_all(console: Console, results: Sequence[BenchResult], compare: bool = False) -> None:
    for result in results:
        print_result(console, result)
    if compare:
        for table in comparison_tables(results[0], results[1]):
            console.print(to_rich(table))


def to_csv(data: TableData) -> str:
    """The table's header and cells as shown (numbers formatted, intervals as [low, high])."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(data.columns)
    writer.writerows(data.rows)
    return out.getvalue()


def csv_path(path: str | Path) -> Path:
    path = require_parent_dir(path)
    if path.suffix.lower() != ".csv":
        raise UsageError(f"--csv {path}: give a file name ending in .csv")
    return path


def csv_paths(data: Sequence[TableData], path: Path) -> list[Path]:
    """PATH for the first table, STEM-NAME.csv beside it for the others (NAME-2, -3 ... when names repeat)."""
    paths, seen = [path], {data[0].name} if data else set()
    for table in data[1:]:
        name, index = table.name, 2
        while name in seen:
            name, index = f"{table.name}-{index}", index + 1
        seen.add(name)
        paths.append(path.with_name(f"{path.stem}-{name}.csv"))
    return paths


def write_csv(data: Sequence[TableData], path: str | Path) -> list[Path]:
    """Each table to its CSV file (`csv_paths`), each written atomically; returns the files."""
    paths = csv_paths(data, csv_path(path))
    for table, target in zip(data, paths):
        write_text_atomic(target, to_csv(table))
    return paths


# ---- the run report: a Document of Sections, rendered to Markdown and to one HTML page

@dataclasses.dataclass(frozen=True)
class Plot:
    """A figure of the report: made on demand (matplotlib is slow to draw), once per format written."""

    name: str                          # its file's stem under --plot-dir, e.g. "throughput-vs-batch"
    title: str                         # caption and alt text
    make: Callable[[], Any]            # -> matplotlib.figure.Figure (bench.figures)


@dataclasses.dataclass(frozen=True)
class Section:
    title: str
    anchor: str                        # its HTML id
    facts: tuple[tuple[str, str], ...] = ()   # the key numbers, shown first
    warnings: tuple[str, ...] = ()
    tables: tuple[TableData, ...] = ()        # after the plots
    plots: tuple[Plot, ...] = ()
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Document:
    title: str
    sources: tuple[str, ...]           # the files it was made from
    created: str
    sections: tuple[Section, ...]

    @property
    def plots(self) -> list[Plot]:
        return [plot for section in self.sections for plot in section.plots]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _when(iso: str) -> str:
    """2026-01-02T03:04:05+00:00 -> 2026-01-02 03:04:05 UTC: what a reader scans for."""
    try:
        return datetime.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return iso


def training_section(summary: TrainSummary) -> Section:
    per_rank = summary.throughput.per_rank(summary.world_size)
    speed = ("not measured (too few steps after warm-up)" if summary.images_per_second is None or per_rank is None else
             f"{_rate(summary.images_per_second)} img/s over all ranks, {_rate(per_rank)} per rank")
    facts = (("test accuracy", f"{_percent(summary.test_accuracy)} on {summary.test_images:,} test images"),
             ("test loss", f"{summary.test_loss:.4f}"),
             ("dataset", str(summary.dataset)),
             ("ranks", f"{_count(summary.world_size, 'rank')} x batch {summary.batch_size}, gradients "
                       f"all-reduced by {summary.allreduce}"),
             ("precision", summary.precision),
             ("training speed", speed),
             ("parameters", f"{summary.parameters:,}"),
             ("trained on", f"{summary.images_trained:,} images, {len(summary.epochs)} epochs of "
                            f"{summary.steps_per_epoch:,} steps"),
             ("input", f"{summary.input.dtype} {tuple(summary.input.shape)}, {summary.input.preprocessing}"),
             ("finished", _when(summary.created)))
    epochs = TableData("per epoch (metrics over all ranks; img/s: this epoch's training steps)",
                       ("epoch", "loss", "accuracy", "val loss", "val accuracy", "learning rate", "img/s", "seconds"),
                       tuple((str(e.epoch), f"{e.loss:.4f}", _percent(e.accuracy), f"{e.val_loss:.4f}",
                              _percent(e.val_accuracy), f"{e.learning_rate:.2e}", _rate(e.images_per_second),
                              f"{e.seconds:.1f}") for e in summary.epochs))
    ranks = TableData("ranks and hosts (each rank trains on its own shard)",
                      ("rank", "host", "device", "images", "first index"),
                      tuple((str(r.rank), r.hostname, r.device, f"{r.images:,}", str(r.first_index))
                            for r in summary.ranks))
    config = TableData("configuration (every option, resolved)", ("option", "value"),
                       tuple((key, str(value)) for key, value in summary.config.items()))
    notes = [f"epoch {e.epoch} resumed from a checkpoint at step {e.resumed_at_step}"
             for e in summary.epochs if e.resumed_at_step is not None]
    warnings: tuple[str, ...] = ()
    if len(summary.ranks) > 1:
        if len({r.weights_sha256_63 for r in summary.ranks}) == 1:
            notes.append("every rank ended with bit-identical weights")
        else:
            warnings = ("the ranks' final weights differ: the all-reduce or the broadcast did not hold them equal",)
    plots: tuple[Plot, ...] = ()
    if summary.epochs:
        from bench import figures
        plots = tuple(Plot(f"training-{metric}", f"{metric} per epoch, training and validation",
                           functools.partial(figures.training_curve, summary, metric))
                      for metric in ("loss", "accuracy"))
    return Section("Training", "training", facts, warnings, (epochs, ranks, config), plots, tuple(notes))


def export_section(record: ExportRecord) -> Section:
    result = record.export
    facts = (("model", result.path),
             ("input", f"{result.input_name}: {result.input_dtype} {result.layout} {tuple(result.input_shape)}"),
             ("preprocessing", result.preprocessing),
             ("opset", str(result.opset)),
             ("conversion", f"{result.method} path, {result.seconds:.1f} s"),
             ("verified on", record.verification_inputs),
             ("export took", f"{record.seconds:.1f} s in all"))
    files = TableData("files, each verified before it was written (max |diff|: largest difference of any output)",
                      ("file", "variant", "size", "opset", "loads in", "max |diff| vs Keras", "top-1 = Keras",
                       "top-1 = float32"),
                      tuple((f.name, f.variant, _megabytes(f.size_bytes), str(result.opset), _short(f.providers) or "-",
                             f"{f.vs_keras.max_abs_diff:.1e}", _percent(f.vs_keras.top1_agreement),
                             _percent(None if f.vs_float32 is None else f.vs_float32.top1_agreement))
                            for f in record.files))
    warnings = (f"the fast conversion failed ({result.fallback_reason}); the stock path was used",) \
        if result.fallback_reason else ()
    return Section("Export to ONNX", "export", facts, warnings, (files,))


def _bench_section(result: BenchResult, index: int, facts: Sequence[tuple[str, str]] = (),
                   plots: tuple[Plot, ...] = (), warnings: Sequence[str] = ()) -> Section:
    model = f": {Path(result.model['path']).name}" if result.model else ""
    return Section(f"bench {result.kind}{model}", f"bench-{index + 1}-{result.kind}",
                   (*facts, *_result_facts(result), ("measured", _when(result.created))),
                   (*((result.fallback,) if result.fallback else ()), *result.warnings, *warnings),
                   tuple(tables(result)), plots, result.notes)


def inference_section(result: BenchResult, index: int) -> Section:
    """Its tables (intervals, verdicts, resources; a profile's top operators and nodes, `bench profile` or
    `compare --profile`), each profile's top operator first; the plots of all inference results together
    come in their own section."""
    return _bench_section(result, index, profile_facts(result))


def profile_facts(result: BenchResult) -> list[tuple[str, str]]:
    """Each profile's top operator and its share, how much of the measured time the kernels cover, the fallback."""
    facts = []
    for profile in result.profiles:
        top = profile.ops[0] if profile.ops else None
        share = "no kernels recorded" if top is None else f"{top.name}, {profile.share(top):.1%} of the kernel time"
        facts.append((f"top operator, {profile.label} batch {profile.batch}",
                      f"{share}; kernels {profile.coverage:.1%} of the measured time; {_fallback(profile)}"))
    return facts


def _tune(result: BenchResult) -> Tune:
    if result.tune is None:
        raise ValueError(f"a `bench {result.kind}` result without a tune's search")
    return result.tune


def tune_facts(result: BenchResult) -> list[tuple[str, str]]:
    """The chosen setting, what it measured against the defaults in the confirmation, and where it was written."""
    tune = _tune(result)
    label = next((label for label, setting in tune.confirmed if setting == tune.chosen), None)
    row = next((r for r in result.rows if r.label == label), None)
    facts = [("chosen setting", tune.chosen.describe())]
    if row is not None:
        from bench.check import row_label
        verdict = next((c.verdict for c in result.comparisons if c.row == row_label(row)), None)
        facts.append(("confirmed", f"{_rate(row.throughput.samples_per_second)} samples/s, p99 {_ms(row.latency.p99)} "
                                   f"ms, {_ratio(row.ratio)} the defaults" + (f" ({verdict})" if verdict else "")))
    facts += [("latency budget", "none" if tune.budget_ms is None else f"p99 <= {tune.budget_ms:g} ms"),
              ("settings file", str(tune.config_path or "-")),
              ("search", f"{_count(len(tune.points), 'setting')} tried in {tune.search_seconds:.0f} s, "
                         f"{_count(len(tune.pareto), 'point')} on the Pareto front")]
    return facts


def tune_section(result: BenchResult, index: int) -> Section:
    """`bench tune`: the chosen setting first, the confirmation's rows and verdicts, the Pareto front (a table
    and a plot)."""
    from bench import figures
    return _bench_section(result, index, tune_facts(result),
                          plots=(Plot(f"tune-pareto-{index + 1}", "throughput vs p99 of every setting tried, "
                                                                  "the Pareto front and the chosen setting",
                                      lambda: figures.pareto(_tune(result))),))


def train_bench_section(result: BenchResult, index: int) -> Section:
    from bench import figures
    return _bench_section(result, index, plots=(Plot(f"train-scaling-{index + 1}", "training throughput and scaling",
                                                     lambda: figures.train_scaling(result)),))


def load_verdicts(result: BenchResult) -> list[tuple[str, str]]:
    """The tests a `bench load` result is summed up by (a search: its peak), each VALID or INVALID, with its metric."""
    judged = {id(r): (valid, value) for r, valid, value, _ in load_judged(result)}
    return [(f"{'peak: ' if r.peak else ''}{r.label()}",
             f"{'VALID' if judged[id(r)][0] else 'INVALID'}, {r.metric} {_metric_value(r.metric, judged[id(r)][1])}")
            for r in headline_rows(result.load)]


def load_section(result: BenchResult, index: int) -> Section:
    """Its verdicts first; the tables give every test, where its time went and why it is INVALID, each with the fix."""
    return _bench_section(result, index, load_verdicts(result))


def check_verdict(result: BenchResult) -> str:
    regressed = sum(bool(c.regression) for c in result.comparisons)
    rows = _count(len(result.comparisons), "row")
    if all(c.regression is None for c in result.comparisons):
        return f"no verdict in {rows} (one run a side: repeat each side for one)"
    return f"REGRESSION in {regressed} of {rows}" if regressed else f"no regression in {rows}"


def check_section(result: BenchResult, index: int) -> Section:
    """`bench check`: the decision, what was held against what, each row's ratio and interval."""
    from bench.check import failure

    config = result.config
    facts = (("check", check_verdict(result)), ("result", str(config["result"])),
             ("baseline", str(config["baseline"])), ("slowdown allowed", f"{config['max_slowdown']:.1%}"))
    regression = failure(result)
    return _bench_section(result, index, facts, warnings=(f"regression: {regression}",) if regression else ())


def gpucheck_verdict(result: BenchResult) -> str:
    counts = {label: sum(c.passed is value for c in result.checks)
              for label, value in (("passed", True), ("failed", False), ("not run", None))}
    return ", ".join(f"{count} {label}" for label, count in counts.items())


def gpucheck_section(result: BenchResult, index: int) -> Section:
    """scripts/gpu-check.sh: its verdicts first, then the CPU-vs-CUDA sweep, where GPU time goes, cold starts."""
    failed = tuple(f"{c.name}: FAIL ({c.detail})" for c in result.checks if c.passed is False)
    return _bench_section(result, index, (("GPU check", gpucheck_verdict(result)),), warnings=failed)


# Result kind -> its section (the result, its position among the report's results).
RESULT_SECTIONS: dict[str, Callable[[BenchResult, int], Section]] = {
    "throughput": inference_section, "latency": inference_section, "sweep": inference_section,
    "compare": inference_section, "overhead": inference_section, "train": train_bench_section,
    "load": load_section, "check": check_section, "profile": inference_section, "tune": tune_section,
    "gpucheck": gpucheck_section,
    "allreduce": lambda result, index: _bench_section(result, index, allreduce_facts(result))}
# Kinds whose rows are engines measured at batch sizes (the overhead check's rows are not).
PLOTTED_KINDS = ("throughput", "latency", "sweep", "compare", "gpucheck")


def plots_section(results: Sequence[BenchResult]) -> Section | None:
    from bench import figures

    plotted = [r for r in results if r.kind in PLOTTED_KINDS and r.rows]
    if not plotted:
        return None
    plots = [Plot("throughput-vs-batch", "throughput vs batch size, one line per engine/variant",
                  lambda: figures.throughput(plotted))]
    plots += [Plot(f"latency-batch-{batch}", f"latency distribution at batch {batch}, one CDF per engine/variant",
                   functools.partial(figures.latency, plotted, batch)) for batch in figures.batches(plotted)]
    return Section("Throughput and latency", "plots", plots=tuple(plots),
                   notes=("a CDF rises where the runs' latencies lie: further left is faster, steeper is steadier; "
                          "the legend gives each engine's p50 and p99",))


def overview_section(results: Sequence[BenchResult], summary: TrainSummary | None,
                     record: ExportRecord | None) -> Section | None:
    """The numbers a reader comes for, from the sections below: accuracy, speeds, file sizes, verdicts."""
    from bench import figures

    facts = []
    if summary is not None:
        facts.append(("test accuracy", f"{_percent(summary.test_accuracy)} on {summary.test_images:,} images"))
        if summary.images_per_second is not None:
            facts.append(("training speed", f"{_rate(summary.images_per_second)} img/s on "
                                            f"{_count(summary.world_size, 'rank')}, {summary.precision}"))
    if record is not None:
        facts.append(("ONNX files", ", ".join(f"{f.name} {_megabytes(f.size_bytes)}" for f in record.files)))
    plotted = [r for r in results if r.kind in PLOTTED_KINDS]
    fastest: dict[int, tuple[float, str]] = {}
    for line in figures.series(plotted):
        for row in line.rows:
            fastest[row.batch] = max(fastest.get(row.batch, (0.0, "")), (row.throughput.samples_per_second, line.name))
    facts.extend((f"fastest at batch {batch}", f"{name}: {_rate(rate)} samples/s")
                 for batch, (rate, name) in sorted(fastest.items()))
    for result in results:
        if result.kind == "load":
            facts.extend((f"load {test}", verdict) for test, verdict in load_verdicts(result))
        elif result.kind == "check":
            facts.append((f"check against {result.config['baseline']}", check_verdict(result)))
        elif result.kind == "tune":
            facts.extend((f"tune: {key}", value) for key, value in tune_facts(result)[:2])
        elif result.kind == "allreduce":
            facts.extend(allreduce_facts(result))
        facts.extend(profile_facts(result))
    return Section("At a glance", "summary", tuple(facts)) if facts else None


def environment_section(sources: Sequence[tuple[str, dict[str, Any]]]) -> Section:
    def row(name: str, env: dict[str, Any]) -> tuple[str, ...]:
        memory = env.get("memory_bytes")
        return (name, str(env.get("hostname", "?")), _machine(env),
                "-" if memory is None else f"{memory / 2 ** 30:.0f} GiB", str(env.get("python", "?")),
                _versions(env) or "-")
    table = TableData("where each part ran", ("part", "host", "machine", "memory", "python", "versions"),
                      tuple(row(name, env) for name, env in sources))
    return Section("Environment", "environment", tables=(table,))


def document(results: Sequence[BenchResult], *, compare: bool = False, summary: TrainSummary | None = None,
             record: ExportRecord | None = None, run: str | None = None,
             sources: Sequence[str] = ()) -> Document:
    """The run report: a section for each part that exists (training, export, each result), plots, environment."""
    sections = [section for section in [overview_section(results, summary, record)] if section is not None]
    environments: list[tuple[str, dict[str, Any]]] = []
    if summary is not None:
        sections.append(training_section(summary))
        environments.append(("training", summary.environment))
    if record is not None:
        sections.append(export_section(record))
        environments.append(("export", record.environment))
    sections.extend(RESULT_SECTIONS[result.kind](result, index) for index, result in enumerate(results))
    environments.extend((f"bench {result.kind}", result.environment) for result in results)
    plots = plots_section(results)
    if plots is not None:
        sections.append(plots)
    if compare:
        sections.append(Section("Comparison of the two results", "comparison",
                                tables=tuple(comparison_tables(results[0], results[1]))))
    if environments:
        sections.append(environment_section(environments))
    title = f"Run report: {run}" if run and (summary or record) else "Benchmark report"
    return Document(title, tuple(sources), now_utc(), tuple(sections))


def _svg(figure) -> str:
    """The figure as SVG text with its glyphs drawn as paths: no font needed, none fetched."""
    import matplotlib

    buffer = io.StringIO()
    # A fixed salt: the same figure gives the same SVG (clip-path ids are hashes).
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "bench-report"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()


def write_plots(doc: Document, directory: str | Path) -> dict[str, Path]:
    """Every plot of the document as a PNG file in an existing directory: {plot name: file}."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"plot directory {directory} does not exist: create it or choose another")
    written = {}
    for plot in doc.plots:
        path = written[plot.name] = directory / f"{plot.name}.png"
        with atomic_path(path, suffix=".png") as tmp:
            plot.make().savefig(tmp, dpi=110, bbox_inches="tight")
    return written


def plot(results: Sequence[BenchResult], directory: str | Path) -> list[Path]:
    """The results' plots (the report's, without a run) into an existing directory; returns the files written."""
    return list(write_plots(document(results), directory).values())


def to_markdown_document(doc: Document, plot_files: dict[str, Path] | None = None,
                         directory: Path = Path(".")) -> str:
    """Markdown; plots link to `plot_files` by paths relative to `directory` (where the Markdown file goes)."""
    sources = _md(", ".join(doc.sources) or "the results given")
    parts = [f"# {_md(doc.title)}", f"_{_when(doc.created)}; from {sources}_"]
    if doc.plots and plot_files is None:
        parts.append("_(plots: write the report with --plot-dir to embed them)_")
    for section in doc.sections:
        parts.append(f"## {_md(section.title)}")
        if section.facts:
            parts.append("\n".join(f"- **{_md(key)}:** {_md(value)}" for key, value in section.facts))
        parts.extend(f"> **warning:** {_md(warning)}" for warning in section.warnings)
        if plot_files is not None:
            parts.extend(f"![{_md(p.title)}]({Path(os.path.relpath(plot_files[p.name], directory)).as_posix()})"
                         for p in section.plots)
        parts.extend(map(to_markdown, section.tables))
        if section.notes:
            parts.append("\n".join(f"- note: {_md(note)}" for note in section.notes))
    return "\n\n".join(parts) + "\n"


# Inline CSS only: the page must open from a file with no network. Tables scroll inside their own
# box, so the page itself never overflows a phone's width; plots scale down with it.
STYLE = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;background:#f6f7f9;
overflow-wrap:anywhere}
header,main{max-width:1100px;margin:0 auto;padding:0 16px}
header{padding-top:20px}
h1{font-size:1.5rem;margin:0 0 4px}
h2{font-size:1.2rem;margin:0 0 12px}
.sources{color:#57606a;font-size:.85rem;margin:0}
nav{display:flex;flex-wrap:wrap;gap:6px 14px;margin:12px 0 4px;font-size:.9rem}
nav a{color:#0b5cad}
section{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:16px;margin:16px 0}
dl.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:8px;margin:0 0 12px}
dl.facts div{background:#f6f8fa;border-radius:6px;padding:6px 10px}
dt{font-size:.75rem;color:#57606a;text-transform:uppercase;letter-spacing:.03em}
dd{margin:0;font-weight:600}
.warning{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px;margin:0 0 12px}
.scroll{overflow-x:auto;margin:0 0 14px}
table{border-collapse:collapse;font-size:.85rem;font-variant-numeric:tabular-nums;min-width:50%}
.caption{font-weight:600;margin:0 0 6px;font-size:.85rem;color:#24292f}
.below{margin:-8px 0 14px;font-size:.8rem;color:#57606a}
.below p{margin:0 0 2px}
th,td{padding:4px 10px;border-bottom:1px solid #eaeef2;white-space:nowrap;text-align:left}
th{background:#f6f8fa}
.num{text-align:right}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,440px),1fr));gap:12px 20px;
margin:0 0 14px}
figure{margin:0}
figure img{display:block;width:100%;height:auto}
figcaption{font-size:.8rem;color:#57606a}
ul.notes{margin:0;padding-left:20px;font-size:.85rem;color:#57606a}
@media (max-width:600px){body{font-size:14px}section{padding:12px}header,main{padding:0 8px}}
"""


def _html_table(data: TableData) -> str:
    """The title above the table's scroll box, so it wraps at the page's width, not the table's."""
    aligned = [' class="num"' if _numeric(c) else "" for c in data.columns]

    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(f"<{tag}{a}>{html.escape(v)}</{tag}>" for a, v in zip(aligned, values))
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in data.rows)
    below = ('<div class="below">' + "".join(f"<p>{html.escape(line)}</p>" for line in data.caption) + "</div>"
             if data.caption else "")
    return (f'<p class="caption">{html.escape(data.title)}</p><div class="scroll"><table>'
            f"<thead><tr>{cells('th', data.columns)}</tr></thead><tbody>{body}</tbody></table></div>{below}")


def _html_plot(plot_: Plot) -> str:
    data = base64.b64encode(_svg(plot_.make()).encode()).decode("ascii")
    title = html.escape(plot_.title)
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{title}">'
            f"<figcaption>{title}</figcaption></figure>")


def _html_section(section: Section) -> str:
    parts = [f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>']
    if section.facts:
        parts.append('<dl class="facts">' + "".join(f"<div><dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd></div>"
                                                   for k, v in section.facts) + "</dl>")
    parts.extend(f'<p class="warning">warning: {html.escape(w)}</p>' for w in section.warnings)
    if section.plots:  # a section's pictures first, its detail after
        parts.append(f'<div class="plots">{"".join(map(_html_plot, section.plots))}</div>')
    parts.extend(map(_html_table, section.tables))
    if section.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in section.notes) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def to_html(doc: Document) -> str:
    """One self-contained page: inline CSS, plots as SVG data URIs; no script, nothing fetched."""
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in doc.sections)
    made = html.escape(f"{_when(doc.created)}; from {', '.join(doc.sources) or 'the results given'}")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(doc.title)}</title><style>{STYLE}</style></head><body>"
            f'<header><h1>{html.escape(doc.title)}</h1><p class="sources">{made}</p>'
            f"<nav>{nav}</nav></header><main>{''.join(map(_html_section, doc.sections))}</main>"
            "</body></html>\n")


def check_export_path(path: str | Path) -> Path:
    """The export's format from its extension, refused (before anything is written) when unknown."""
    path = require_parent_dir(path)
    if path.suffix.lower() not in EXPORT_FORMATS:
        raise UsageError(f"cannot export to {path.name}: use one of {', '.join(EXPORT_FORMATS)}")
    return path


def export(doc: Document, path: str | Path, *, results: Sequence[BenchResult] = (), compare: bool = False,
           width: int = 140, plot_files: dict[str, Path] | None = None) -> None:
    """Write the report to PATH, the format chosen by its extension.

    .md: the document, its plots linked from `plot_files`; .html: the document as one page;
    .svg and .txt: rich's recording of the terminal's tables of `results`, at `width` columns;
    .csv: those tables, one file each (`csv_paths`).
    """
    path = check_export_path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        every = [table for result in results for table in tables(result)]
        write_csv(every + (comparison_tables(results[0], results[1]) if compare else []), path)
    elif suffix == ".md":
        write_text_atomic(path, to_markdown_document(doc, plot_files, path.parent))
    elif suffix == ".html":
        write_text_atomic(path, to_html(doc))
    else:
        console = Console(file=io.StringIO(), width=width, record=True, force_terminal=True)
        print_all(console, results, compare)
        write_text_atomic(path, console.export_svg(title="bench") if suffix == ".svg" else console.export_text())


# ---- live progress while bench measures

class MeasureProgress:
    """One bar over a command's whole measurement: what runs now (batch, engine), elapsed, time left.

    Shown on stderr only when it is a terminal (and not --quiet): a pipe or a log file gets no
    bar characters and no cursor movement. The work is `total` steps, e.g. one per batch size;
    `step(description, index, total, run)` starts step `index` and returns the timing loop's
    callback, which fills that step with whichever of the minimum time and count is further behind
    (with --until-stable, a step may run on past them, as its description says).
    """

    def __init__(self, console: Console, quiet: bool = False):
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                             TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                             console=console, transient=True, disable=quiet or not console.is_terminal)
        self._task = self._bar.add_task("", total=None)

    def __enter__(self) -> "MeasureProgress":
        self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.stop()

    def step(self, description: str, index: int, total: int, run: RunConfig | None = None) -> ProgressCallback:
        if run is not None and run.until_stable is not None:  # past the minimums the step's end is not known
            description += f", then until stable within +-{run.until_stable:g}% (at most {run.max_time:g} s)"
        self._bar.update(self._task, description=description, completed=index, total=total)

        def update(iterations: int, elapsed: float) -> None:
            if run is None:
                return
            done = min(iterations / run.min_iterations, elapsed / run.min_time if run.min_time > 0 else 1.0)
            self._bar.update(self._task, completed=index + min(done, 1.0))
        return update
