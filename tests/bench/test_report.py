"""Rendering: the rich table pinned to a golden text, exports by extension, comparisons, PNG plots."""
import io
import os
from pathlib import Path

import pytest

from bench import report, results
from bench.results import BenchResult, Row, TrainRow
from toolkit.cli import UsageError

GOLDEN = Path(__file__).parent / "golden"
DATA = Path(__file__).parent / "data"
ENVIRONMENT = {"cpu": {"model": "Test CPU @ 1.00GHz", "usable_cores": 2}, "gpus": [],
               "packages": {"onnxruntime-gpu": "1.31.1", "onnx": "1.23.2"}}


def fixed_result() -> BenchResult:
    """Known per-iteration times: every number in the table follows from them."""
    rows = (Row.from_times(label="onnxruntime", engine="onnxruntime", model="m.onnx", batch=1,
                           providers=["CPUExecutionProvider"], times_s=[0.001, 0.002, 0.003, 0.004]),
            Row.from_times(label="onnxruntime", engine="onnxruntime", model="m.onnx", batch=32,
                           providers=["CPUExecutionProvider"], times_s=[0.1, 0.2, 0.3, 0.4, 0.5]))
    return BenchResult(kind="sweep", config={}, environment=ENVIRONMENT, rows=rows,
                       model={"path": "m.onnx", "inputs": []}, requested_providers=("cuda",),
                       providers=("CPUExecutionProvider",), fallback="CUDA unavailable, ran on CPU",
                       created="2026-01-01T00:00:00+00:00")


def check_golden(name: str, text: str) -> None:
    """Compare with tests/bench/golden/NAME; BENCH_UPDATE_GOLDEN=1 rewrites it (review the diff)."""
    path = GOLDEN / name
    if os.environ.get("BENCH_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_table_renders_to_golden_text():
    check_golden("sweep.txt", report.render_text([fixed_result()], width=100))


def train_result() -> BenchResult:
    one = TrainRow.from_intervals(1, [100.0, 110.0, 90.0])
    two = TrainRow.from_intervals(2, [160.0, 150.0, 170.0], base=one)
    return BenchResult(kind="train", config={}, environment=ENVIRONMENT, train=(one, two),
                       notes=("efficiency: per-rank img/s relative to -np 1",), created="2026-01-01T00:00:00+00:00")


def test_train_table_renders_to_golden_text():
    check_golden("train.txt", report.render_text([train_result()], width=100))


@pytest.mark.parametrize("name", ["sweep", "train"])
def test_version_1_files_render_as_their_version_2_twins(name):
    """data/NAME-v1.json hold the very results the golden tests build, as bench's version 1 wrote them."""
    text = report.render_text([results.load(DATA / f"{name}-v1.json")], width=100)
    assert text == (GOLDEN / f"{name}.txt").read_text()


def test_comparison_has_delta_and_ratio_per_row():
    old = fixed_result()
    faster = BenchResult(**{**old.__dict__, "rows": tuple(
        Row.from_times(label=r.label, engine=r.engine, model=r.model, batch=r.batch, providers=r.providers,
                       times_s=[t / 2000 for t in r.times_ms]) for r in old.rows)})
    table = report.comparison_table(old, faster)
    assert table.rows[0][:5] == ("onnxruntime @ 1", "400.0", "800.0", "+400.0", "2.00x")
    assert table.rows[1][5:] == ("300.0", "150.0", "-150.000 ms", "0.50x")


def test_comparing_runs_without_common_rows_is_refused():
    other = BenchResult(**{**fixed_result().__dict__, "rows": ()})
    with pytest.raises(UsageError, match="share no rows"):
        report.comparison_table(fixed_result(), other)


@pytest.mark.parametrize("suffix, marker", [(".md", "| batch | samples/s |"), (".html", "<html"),
                                            (".svg", "<svg"), (".txt", "samples/s")])
def test_exports_by_extension(tmp_path, suffix, marker):
    path = tmp_path / f"report{suffix}"
    report.export(report.document([fixed_result()]), path, results=[fixed_result()])
    text = path.read_text()
    assert marker in text and "unavailable" in text  # SVG splits the line into spans


def test_markdown_rows_match_the_table():
    markdown = report.to_markdown(report.inference_table(fixed_result()))
    assert "| 32 | 106.7 | 300.0 | 300.0 | 460.0 | 480.0 | 496.0 | 500.0 | 158.1 | 5 |" in markdown


def test_unknown_export_format_is_refused(tmp_path):
    with pytest.raises(UsageError, match="use one of .md, .html, .svg, .txt"):
        report.export(report.document([fixed_result()]), tmp_path / "r.pdf")


def test_plots_are_png_files(tmp_path):
    written = report.plot([fixed_result(), train_result()], tmp_path)
    assert sorted(p.name for p in written) == ["latency-batch-1.png", "latency-batch-32.png",
                                               "throughput-vs-batch.png", "train-scaling-2.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_measure_progress_shows_the_step_the_share_done_and_the_time_left():
    from rich.console import Console

    from bench.runner import RunConfig

    terminal = Console(file=io.StringIO(), force_terminal=True, width=150)
    with report.MeasureProgress(terminal) as progress:
        update = progress.step("sweep: onnxruntime batch 8 (2/4)", 1, 4, RunConfig(min_time=1.0, min_iterations=10))
        update(10, 1.0)                 # the step done: 2 of 4 (stopping draws the bar a last time)
    shown = terminal.file.getvalue()
    assert "sweep: onnxruntime batch 8 (2/4)" in shown and "50%" in shown and "left" in shown
    piped = Console(file=io.StringIO(), force_terminal=False, width=150)
    with report.MeasureProgress(piped) as progress:
        progress.step("sweep: onnxruntime batch 8 (2/4)", 1, 4)
    assert piped.file.getvalue() == ""


def _compare_result() -> BenchResult:
    def row(label, engine, model, batch, seconds):
        return Row.from_times(label=label, engine=engine, model=model, batch=batch,
                              providers=["CPUExecutionProvider"], times_s=seconds)
    rows = (row("onnxruntime float32", "onnxruntime", "m.onnx", 1, [0.002, 0.003]),
            row("onnxruntime int8", "onnxruntime", "m.int8.onnx", 1, [0.001, 0.001]),
            row("tensorflow float32", "tensorflow", "model.keras", 1, [0.004, 0.005]),
            row("onnxruntime float32", "onnxruntime", "m.onnx", 32, [0.1, 0.1]))
    return BenchResult(kind="compare", config={}, environment=ENVIRONMENT, rows=rows,
                       created="2026-01-02T00:00:00+00:00")


def test_series_are_named_by_engine_and_variant_not_by_file_number():
    from bench import figures

    names = [s.name for s in figures.series([fixed_result(), _compare_result()])]
    assert names == ["onnxruntime m.onnx", "onnxruntime float32", "onnxruntime int8", "tensorflow float32"]
    # The same engine in two results of another kind, or of the same kind, is told apart by both.
    again = BenchResult(**{**_compare_result().__dict__, "created": "2026-01-03T00:00:00+00:00"})
    names = [s.name for s in figures.series([fixed_result(), _compare_result(), again])]
    assert names[:2] == ["onnxruntime m.onnx", "onnxruntime float32 (compare, 2026-01-02T00:00:00+00:00)"]
    assert len(set(names)) == len(names)
    assert [s.color for s in figures.series([_compare_result()])] == list(figures.COLORS[:3])


def test_one_latency_figure_per_batch_with_one_cdf_per_engine():
    from bench import figures

    both = [fixed_result(), _compare_result()]
    assert figures.batches(both) == [1, 32]
    legend = [t.get_text() for t in figures.latency(both, 1).axes[0].get_legend().get_texts()]
    assert legend == ["onnxruntime m.onnx: p50 2.5 ms, p99 3.97 ms", "onnxruntime float32: p50 2.5 ms, p99 2.99 ms",
                      "onnxruntime int8: p50 1 ms, p99 1 ms", "tensorflow float32: p50 4.5 ms, p99 4.99 ms"]
    x, y = figures._cdf_points(list(range(1000)))
    assert len(x) == figures.CDF_POINTS and (x[0], x[-1], y[-1]) == (0, 999, 1.0)
