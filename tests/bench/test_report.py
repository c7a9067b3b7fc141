"""Rendering: the rich table pinned to a golden text, exports by extension, comparisons, PNG plots."""
import dataclasses
import os
from pathlib import Path

import pytest

from bench import report, results
from bench.results import BenchResult, Peak, Row, TrainRow
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


PEAK = Peak(rates={"float32": 100.0, "int8": 400.0}, source="runs/bench-peak.json", created="2026-01-01T00:00:00+00:00",
            cpu="Test CPU @ 1.00GHz", intra_op_threads=2)


def test_operations_and_share_of_peak_render_to_golden_text():
    """2 GOP per sample at 400 and 106.7 samples/s: 800 and 213.3 GOP/s; of a 400 GOP/s int8 peak."""
    result = fixed_result()
    rows = tuple(dataclasses.replace(r, ops_per_sample=2e9, precision="int8", peak_gops=PEAK.rates["int8"])
                 for r in result.rows)
    result = dataclasses.replace(result, rows=rows, peak=PEAK, notes=("% of peak: of runs/bench-peak.json",))
    check_golden("sweep-operations.txt", report.render_text([result], width=140))


def test_peak_table_renders_to_golden_text():
    def row(label, precision, seconds):
        measured = Row.from_times(label=label, engine="onnxruntime", model="k.onnx", batch=1000,
                                  providers=["CPUExecutionProvider"], times_s=[seconds] * 3)
        return dataclasses.replace(measured, ops_per_sample=2e6, precision=precision, peak_gops=PEAK.rates[precision])
    rows = (row("float32 MatMul 1000x1000x1000", "float32", 0.02),
            row("int8 MatMulInteger u8s8 1000x1000x1000", "int8", 0.005))
    result = BenchResult(kind="peak", config={}, environment=ENVIRONMENT, rows=rows, peak=PEAK,
                         created="2026-01-01T00:00:00+00:00")
    check_golden("peak.txt", report.render_text([result], width=100))


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
    report.export([fixed_result()], path)
    text = path.read_text()
    assert marker in text and "unavailable" in text  # SVG splits the line into spans


def test_markdown_rows_match_the_table():
    markdown = report.to_markdown(report.inference_table(fixed_result()))
    assert "| 32 | 106.7 | 300.0 | 300.0 | 460.0 | 480.0 | 496.0 | 500.0 | 158.1 | 5 |" in markdown


def test_unknown_export_format_is_refused(tmp_path):
    with pytest.raises(UsageError, match="use one of .md, .html, .svg, .txt"):
        report.export([fixed_result()], tmp_path / "r.pdf")


def test_plots_are_png_files(tmp_path):
    written = report.plot([fixed_result(), train_result()], tmp_path)
    assert sorted(p.name for p in written) == ["latency-histogram.png", "throughput-vs-batch.png",
                                               "train-scaling.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
