"""Rendering: the rich table pinned to a golden text, exports by extension, comparisons, PNG plots."""
import dataclasses
import io
import json
import os
from pathlib import Path

import pytest

from bench import check, report, results
from bench.results import (
    BenchResult,
    Check,
    DeviceTimes,
    Kernel,
    Peak,
    Profile,
    Resources,
    Row,
    Setting,
    TrainRow,
    Tune,
    TunePoint,
)
from bench.scenarios import SERVER, SINGLE_STREAM, LoadRow, LoadSettings
from tests.bench.test_check import inference, rounds_row, runs
from tests.bench.test_scenarios import server_timeline, single_stream_timeline
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


def test_a_changed_table_fails_the_golden_check_unless_asked_to_rewrite_it(tmp_path, monkeypatch):
    """Whatever the environment the suite runs in: without BENCH_UPDATE_GOLDEN a changed table fails."""
    monkeypatch.setitem(globals(), "GOLDEN", tmp_path)
    (tmp_path / "t.txt").write_text("old table\n")
    monkeypatch.delenv("BENCH_UPDATE_GOLDEN", raising=False)
    with pytest.raises(AssertionError):
        check_golden("t.txt", "new table\n")
    assert (tmp_path / "t.txt").read_text() == "old table\n"
    monkeypatch.setenv("BENCH_UPDATE_GOLDEN", "1")
    check_golden("t.txt", "new table\n")
    assert (tmp_path / "t.txt").read_text() == "new table\n"


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


@pytest.mark.parametrize("name", ["sweep-v1", "train-v1", "sweep-v2", "train-v2", "sweep-v3", "load-v3",
                                  "compare-v3"])
def test_old_files_render_as_their_current_twins(name):
    """data/NAME-vN.json hold the very results the golden tests build, as bench's version N wrote them
    (version 2: written by commit fe89db6's code from `fixed_result()` and `train_result()`; version 3: by
    main's code at ac35826 from `fixed_result()`, `load_result()` and `verdicts_result()`). None has
    resources, profiles or a tune: they render as before."""
    kind = name.split("-")[0]
    text = report.render_text([results.load(DATA / f"{name}.json")], width=160 if kind in ("load", "compare") else 100)
    assert text == (GOLDEN / f"{kind}.txt").read_text()


def load_result() -> BenchResult:
    """A single-stream test and a two-point server search, from hand-made timelines (tests/bench/test_scenarios.py)."""
    loose = dict(min_duration_s=0.0, min_queries=1)
    server = LoadSettings(SERVER, latency_bound_ms=8.0, **loose)
    rows = (LoadRow.from_timeline(LoadSettings(SINGLE_STREAM, **loose), single_stream_timeline()),
            LoadRow.from_timeline(server.at_qps(100.0), server_timeline(), scheduled=4),
            LoadRow.from_timeline(dataclasses.replace(server, qps=50.0, latency_bound_ms=10.0), server_timeline(),
                                  scheduled=4, peak=True))
    return BenchResult(kind="load", config={}, environment=ENVIRONMENT, load=rows, model={"path": "m.onnx",
                       "inputs": []}, providers=("CPUExecutionProvider",), requested_providers=("cpu",),
                       notes=("warm-up: 5 queries one at a time",), warnings=("a warning with a cause and a fix",),
                       created="2026-01-01T00:00:00+00:00")


def test_load_tables_render_to_golden_text():
    check_golden("load.txt", report.render_text([load_result()], width=160))


def verdicts_result() -> BenchResult:
    reference, variant = rounds_row("ref", [100.0, 60.0, 90.0]), rounds_row("int8", [150.0, 90.0, 135.0])
    return BenchResult(kind="compare", config={}, environment=ENVIRONMENT, rows=(reference, variant),
                       comparisons=(check.paired_comparison(reference, variant),),
                       created="2026-01-01T00:00:00+00:00")


def test_compare_verdicts_render_to_golden_text():
    check_golden("compare.txt", report.render_text([verdicts_result()], width=160))


def test_check_result_renders_to_golden_text():
    """One run a side gives no verdict (4 and 5 runs twice as slow); a 30% slowdown, 3 runs of 400 a side, is a
    regression."""
    old = fixed_result()
    slower = BenchResult(**{**old.__dict__, "rows": tuple(
        Row.from_times(label=r.label, engine=r.engine, model=r.model, batch=r.batch, providers=r.providers,
                       times_s=[t * 2 / 1000 for t in r.times_ms]) for r in old.rows)})
    few = check.check([old], [slower], max_slowdown=0.05, allow_different_environment=False,
                      base_sources=["a.json"], new_sources=["b.json"])
    check_golden("check.txt", report.render_text([few, regression_result()], width=160))


@pytest.mark.parametrize("make", [load_result, verdicts_result])
def test_new_kinds_round_trip_through_json(tmp_path, make):
    path = tmp_path / "r.json"
    report.write_text_atomic(path, json.dumps(make().to_json()))
    assert results.load(path) == make()


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
                           times_s=[0.02, 0.021], resources=USED),
            Row.from_times(label="candidate 1", engine="onnxruntime", model="m.int8.onnx", batch=8, providers=[CPU],
                           times_s=[0.006, 0.008], resources=USED))
    # Two interleaved rounds of one run each, as the confirmation measures them.
    rows = tuple(dataclasses.replace(r, rounds=(1, 1), ratio=r.throughput.samples_per_second
                                     / rows[0].throughput.samples_per_second) for r in rows)
    found = Tune(points=points, budget_ms=10.0, defaults=defaults, chosen=chosen, config_path="m.tuned.json",
                 search_seconds=42.0, confirmed=(("defaults", defaults), ("candidate 1", chosen)))
    return BenchResult(kind="tune", config={}, environment=ENVIRONMENT, rows=rows, model={"path": "m.int8.onnx",
                       "inputs": []}, requested_providers=("cpu",), providers=(CPU,), tune=found,
                       comparisons=(check.paired_comparison(*rows),),
                       notes=("ratio: throughput over the starting point's (defaults) at batch 8",),
                       created="2026-01-01T00:00:00+00:00")


def gpucheck_result() -> BenchResult:
    """A CPU row (nothing to split) and a CUDA row whose split follows from these times: H2D 0.6 ms for 602,112
    bytes (1.0 GB/s), compute 3 ms, D2H 0.05 ms."""
    split = DeviceTimes.from_times([0.0005, 0.0007], [0.003, 0.003], [0.00005, 0.00005], input_bytes=602_112,
                                   output_bytes=10_240, method="onnxruntime: test")
    rows = (Row.from_times(label="float32 cpu", engine="onnxruntime", model="m.onnx", batch=256, providers=[CPU],
                           times_s=[0.5, 0.6], resources=USED),
            Row.from_times(label="float32 cuda", engine="onnxruntime", model="m.onnx", batch=256,
                           providers=[CUDA, CPU], times_s=[0.004, 0.004], resources=USED, device_times=split))
    checks = (Check("float32: CUDA = CPU", True, 2e-4, 1e-3, "batch 8"), Check("int8: CUDA = CPU", False, 0.2, 0.05),
              Check("float16 faster than float32 on CUDA at batch 256", None, detail="--cpu-only"))
    return BenchResult(kind="gpucheck", config={}, environment=ENVIRONMENT, rows=rows, requested_providers=("cpu",
                       "cuda"), providers=(CPU, CUDA), checks=checks, created="2026-01-01T00:00:00+00:00")


def test_the_gpu_check_says_each_verdict_and_where_gpu_time_goes():
    result = gpucheck_result()
    assert result.rows[1].device_times.means_ms == pytest.approx((0.6, 3.0, 0.05))
    assert result.rows[1].device_times.h2d_gb_per_s == pytest.approx(602_112 / 0.6 / 1e6)
    assert report.gpucheck_verdict(result) == "1 passed, 1 failed, 1 not run"
    assert report.gpucheck_section(result, 0).warnings == ("int8: CUDA = CPU: FAIL ()",)


@pytest.mark.parametrize("name, build", [("profile", profile_result), ("tune", tune_result),
                                         ("gpucheck", gpucheck_result)])
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
                                            (".svg", "<svg"), (".txt", "samples/s"), (".csv", "batch,samples/s")])
def test_exports_by_extension(tmp_path, suffix, marker):
    path = tmp_path / f"report{suffix}"
    report.export(report.document([fixed_result()]), path, results=[fixed_result()])
    text = path.read_text()
    assert marker in text
    if suffix != ".csv":  # CSV holds the tables alone
        assert "unavailable" in text  # SVG splits the line into spans


def test_markdown_rows_match_the_table():
    markdown = report.to_markdown(report.inference_table(fixed_result()))
    assert "| 32 | 106.7 | 300.0 | 300.0 | 460.0 | 480.0 | 496.0 | 500.0 | 158.1 | 5 |" in markdown


def test_markdown_keeps_each_caption_line_a_paragraph(tmp_path):
    report.export(report.document([profile_result()]), tmp_path / "p.md")
    text = (tmp_path / "p.md").read_text()
    assert "| Conv | CUDA | 2 | 4 | 10.000 | 60.6% |" in text
    assert "\n\n_per run (2 profiled runs): measured 20.000 ms, kernels 16.500 ms = 82.5% of it_\n\n" in text
    assert "\n\n_nodes by provider: CUDA 3, CPU 1; fell back to CPU: 1 of 4_\n\n" in text


def test_csv_writes_each_table_beside_the_first(tmp_path):
    written = report.write_csv(report.tables(load_result()), tmp_path / "load.csv")
    assert [p.name for p in written] == ["load.csv", "load-time.csv", "load-generator.csv", "load-invalid.csv"]
    lines = (tmp_path / "load.csv").read_text().splitlines()
    assert lines[0] == "test,queries,samples/s,samples/s 95% CI,metric,value,value 95% CI,early stopping,result,peak"
    assert lines[1].startswith('single-stream batch 1,100,') and lines[1].endswith(",VALID,")
    two = [fixed_result(), fixed_result()]
    report.export(report.document(two, compare=True), tmp_path / "two.csv", results=two, compare=True)
    assert sorted(p.name for p in tmp_path.glob("two*.csv")) == [
        "two-comparison.csv", "two-intervals-2.csv", "two-intervals.csv", "two-results-2.csv", "two-significance.csv",
        "two.csv"]


def test_report_compare_of_load_results_has_verdicts_only():
    tables = report.comparison_tables(load_result(), load_result())
    assert [t.name for t in tables] == ["significance"]
    assert tables[0].rows[0][:3] == ("server batch 1 @ 50 qps", "baseline", "peak qps")  # a search: its peak
    with pytest.raises(UsageError, match="compare two inference results or two load results"):
        report.comparison_tables(fixed_result(), load_result())


def regression_result() -> BenchResult:
    """`bench check` of a 30% slowdown, 3 runs of 400 a side: a regression (as in golden/check.txt)."""
    return check.check(runs(inference, 1.0, 10), runs(inference, 1.3, 20), max_slowdown=0.05,
                       allow_different_environment=False, base_sources=["c.json", "c2.json", "c3.json"],
                       new_sources=["d.json", "d2.json", "d3.json"])


def test_the_run_report_has_sections_for_load_and_check_results():
    doc = report.document([verdicts_result(), load_result(), regression_result()])
    sections = {s.anchor: s for s in doc.sections}
    assert list(sections) == ["summary", "bench-1-compare", "bench-2-load", "bench-3-check", "plots", "environment"]
    assert [t.name for t in sections["bench-1-compare"].tables] == ["results", "intervals", "verdicts"]
    load = sections["bench-2-load"]
    assert load.facts[0] == ("peak: server batch 1 @ 50 qps", "INVALID, p99 latency ms 9.000")  # a search: its peak
    assert load.warnings == ("a warning with a cause and a fix",)
    assert [t.name for t in load.tables] == ["load", "time", "generator", "invalid"]
    assert load.notes == load_result().notes
    regression = sections["bench-3-check"]
    assert regression.facts[:2] == (("check", "REGRESSION in 1 of 1 row"), ("result", "d.json, d2.json, d3.json"))
    assert regression.warnings == (f"regression: {check.failure(regression_result())}",)
    glance = dict(sections["summary"].facts)
    assert glance["load peak: server batch 1 @ 50 qps"] == "INVALID, p99 latency ms 9.000"
    assert glance["check against c.json, c2.json, c3.json"] == "REGRESSION in 1 of 1 row"
    markdown = report.to_markdown_document(doc)
    assert "- **peak: server batch 1 @ 50 qps:** INVALID, p99 latency ms 9.000" in markdown
    assert "| server batch 1 @ 100 qps | latency bound: p99 9.000 ms is over the 8 ms bound" in markdown
    assert "| ref | 1 | [65.4, 101.2] |" in markdown  # the compare's intervals, "[low, high]" as written
    page = report.to_html(doc)
    assert "why INVALID (and the fix)" in page and "REGRESSION in 1 of 1 row" in page and "[5.000, ?]" in page


def test_the_run_report_has_sections_for_profile_and_tune_results(tmp_path):
    """The top operators, the chosen setting and its confirmation, the Pareto front (table, caption and plot),
    and the resources table in each section; Markdown, HTML and CSV all carry them."""
    doc = report.document([profile_result(), tune_result()])
    sections = {s.anchor: s for s in doc.sections}
    assert list(sections) == ["summary", "bench-1-profile", "bench-2-tune", "environment"]  # nothing to plot by batch
    profile = sections["bench-1-profile"]
    top = ("top operator, onnxruntime batch 8", "Conv, 60.6% of the kernel time; kernels 82.5% of the measured time; "
                                                "fell back to CPU: 1 of 4")
    assert profile.facts[0] == top
    assert [t.name for t in profile.tables] == ["results", "intervals", "resources", "operators", "nodes"]
    tune = sections["bench-2-tune"]
    chosen = ("chosen setting", "int8, cpu, threads onnxruntime's default, spinning on, graph all, sequential, batch 8")
    confirmed = ("confirmed", "1,142.9 samples/s, p99 7.980 ms, 2.93x the defaults (no significant difference)")
    assert tune.facts[:5] == (chosen, confirmed, ("latency budget", "p99 <= 10 ms"),
                              ("settings file", "m.tuned.json"),
                              ("search", "4 settings tried in 42 s, 2 points on the Pareto front"))
    assert [t.name for t in tune.tables] == ["results", "intervals", "verdicts", "resources", "pareto"]
    assert [p.name for p in tune.plots] == ["tune-pareto-2"]
    glance = dict(sections["summary"].facts)
    assert glance[top[0]] == top[1] and glance["tune: chosen setting"] == chosen[1]
    assert glance["tune: confirmed"] == confirmed[1]
    markdown = report.to_markdown_document(doc, report.write_plots(doc, tmp_path), tmp_path)
    assert "![throughput vs p99 of every setting tried" in markdown and "(tune-pareto-2.png)" in markdown
    assert "| chosen | int8 | cpu | ort | on | all | sequential | 8 | 1,200.0 | 9.000 |" in markdown
    assert "\n\n_candidate 1 (chosen): int8, cpu, threads onnxruntime's default," in markdown
    assert "| Conv | CUDA | 2 | 4 | 10.000 | 60.6% |" in markdown and "| 8 | 251.0 | 45% |" in markdown
    page = report.to_html(doc)
    assert '<div class="below"><p>latency budget: p99 &lt;= 10 ms; chosen: int8' in page
    assert "<p>nodes by provider: CUDA 3, CPU 1; fell back to CPU: 1 of 4</p>" in page
    assert "data:image/svg+xml;base64," in page and "Pareto front, throughput vs p99" in page
    both = [profile_result(), tune_result()]
    report.export(doc, tmp_path / "r.csv", results=both)
    assert sorted(p.name for p in tmp_path.glob("r*.csv")) == [
        "r-intervals-2.csv", "r-intervals.csv", "r-nodes.csv", "r-operators.csv", "r-pareto.csv", "r-resources-2.csv",
        "r-resources.csv", "r-results-2.csv", "r-verdicts.csv", "r.csv"]
    assert (tmp_path / "r-pareto.csv").read_text().splitlines()[1] == (
        "chosen,int8,cpu,ort,on,all,sequential,8,\"1,200.0\",9.000")


def test_the_pareto_figure_marks_the_front_the_choice_and_the_budget():
    from bench import figures

    legend = [t.get_text() for t in figures.pareto(tune_result().tune).axes[0].get_legend().get_texts()]
    assert legend == ["setting tried (short measurement)", "Pareto front", "chosen: int8, batch 8",
                      "latency budget 10 ms"]


def test_a_load_tests_resources_get_their_table():
    used = dataclasses.replace(USED, first_run_ms=3.0)
    result = dataclasses.replace(load_result(), load=tuple(dataclasses.replace(r, resources=used)
                                                           for r in load_result().load))
    (table,) = [t for t in report.tables(result) if t.name == "resources"]
    assert table.columns == ("test", "peak RSS MB", "CPU util", "CPU s", "load s", "first run ms")
    assert table.rows[0] == ("single-stream batch 1", "251.0", "45%", "0.90", "0.750", "3.000")
    assert results.BenchResult.from_json(json.loads(json.dumps(result.to_json()))) == result


def test_the_run_reports_comparison_says_whether_each_difference_is_significant():
    doc = report.document([fixed_result(), fixed_result()], compare=True)
    (comparison,) = [s for s in doc.sections if s.anchor == "comparison"]
    assert [t.name for t in comparison.tables] == ["comparison", "significance"]
    doc = report.document([load_result(), load_result()], compare=True)
    assert [t.name for t in doc.sections[-2].tables] == ["significance"]


def test_unknown_export_format_is_refused(tmp_path):
    with pytest.raises(UsageError, match="use one of .md, .html, .svg, .txt, .csv"):
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


def test_a_step_that_may_run_on_until_stable_says_so():
    from rich.console import Console

    from bench.runner import RunConfig

    terminal = Console(file=io.StringIO(), force_terminal=True, width=200)
    with report.MeasureProgress(terminal) as progress:
        progress.step("latency: onnxruntime batch 1 (1/1)", 0, 1,
                      RunConfig(min_time=1.0, min_iterations=10, until_stable=2.0, max_time=30.0))
    assert ("latency: onnxruntime batch 1 (1/1), then until stable within +-2% (at most 30 s)"
            in terminal.file.getvalue())


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


HOSTILE_LABEL = "cpu $\\undefined$ <script>alert(1)</script> \x1b]0;title\x07\x1b[31mred"


def hostile_result() -> BenchResult:
    """Text a results file may hold: mathtext that is not valid TeX, HTML, an OSC and an ANSI escape sequence."""
    result = fixed_result()
    rows = tuple(dataclasses.replace(row, label=label, model="m$\\frac$.onnx")
                 for row, label in zip(result.rows, (HOSTILE_LABEL, "onnxruntime")))
    return dataclasses.replace(result, rows=rows, notes=("<img src=x onerror=alert(1)>",),
                               warnings=("\x1b[2J cleared",))


def test_plots_draw_dollar_signs_from_files_as_written(tmp_path):
    doc = report.document([hostile_result()])
    written = report.write_plots(doc, tmp_path)
    assert written and all(path.stat().st_size > 0 for path in written.values())


def test_markdown_escapes_html_from_files(tmp_path):
    markdown = report.to_markdown_document(report.document([hostile_result()]))
    assert "<script>" not in markdown and "<img" not in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown and "&lt;img src=x onerror=alert(1)&gt;" in markdown


def test_the_terminal_gets_escape_sequences_from_files_written_out():
    text = report.render_text([hostile_result()], width=400)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;title\\x07\\x1b[31mred" in text and "warning: \\x1b[2J cleared" in text
