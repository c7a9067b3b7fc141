"""Rendering: the rich table pinned to a golden text, exports by extension, comparisons, PNG plots."""
import dataclasses
import io
import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from bench import report, results
from bench.results import BenchResult, Kernel, Profile, Resources, Row, Setting, TrainRow, Tune, TunePoint
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


@pytest.mark.parametrize("name, version", [("sweep", 1), ("train", 1), ("sweep", 2)])
def test_older_files_render_as_their_twins_of_today(name, version):
    """data/NAME-vN.json hold the very results the golden tests build, as bench's version N wrote them
    (version 2: commit fe89db6); they have no resources, profiles or tune, and render as before."""
    text = report.render_text([results.load(DATA / f"{name}-v{version}.json")], width=100)
    assert text == (GOLDEN / f"{name}.txt").read_text()


CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
USED = Resources(peak_rss_bytes=251_000_000, cpu_seconds=0.9, wall_seconds=1.0, usable_cpus=2, first_run_ms=12.5,
                 load_seconds=0.75)


def profile_result() -> BenchResult:
    """A CUDA session where one node fell back to the CPU, with its resources: every number follows from these."""
    row = Row.from_times(label="onnxruntime", engine="onnxruntime", model="m.onnx", batch=8, providers=[CUDA, CPU],
                         times_s=[0.019, 0.021], resources=dataclasses.replace(USED, device_memory_bytes=512 * 2**20))
    kernels = [Kernel("conv1", "Conv", CUDA, 8.0), Kernel("conv2", "Conv", CUDA, 2.0), Kernel("fc", "Gemm", CUDA, 6.0),
               Kernel("shape", "Shape", CPU, 0.5)] * 2
    found = Profile.from_kernels(kernels, label="onnxruntime", engine="onnxruntime", batch=8, runs=2, wall_ms=40.0,
                                 runtime_ms=38.0, session_providers=(CUDA, CPU))
    return BenchResult(kind="profile", config={}, environment=ENVIRONMENT, rows=(row,),
                       model={"path": "m.onnx", "inputs": []}, requested_providers=("cuda",), providers=(CUDA, CPU),
                       profiles=(found,), created="2026-01-01T00:00:00+00:00")


def tune_result() -> BenchResult:
    defaults = Setting("float32", "m.onnx", "cpu", 2, False, "all", "sequential", 8)
    chosen = dataclasses.replace(defaults, variant="int8", model="m.int8.onnx", intra_op_threads=0, spinning=True)
    points = (TunePoint(defaults, 400.0, 30.0, 25.0, 5, "defaults"), TunePoint(chosen, 1200.0, 9.0, 8.0, 5, "search"),
              TunePoint(dataclasses.replace(chosen, batch=1), 300.0, 4.0, 3.0, 5, "search"),
              TunePoint(dataclasses.replace(chosen, graph_optimization="basic"), 900.0, 12.0, 11.0, 5, "search"))
    rows = (Row.from_times(label="defaults", engine="onnxruntime", model="m.onnx", batch=8, providers=[CPU],
                           times_s=[0.02, 0.02], resources=USED),
            Row.from_times(label="candidate 1", engine="onnxruntime", model="m.int8.onnx", batch=8, providers=[CPU],
                           times_s=[0.006, 0.008], resources=USED))
    rows = tuple(dataclasses.replace(r, ratio=r.throughput.samples_per_second / rows[0].throughput.samples_per_second)
                 for r in rows)
    found = Tune(points=points, budget_ms=10.0, defaults=defaults, chosen=chosen, config_path="m.tuned.json",
                 search_seconds=42.0, confirmed=(("defaults", defaults), ("candidate 1", chosen)))
    return BenchResult(kind="tune", config={}, environment=ENVIRONMENT, rows=rows, model={"path": "m.int8.onnx",
                       "inputs": []}, requested_providers=("cpu",), providers=(CPU,), tune=found,
                       notes=("ratio: throughput over the starting point's (defaults) at batch 8",),
                       created="2026-01-01T00:00:00+00:00")


@pytest.mark.parametrize("name, build", [("profile", profile_result), ("tune", tune_result)])
def test_profiles_resources_and_tunes_render_to_golden_text(name, build):
    check_golden(f"{name}.txt", report.render_text([build()], width=120))
    assert results.BenchResult.from_json(json.loads(json.dumps(build().to_json()))) == build()


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


def test_markdown_keeps_each_caption_line_a_paragraph(tmp_path):
    report.export([profile_result()], tmp_path / "p.md")
    text = (tmp_path / "p.md").read_text()
    assert "| Conv | CUDA | 2 | 4 | 10.000 | 60.6% |" in text
    assert "\n\n_per run (2 profiled runs): measured 20.000 ms, kernels 16.500 ms = 82.5% of it_\n\n" in text
    assert "\n\n_nodes by provider: CUDA 3, CPU 1; fell back to CPU: 1 of 4_\n\n" in text


def test_unknown_export_format_is_refused(tmp_path):
    with pytest.raises(UsageError, match="use one of .md, .html, .svg, .txt"):
        report.export([fixed_result()], tmp_path / "r.pdf")


def test_plots_are_png_files(tmp_path):
    written = report.plot([fixed_result(), train_result()], tmp_path)
    assert sorted(p.name for p in written) == ["latency-histogram.png", "throughput-vs-batch.png",
                                               "train-scaling.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_tune_status_line_names_the_point_and_stays_off_pipes():
    point = tune_result().tune.points[1]
    assert report.tune_point_line(2, point.setting, point) == (
        "tune [2] int8, cpu, threads onnxruntime's default, spinning on, graph all, sequential, batch 8: "
        "1,200.0 samples/s, p99 9.000 ms")
    assert report.tune_point_line(3, point.setting, None).endswith("batch 8: did not run on its provider")
    for console, quiet in ((Console(file=io.StringIO(), force_terminal=False), False),
                           (Console(file=io.StringIO(), force_terminal=True), True)):
        with report.status_line(console, quiet) as show:
            show("tune [1] ...")
        assert console.file.getvalue() == ""
