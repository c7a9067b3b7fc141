"""`bench load --engine loadgen`: MLPerf's own LoadGen and bench's generator judge the same model alike,
LoadGen's official logs are kept beside the JSON, and `bench report` shows LoadGen's verdict.

The model is the helper "heavy" one (four 512x512 MatMuls: a fraction of a millisecond per query on
one thread, so thousands of queries per second): 500 qps is far below what it serves, 100,000 far
above. The tests assert verdicts, never speeds.
"""
import json

import pytest

from bench import load, loadgen
from bench.engines import OnnxEngine
from bench.inputs import InputConfig
from bench.scenarios import SERVER, SINGLE_STREAM, LoadSettings
from bench.session import SessionConfig
from toolkit.cli import UsageError

# Far below: 600 queries (LoadGen's early stopping needs 459 for p99 with none over the bound) under a
# bound no stall of a shared machine reaches. Far above: 20x what the model serves, a bound of 1 ms:
# the overload limit (10 x qps x bound) is reached within milliseconds.
BELOW = LoadSettings(SERVER, qps=500.0, latency_bound_ms=1000.0, min_duration_s=1.0, min_queries=600)
ABOVE = LoadSettings(SERVER, qps=100_000.0, latency_bound_ms=1.0, min_duration_s=1.0)


def verdict(engine_name, model, settings, logs):
    engine = OnnxEngine.open(model, SessionConfig(intra_op_threads=1))
    options = dict(warmup=2, find_peak=False, progress=lambda *step: None)
    if engine_name == "bench":
        (row,) = load.run_load(engine, settings, InputConfig(), **options).rows
        return row.valid, row.reasons
    outcome = loadgen.run_loadgen(engine, settings, InputConfig(), logs=logs, **options)
    (log,) = outcome.loadgen
    assert len(outcome.rows) == 1 and (logs.parent / log.summary).is_file() and (logs.parent / log.detail).is_file()
    return log.valid, log.reasons


@pytest.mark.parametrize("engine_name", loadgen.ENGINES)
def test_both_engines_say_valid_far_below_capacity_and_invalid_far_above(helper_models, tmp_path, engine_name):
    valid, reasons = verdict(engine_name, helper_models["heavy"], BELOW, tmp_path / "below.mlperf")
    assert valid, reasons
    valid, reasons = verdict(engine_name, helper_models["heavy"], ABOVE, tmp_path / "above.mlperf")
    assert not valid
    overloaded = "Too many outstanding queries" if engine_name == "loadgen" else "overloaded: stopped issuing"
    assert any(overloaded in r for r in reasons), reasons


@pytest.mark.slow
def test_the_cli_keeps_loadgens_logs_beside_the_json_and_the_report_shows_its_verdict(bench, helper_models,
                                                                                     tmp_path):
    out = tmp_path / "ss.json"
    done = bench("load", "--engine", "loadgen", "--model", helper_models["heavy"], "--scenario", SINGLE_STREAM,
                 "--min-duration", "0.2", "--intra-op-threads", "1", "--json", out, "--quiet")
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    (log,) = doc["loadgen"]
    summary = (tmp_path / log["summary"]).read_text()
    assert log["summary"] == "ss.mlperf/01-single-stream/mlperf_log_summary.txt"
    assert (tmp_path / log["detail"]).is_file() and doc["version"] == 6
    # The verdict and the metric are LoadGen's own, as its summary states them.
    assert f"Result is : {'VALID' if log['valid'] else 'INVALID'}" in summary
    assert f"90.0th percentile latency (ns) : {round(log['metric_value'] * 1e6)}" in summary
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary directory left
    shown = bench("report", out)
    assert shown.returncode == 0, shown.stderr
    assert "engine: MLPerf LoadGen" in shown.stdout and ("VALID" if log["valid"] else "INVALID") in shown.stdout
    ours = bench("load", "--model", helper_models["heavy"], "--min-duration", "0.2", "--json", tmp_path / "b.json",
                 "--quiet")
    assert ours.returncode == 0 and "engine: bench's own generator" in bench("report", tmp_path / "b.json").stdout


@pytest.mark.parametrize("args, message", [
    ((), "--engine loadgen keeps LoadGen's official logs beside the result: pass --json PATH"),
    (("--json", "x.json", "--scenario", SERVER, "--qps", "10", "--batch", "2"),
     "--batch 2: LoadGen's server scenario issues one sample per query: use --batch 1"),
    (("--json", "x.json", "--until-stable", "2"), "--until-stable is bench's own"),
])
def test_what_loadgen_cannot_run_is_refused_in_one_line(bench, helper_models, tmp_path, args, message):
    done = bench("load", "--engine", "loadgen", "--model", helper_models["heavy"], *args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_the_detail_log_is_read_from_its_mllog_lines():
    text = "\n".join([
        "garbage that is not a log line",
        ':::MLLOG {"key": "result_validity", "value": "INVALID", "time_ms": 1, "metadata": {"is_error": false}}',
        ':::MLLOG {"key": "error_runtime", "value": "IssueQueryThread 0 Ending early: Too many outstanding '
        'queries. issued 9 outstanding 8", "time_ms": 2, "metadata": {"is_error": true}}',
        ':::MLLOG {"key": "result_perf_constraints_met", "value": false, "time_ms": 3, "metadata": {}}'])
    values, errors = loadgen.read_detail(text)
    assert values["result_validity"] == "INVALID" and values["result_perf_constraints_met"] is False
    assert errors == ["IssueQueryThread 0 Ending early: Too many outstanding queries. issued 9 outstanding 8"]


def test_a_failed_test_leaves_no_logs_and_keeps_the_older_ones(tmp_path):
    final = tmp_path / "r.mlperf"
    final.mkdir()
    (final / "old").write_text("kept")
    with pytest.raises(UsageError):
        with loadgen.staged(final) as tmp:
            (tmp / "half").write_text("")
            raise UsageError("stopped")
    assert [p.name for p in tmp_path.iterdir()] == ["r.mlperf"] and (final / "old").read_text() == "kept"
    (tmp_path / ".r.mlperf.old").mkdir()           # left by a run killed between its two renames
    (tmp_path / ".r.mlperf.old" / "stale").write_text("")
    with loadgen.staged(final) as tmp:
        (tmp / "new").write_text("")
    assert [p.name for p in final.iterdir()] == ["new"] and [p.name for p in tmp_path.iterdir()] == ["r.mlperf"]
