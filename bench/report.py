"""The one place that renders results: rich tables, Markdown/HTML/SVG/text exports, PNG plots, progress.

A result becomes neutral `TableData` (title, columns, string cells) once; rich and Markdown
both render that, so the two cannot disagree. HTML, SVG and text come from rich's console
recording of the very tables the terminal shows.

    from bench import report, results
    r = results.load("sweep.json")
    report.print_result(rich.console.Console(), r)
    report.export([r], "sweep.md"); report.plot_throughput([r], "tput.png")
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path
from typing import Iterator, Sequence

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from bench.results import BenchResult, Row, Spread
from toolkit.cli import UsageError
from toolkit.files import atomic_path, require_parent_dir, write_text_atomic

EXPORT_FORMATS = (".md", ".html", ".svg", ".txt")
NUMERIC = {"batch", "samples/s", "mean", "p50", "p90", "p95", "p99", "max", "stdev", "iters", "ratio", "np",
           "efficiency", "intervals", "1.96 sd", "delta", "new/old", "p50 delta", "p50 new/old",
           "GOP/sample", "GOP/s", "% peak", "runs", "ms/run p50"}


@dataclasses.dataclass(frozen=True)
class TableData:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


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


def tables(result: BenchResult) -> list[TableData]:
    if result.kind == "train":
        return [train_table(result)]
    return [peak_table(result)] if result.kind == "peak" else [inference_table(result)]


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
        columns = ("row", "old img/s", "new img/s", "delta", "new/old")
        rows = tuple((key, _rate(a), _rate(b), *_delta(a, b)) for key, a, b in pairs)
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
    return TableData(f"comparison: {old.created} -> {new.created}", columns, rows)


def _numeric(column: str) -> bool:
    return column in NUMERIC or "/s" in column or " ms" in column


def to_rich(data: TableData) -> Table:
    table = Table(title=data.title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in data.columns:
        table.add_column(column, justify="right" if _numeric(column) else "left")
    for row in data.rows:
        table.add_row(*row)
    return table


def to_markdown(data: TableData) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    align = ["---:" if _numeric(c) else "---" for c in data.columns]
    return "\n".join([f"**{data.title}**", "", line(data.columns), line(align), *map(line, data.rows)])


def header_lines(result: BenchResult) -> list[str]:
    env = result.environment
    cpu = env.get("cpu", {})
    gpus = ", ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in env.get("gpus", [])) or "none"
    packages = env.get("packages", {})
    versions = ", ".join(f"{k} {v}" for k, v in packages.items()
                         if k in ("onnxruntime-gpu", "onnxruntime", "tensorflow", "onnx", "horovod"))
    lines = []
    if result.model:
        lines.append(f"model: {result.model['path']}")
    if result.providers:
        lines.append(f"ran on: {_short(result.providers)} (requested: {', '.join(result.requested_providers)})")
    lines.append(f"machine: {cpu.get('model', '?')}, {cpu.get('usable_cores', '?')} cores; GPU: {gpus}")
    if versions:
        lines.append(f"versions: {versions}")
    return lines


def renderables(result: BenchResult) -> list:
    items: list = [Text(line, style="dim") for line in header_lines(result)]
    if result.fallback:
        items.append(Text(f"warning: {result.fallback}", style="bold yellow"))
    items.extend(to_rich(t) for t in tables(result))
    items.extend(Text(f"note: {n}") for n in result.notes)
    return items


def print_result(console: Console, result: BenchResult) -> None:
    for item in renderables(result):
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
        console.print(to_rich(comparison_table(results[0], results[1])))


def export(results: Sequence[BenchResult], path: str | Path, *, compare: bool = False, width: int = 140) -> None:
    """Write the report to PATH, the format chosen by its extension: .md, .html, .svg or .txt."""
    path = require_parent_dir(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise UsageError(f"cannot export to {path.name}: use one of {', '.join(EXPORT_FORMATS)}")
    if suffix == ".md":
        parts = []
        for result in results:
            parts.append("\n\n".join(["\n".join(f"- {line}" for line in header_lines(result)),
                                      *([f"> **warning:** {result.fallback}"] if result.fallback else []),
                                      *map(to_markdown, tables(result)),
                                      *(f"- note: {n}" for n in result.notes)]))
        if compare:
            parts.append(to_markdown(comparison_table(results[0], results[1])))
        write_text_atomic(path, "\n\n".join(parts) + "\n")
        return
    console = Console(file=io.StringIO(), width=width, record=True, force_terminal=True)
    print_all(console, results, compare)
    exported = {".html": console.export_html, ".svg": lambda: console.export_svg(title="bench"),
                ".txt": console.export_text}[suffix]()
    write_text_atomic(path, exported)


def _save_figure(figure, path: str | Path) -> None:
    path = require_parent_dir(path)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on a compute node
    import matplotlib.pyplot as plt
    return plt


def plot_throughput(results: Sequence[BenchResult], path: str | Path) -> None:
    """Samples/s against batch size, one line per label (and per file when several are given)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, result in enumerate(results):
        for label in dict.fromkeys(r.label for r in result.rows):
            rows = sorted((r for r in result.rows if r.label == label), key=lambda r: r.batch)
            name = label if len(results) == 1 else f"{label} [{index + 1}]"
            axis.plot([r.batch for r in rows], [r.throughput.samples_per_second for r in rows], marker="o",
                      label=name)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("samples / s")
    axis.set_title("throughput vs batch size")
    axis.grid(True, alpha=0.3)
    axis.legend()
    _save_figure(figure, path)
    plt.close(figure)


def plot_latency_histogram(results: Sequence[BenchResult], path: str | Path) -> None:
    """Distribution of per-iteration latency for every row, p50 and p99 marked."""
    plt = _pyplot()
    rows = [r for result in results for r in result.rows]
    if not rows:
        raise UsageError("no inference rows to plot a latency histogram of (a `bench train` result?)")
    figure, axes = plt.subplots(len(rows), 1, figsize=(7, 2.2 * len(rows)), squeeze=False)
    for axis, row in zip(axes[:, 0], rows):
        axis.hist(row.times_ms, bins=min(50, max(5, len(row.times_ms) // 4)), color="tab:blue", alpha=0.8)
        for value, style in ((row.latency.p50, "-"), (row.latency.p99, "--")):
            axis.axvline(value, color="black", linestyle=style, linewidth=1)
        axis.set_title(f"{row.label}, batch {row.batch} (p50 solid, p99 dashed)", fontsize=9)
        axis.set_xlabel("ms per iteration")
    figure.tight_layout()
    _save_figure(figure, path)
    plt.close(figure)


def plot_train(result: BenchResult, path: str | Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    nps = [t.np for t in result.train]
    errors = [0.0 if t.total.mean_ci95 is None else t.total.mean_ci95[1] - t.total.mean for t in result.train]
    axis.errorbar(nps, [t.total.mean for t in result.train], yerr=errors, marker="o", capsize=4,
                  label="measured (95% confidence interval of the mean)")
    base = result.train[0]
    axis.plot(nps, [base.per_rank.mean * n for n in nps], linestyle="--", label="linear scaling")
    axis.set_xlabel("ranks (-np)")
    axis.set_ylabel("images / s (total)")
    axis.set_title("training throughput")
    axis.legend()
    _save_figure(figure, path)
    plt.close(figure)


def plot(results: Sequence[BenchResult], directory: str | Path) -> list[Path]:
    """Every plot that fits the results, into an existing directory; returns the files written."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"plot directory {directory} does not exist: create it or choose another")
    written = []
    train = [r for r in results if r.kind == "train"]
    inference = [r for r in results if r.kind != "train"]
    for index, result in enumerate(train):
        written.append(directory / f"train-scaling{'' if len(train) == 1 else f'-{index + 1}'}.png")
        plot_train(result, written[-1])
    if inference:
        written.append(directory / "throughput-vs-batch.png")
        plot_throughput(inference, written[-1])
        written.append(directory / "latency-histogram.png")
        plot_latency_histogram(inference, written[-1])
    return written


@contextlib.contextmanager
def progress_bar(console: Console, description: str, quiet: bool, min_time: float,
                 min_iterations: int) -> Iterator:
    """A callback for `runner.measure`: the bar fills with whichever of time/count is further behind."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[iters]} iters"),
                  TimeElapsedColumn(), console=console, transient=True,
                  disable=quiet or not console.is_terminal) as bar:
        task = bar.add_task(description, total=1.0, iters=0)

        def update(iterations: int, elapsed: float) -> None:
            done = min(iterations / min_iterations, elapsed / min_time if min_time > 0 else 1.0)
            bar.update(task, completed=min(done, 1.0), iters=iterations)
        yield update

