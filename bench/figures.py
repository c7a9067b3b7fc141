"""Figures: pure functions from result dataclasses to matplotlib figures; bench/report.py renders them.

Nothing here writes a file or picks a format: `bench.report` turns each figure into a PNG
(--plot-dir, the Markdown report) or an SVG (inlined in the HTML page), the one place that does.
Figures are `matplotlib.figure.Figure`s made without pyplot: no global state, no display, no
backend to choose, and nothing to close. They are small (FIGSIZE) and one panel each, so that
on a phone, one to a row at the screen's width, their text stays legible; a desktop page puts
two side by side.

    from bench import figures, results
    sweep, compare = results.load("bench-sweep.json"), results.load("bench-compare.json")
    figures.throughput([sweep, compare])           # samples/s vs batch, one line per engine/variant
    [figures.latency([sweep, compare], b) for b in figures.batches([sweep, compare])]   # CDFs
    figures.train_scaling(train_result); figures.training_curve(run.read_summary(), "accuracy")
    figures.pareto(results.load("bench-tune.json").tune)   # every setting tried: samples/s vs p99

Series are named by engine and variant ("onnxruntime int8", "tensorflow float32"; a sweep's
rows, labelled by engine alone, get the model's file name: "onnxruntime alexnet.onnx"), with
the result's kind added only where two results would give the same name, and keep one colour
in every figure. Text from results files (labels, model file names) is shown as written: matplotlib
would read a `$...$` in it as mathtext (and fail on what is not valid TeX), so `plain` escapes it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from bench.results import BenchResult, Row, Tune
from toolkit.cli import visible
from toolkit.runs import TrainSummary

# A CDF drawn from more points than this is drawn from this many quantiles instead (min and max
# included): the same curve at any plotted size, and an SVG that stays small.
CDF_POINTS = 400
FIGSIZE = (5.4, 3.6)   # inches; the legend below adds to the height
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
          "tab:olive", "tab:cyan")


@dataclasses.dataclass(frozen=True)
class Series:
    """The rows of one engine/variant in one result, sorted by batch, as every figure names and colours them."""

    name: str
    color: str
    rows: tuple[Row, ...]


def _base_name(row: Row) -> str:
    return f"{row.label} {Path(row.model).name}" if row.label == row.engine else row.label


def series(results: Sequence[BenchResult]) -> list[Series]:
    groups: dict[tuple[int, str], list[Row]] = {}
    for index, result in enumerate(results):
        for row in result.rows:
            groups.setdefault((index, row.label), []).append(row)
    base = {key: _base_name(rows[0]) for key, rows in groups.items()}
    names = dict(base)
    for describe in (lambda r: r.kind, lambda r: f"{r.kind}, {r.created}"):
        taken = list(names.values())
        names.update({key: f"{base[key]} ({describe(results[key[0]])})" for key, name in names.items()
                      if taken.count(name) > 1})
    return [Series(names[key], COLORS[i % len(COLORS)], tuple(sorted(rows, key=lambda r: r.batch)))
            for i, (key, rows) in enumerate(groups.items())]


def batches(results: Sequence[BenchResult]) -> list[int]:
    return sorted({row.batch for result in results for row in result.rows})


def _figure():
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    return figure, figure.subplots()


def plain(text: str) -> str:
    """`text` as matplotlib draws it literally: every `$` escaped, so nothing in it is parsed as mathtext, and
    control characters (no font has them) written out."""
    return visible(text).replace("$", r"\$")


def _legend_below(axis, columns: int = 2) -> None:
    """Under the plot: a legend inside would cover the data, and one beside it would squeeze it on a phone."""
    handles, labels = axis.get_legend_handles_labels()
    axis.legend(handles, [plain(label) for label in labels], loc="upper center", bbox_to_anchor=(0.5, -0.2),
                ncol=columns, fontsize=9, frameon=False)


def _finish(figure: Figure, axis, *, xlabel: str, title: str, ylabel: str | None = None, from_zero: bool = False,
            columns: int = 2) -> Figure:
    """Every figure's last steps: axis labels (the y axis from 0 if `from_zero`), title, a light grid, the legend
    below in `columns`."""
    axis.set_xlabel(plain(xlabel))
    if ylabel is not None:
        axis.set_ylabel(plain(ylabel))
    if from_zero:
        axis.set_ylim(bottom=0)
    axis.set_title(plain(title))
    axis.grid(True, alpha=0.3)
    _legend_below(axis, columns)
    return figure


def _log_x_if_wide(axis, low: float, high: float) -> None:
    """A logarithmic x axis where the values are more than 20x apart, so the smallest do not collapse against it."""
    if low > 0 and high / low > 20:
        axis.set_xscale("log")


def throughput(results: Sequence[BenchResult]) -> Figure:
    """Samples/s against batch size, one line per engine/variant."""
    figure, axis = _figure()
    drawn = series(results)
    for s in drawn:
        axis.plot([r.batch for r in s.rows], [r.throughput.samples_per_second for r in s.rows], marker="o",
                  color=s.color, label=s.name)
    axis.set_xscale("log", base=2)
    axis.set_xticks(batches(results), [str(b) for b in batches(results)])
    return _finish(figure, axis, xlabel="batch size", ylabel="samples / s", from_zero=True,
                   title="throughput vs batch size")


def _cdf_points(times_ms: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    ordered = np.sort(np.asarray(times_ms, dtype=float))
    fractions = np.arange(1, len(ordered) + 1) / len(ordered)
    if len(ordered) > CDF_POINTS:
        fractions = np.linspace(1 / len(ordered), 1.0, CDF_POINTS)
        ordered = np.quantile(ordered, fractions, method="inverted_cdf")
    return ordered, fractions


def latency(results: Sequence[BenchResult], batch: int) -> Figure:
    """The distribution of per-run latency at one batch size: a CDF per engine/variant, p50 and p99 in the legend.

    A CDF shows every engine's whole distribution on one pair of axes (left is faster, steep is
    steady, a long right tail is jitter); the x axis turns logarithmic when the engines are
    more than 20x apart, so the fastest one does not collapse against the axis.
    """
    figure, axis = _figure()
    drawn = [(s, row) for s in series(results) for row in s.rows if row.batch == batch]
    for s, row in drawn:
        x, y = _cdf_points(row.times_ms)
        axis.step(x, y, where="post", color=s.color,
                  label=f"{s.name}: p50 {row.latency.p50:.3g} ms, p99 {row.latency.p99:.3g} ms")
    _log_x_if_wide(axis, min(row.latency.min for _, row in drawn), max(row.latency.max for _, row in drawn))
    for level in (0.5, 0.99):
        axis.axhline(level, color="black", linewidth=0.6, linestyle=":")
    axis.set_ylim(0, 1.02)
    return _finish(figure, axis, xlabel="ms per run of one batch", ylabel="fraction of runs at most this fast",
                   title=f"latency at batch {batch} (dotted: p50, p99)", columns=1)


def train_scaling(result: BenchResult) -> Figure:
    """`bench train`: total img/s per world size with its 95% confidence interval, against linear scaling."""
    figure, axis = _figure()
    rows = result.train
    nps = [t.np for t in rows]
    # Never below 0 (matplotlib refuses that): a hand-edited file's interval may not hold its mean.
    errors = [0.0 if t.total.mean_ci95 is None else max(0.0, t.total.mean_ci95[1] - t.total.mean) for t in rows]
    axis.errorbar(nps, [t.total.mean for t in rows], yerr=errors, marker="o", capsize=4,
                  label="measured (95% confidence interval of the mean)")
    axis.plot(nps, [rows[0].per_rank.mean * n for n in nps], linestyle="--", label="linear scaling")
    for t in rows:
        if t.efficiency is not None:
            axis.annotate(f"{t.efficiency:.0%}", (t.np, t.total.mean), textcoords="offset points", xytext=(6, -12),
                          fontsize=8)
    axis.set_xticks(nps, [str(n) for n in nps])
    return _finish(figure, axis, xlabel="ranks (-np); labels: scaling efficiency", ylabel="images / s (total)",
                   from_zero=True, title="training throughput", columns=1)


def training_curve(summary: TrainSummary, metric: str) -> Figure:
    """`metric` ("loss" or "accuracy") per epoch, training and validation; the test accuracy as a line."""
    figure, axis = _figure()
    epochs = [e.epoch for e in summary.epochs]
    axis.plot(epochs, [getattr(e, metric) for e in summary.epochs], marker="o", label="training")
    axis.plot(epochs, [getattr(e, f"val_{metric}") for e in summary.epochs], marker="o", label="validation")
    if metric == "accuracy":
        axis.axhline(summary.test_accuracy, color="black", linestyle="--", linewidth=1,
                     label=f"test {summary.test_accuracy:.2%}")
        axis.set_ylim(0, 1)
    axis.set_xticks(epochs, [str(e) for e in epochs])
    return _finish(figure, axis, xlabel="epoch", title=f"{metric} per epoch", columns=3)


def pareto(tune: Tune) -> Figure:
    """`bench tune`: every setting its search measured, p99 against samples/s; the Pareto front joined (no other
    point is both faster and lower in p99), the chosen setting ringed, the latency budget dashed."""
    figure, axis = _figure()
    points = tune.points
    axis.scatter([p.p99_ms for p in points], [p.samples_per_second for p in points], s=14, color="tab:gray",
                 alpha=0.6, label="setting tried (short measurement)")
    front = sorted((points[i] for i in tune.pareto), key=lambda p: p.p99_ms)
    axis.plot([p.p99_ms for p in front], [p.samples_per_second for p in front], marker="o", color="tab:blue",
              label="Pareto front")
    chosen = [p for p in points if p.setting == tune.chosen]
    if chosen:
        axis.scatter([chosen[0].p99_ms], [chosen[0].samples_per_second], s=140, facecolors="none",
                     edgecolors="tab:red", linewidths=2, label=f"chosen: {tune.chosen.variant}, batch "
                                                               f"{tune.chosen.batch}")
    if tune.budget_ms is not None:
        axis.axvline(tune.budget_ms, color="black", linestyle="--", linewidth=1,
                     label=f"latency budget {tune.budget_ms:g} ms")
    _log_x_if_wide(axis, min(p.p99_ms for p in points), max(p.p99_ms for p in points))
    return _finish(figure, axis, xlabel="p99 ms per run of one batch", ylabel="samples / s", from_zero=True,
                   title="tune: throughput vs p99 latency")
