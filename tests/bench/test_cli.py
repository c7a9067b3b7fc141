"""Every subcommand as a user runs it (`python -m bench ...` in a subprocess); its JSON validated."""
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from bench import results, session

CUDA = session.cuda_usable()


def validated(path) -> dict:
    """The JSON as written, after the loader accepted it."""
    doc = json.loads(path.read_text())
    results.load(path)
    assert doc["version"] == results.SCHEMA_VERSION and doc["environment"]["cpu"]["model"]
    return doc


def test_throughput_on_multi_input_model(bench, helper_models, tmp_path):
    out = tmp_path / "t.json"
    done = bench("throughput", "--model", helper_models["multi"], "--batch", 8, "--dim", "seq=5",
                 "--shape", "scale=1", "--json", out, quick=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""  # --quiet
    doc = validated(out)
    assert doc["kind"] == "throughput" and doc["throughput"] > 0 and doc["providers"] == ["CPUExecutionProvider"]
    assert doc["rows"][0]["batch"] == 8 and len(doc["rows"][0]["times_ms"]) >= 5
    assert [i["dtype"] for i in doc["model"]["inputs"]] == ["tensor(float)", "tensor(int64)", "tensor(float16)"]


def test_latency_on_fixed_model_takes_its_batch(bench, helper_models, tmp_path):
    out = tmp_path / "l.json"
    done = bench("latency", "--model", helper_models["fixed"], "--json", out, quick=True)
    assert done.returncode == 0, done.stderr
    doc = validated(out)
    assert doc["rows"][0]["batch"] == 2
    assert set(doc["latency_ms"]) >= {"p50", "p90", "p99", "mean", "max", "stdev", "p95"}
    assert doc["latency_ms"]["p50"] <= doc["latency_ms"]["p99"] <= doc["latency_ms"]["max"]


def test_sweep_table_and_plots(bench, helper_models, tmp_path):
    out = tmp_path / "s.json"
    done = bench("sweep", "--model", helper_models["image"], "--batch", "1,4", "--json", out, "--plot-dir",
                 tmp_path, "--images", "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                 "--warmup", 1, "--min-time", 0.1, "--min-iterations", 3)
    assert done.returncode == 0, done.stderr
    assert "samples/s" in done.stdout and "p99" in done.stdout
    doc = validated(out)
    assert [r["batch"] for r in doc["rows"]] == [1, 4]
    assert {p.name for p in tmp_path.glob("*.png")} == {"throughput-vs-batch.png", "latency-batch-1.png",
                                                       "latency-batch-4.png"}


@pytest.mark.skipif(CUDA, reason="CUDA really works here: no fallback to observe")
def test_cuda_request_reports_cpu_fallback(bench, helper_models, tmp_path):
    out = tmp_path / "c.json"
    done = bench("latency", "--model", helper_models["fixed"], "--provider", "cuda", "--json", out, quick=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("bench: warning: CUDA unavailable, ran on CPU")
    assert len(done.stderr.splitlines()) == 1  # onnxruntime's own error log stays hidden
    doc = validated(out)
    assert doc["providers"] == ["CPUExecutionProvider"] and doc["requested_providers"] == ["cuda"]
    assert doc["fallback"].startswith("CUDA unavailable, ran on CPU")
    strict = bench("latency", "--model", helper_models["fixed"], "--provider", "cuda", "--strict", quick=True)
    assert strict.returncode == 1 and len(strict.stderr.splitlines()) == 1
    assert "--strict" in strict.stderr


def test_overhead_reports_the_ratio(bench, helper_models, tmp_path):
    out = tmp_path / "o.json"
    done = bench("overhead", "--model", helper_models["multi"], "--dim", "seq=4", "--shape", "scale=1",
                 "--rounds", 2, "--json", out, quick=True)
    assert done.returncode == 0, done.stderr
    doc = validated(out)
    assert [r["label"] for r in doc["rows"]] == ["bench harness", "bare session.run loop"]
    assert doc["rows"][0]["ratio"] > 0 and doc["rows"][1]["ratio"] == 1.0
    assert doc["notes"][0].startswith("harness cost per iteration (no-op step):")
    assert doc["notes"][1].startswith("ratio: bare loop's median run / harness's median run")
    assert doc["notes"][3].startswith("median run: harness ")
    harness, bare = (r["times_ms"] for r in doc["rows"])
    assert len(harness) == len(bare) and len(set(bare)) > 1  # the bare loop's own per-run times


def test_compare_variants_without_tensorflow(bench, helper_models, tmp_path):
    out = tmp_path / "cmp.json"
    done = bench("compare", "--model", helper_models["fixed"], "--batch", 2, "--no-tensorflow",
                 "--variant", f"copy={helper_models['fixed']}", "--json", out, quick=True)
    assert done.returncode == 0, done.stderr
    doc = validated(out)
    assert [r["label"] for r in doc["rows"]] == ["onnxruntime float32", "copy"]
    assert doc["rows"][0]["ratio"] == 1.0 and doc["rows"][1]["ratio"] > 0
    # Each row knows its rounds; the variant gets a verdict against the reference from them.
    assert [len(r["rounds"]) for r in doc["rows"]] == [3, 3]
    (verdict,) = doc["comparisons"]
    assert (verdict["row"], verdict["baseline"], verdict["test"]) == ("copy @ 2", "onnxruntime float32 @ 2",
                                                                    "paired t, 3 rounds")
    # The verdict is what the rounds say, recomputed here from the rows' own times with scipy's t (the paired t
    # on the rounds' log ratios); the rounds were measured in mirrored order (A B B A), as the config records.
    def round_rates(row):
        edges = np.cumsum([0, *row["rounds"]])
        return np.array([row["batch"] * (b - a) * 1000 / sum(row["times_ms"][a:b]) for a, b in zip(edges, edges[1:])])
    logs = np.log(round_rates(doc["rows"][1]) / round_rates(doc["rows"][0]))
    half = scipy.stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
    low, high = np.exp(logs.mean() - half), np.exp(logs.mean() + half)
    assert verdict["interval"] == pytest.approx([low, high]) and verdict["ratio"] == pytest.approx(np.exp(logs.mean()))
    assert verdict["verdict"] == ("faster" if low > 1 else "slower" if high < 1 else "no significant difference")
    assert doc["config"]["turn_order"].startswith("mirrored")
    # The benchmark's session defaults are recorded, and said in the notes.
    threads = len(session.os.sched_getaffinity(0))
    assert doc["config"]["session"]["intra_op_threads"] == threads
    assert doc["config"]["session"]["entries"] == [["session.intra_op.allow_spinning", "0"]]
    assert any(f"{threads} intra-op threads" in n and "allow_spinning=0" in n for n in doc["notes"])


def test_load_scenarios_on_helper_models(bench, helper_models, tmp_path):
    out = tmp_path / "ss.json"
    done = bench("load", "--model", helper_models["multi"], "--dim", "seq=3", "--shape", "scale=1", "--scenario",
                 "single-stream", "--min-duration", "0.2", "--warmup", "2", "--json", out, "--csv", tmp_path / "ss.csv",
                 "--intra-op-threads", "1")
    assert done.returncode == 0, done.stderr
    assert "single-stream batch 1" in done.stdout and "VALID" in done.stdout and "where the time went" in done.stdout
    doc = validated(out)
    (row,) = doc["load"]
    assert doc["kind"] == "load" and row["valid"] and row["metric"] == "p90 latency ms" and row["queries"] >= 100
    assert doc["config"]["load"]["scenario"] == "single-stream" and doc["environment"]["load_average"] is not None
    # What the process used during the test; its first run: the first warm-up query.
    assert row["resources"]["first_run_ms"] > 0 and row["resources"]["peak_rss_bytes"] > 0
    assert row["resources"]["cpu_seconds"] > 0 and "resources and cold start" in done.stdout
    assert (tmp_path / "ss.csv").is_file() and (tmp_path / "ss-time.csv").is_file()
    assert (tmp_path / "ss-resources.csv").read_text().startswith("test,peak RSS MB,CPU util,")
    server = tmp_path / "server.json"
    done = bench("load", "--model", helper_models["image"], "--scenario", "server", "--qps", "100",
                 "--latency-bound-ms", "500", "--concurrency", "2", "--min-duration", "0.2", "--json", server,
                 "--quiet")
    assert done.returncode == 0 and done.stdout == "", done.stderr
    (row,) = validated(server)["load"]
    assert row["settings"]["concurrency"] == 2 and row["scheduled"] == row["queries"] >= 100
    report = bench("report", server)
    assert report.returncode == 0 and "server batch 1 x2 @ 100 qps" in report.stdout


def test_session_config_overrides_the_default_entries(bench, helper_models, tmp_path):
    out = tmp_path / "t.json"
    done = bench("throughput", "--model", helper_models["fixed"], "--intra-op-threads", 0, "--session-config",
                 "session.intra_op.allow_spinning=1", "--json", out, quick=True)
    assert done.returncode == 0, done.stderr
    session_record = validated(out)["config"]["session"]
    assert session_record["intra_op_threads"] == 0
    assert session_record["entries"] == [["session.intra_op.allow_spinning", "1"]]


def test_report_renders_compares_and_exports(bench, helper_models, tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for path in (first, second):
        assert bench("latency", "--model", helper_models["fixed"], "--json", path, quick=True).returncode == 0
    done = bench("report", first, second, "--compare", "--export", tmp_path / "r.md", "--export",
                 tmp_path / "r.html", "--export", tmp_path / "r.csv", "--plot-dir", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "new/old" in done.stdout and "onnxruntime @ 2" in done.stdout
    assert "| onnxruntime @ 2 |" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert (tmp_path / "r-significance.csv").read_text().startswith("row,baseline,metric,base,new,ratio,95% CI")


def test_profile_prints_top_operators_and_report_renders_them_again(bench, helper_models, tmp_path):
    out = tmp_path / "p.json"
    done = bench("profile", "--model", helper_models["heavy"], "--batch", 16, "--top", 1, "--min-iterations", 5,
                 "--json", out)
    assert done.returncode == 0, done.stderr
    doc = validated(out)
    assert doc["kind"] == "profile" and len(doc["profiles"]) == 1 and doc["rows"][0]["resources"]["first_run_ms"] > 0
    found = doc["profiles"][0]
    assert found["runs"] == 5 and found["ops"][0]["name"] == "MatMul" and len(found["nodes"]) > 1  # all kept
    assert "top 1 of" in done.stdout and "| MatMul" not in done.stdout and "MatMul" in done.stdout
    assert "fell back to CPU: none (a CPU session)" in done.stdout and "peak RSS MB" in done.stdout
    again = bench("report", out)
    assert again.returncode == 0, again.stderr
    assert "top 15 of" not in again.stdout and "op types" in again.stdout and "share" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["throughput", "--model", "{tmp}/missing.onnx"], "does not exist"),
    (["throughput", "--model", "{tmp}/corrupt.onnx"], "not an ONNX model"),
    (["throughput", "--model", "{tmp}/notes.txt"], "not an ONNX model|holds no graph"),
    (["throughput", "--model", "{multi}", "--batch", "0"], "batch sizes must be >= 1"),
    (["throughput", "--model", "{multi}", "--dim", "seq=3", "--shape", "images=2x9x8x3", "--batch", "2"],
     "axis 1 is fixed at 8 in the model, not 9"),
    (["latency", "--model", "{fixed}", "--batch", "4"], "fixed batch dimension of 2: pass --batch 2"),
    (["sweep", "--model", "{unnamed}", "--batch", "1,4", "--shape", "x=1x16"], "batch 1 but --batch is 4"),
    (["throughput", "--model", "{multi}", "--batch", "2"], "'seq' is dynamic"),
    (["latency", "--model", "{fixed}", "--provider", "tpu"], "unknown provider tpu"),
    (["report", "{tmp}/newer.json"], "newer than this bench reads"),
    (["report", "{tmp}/notes.txt"], "not valid JSON"),
    (["latency", "--model", "{fixed}", "--json", "{tmp}/no/such/dir/r.json"], "output directory"),
    (["throughput", "--model", "{fixed}", "--bogus"], "unrecognized arguments: --bogus"),
    (["throughput"], "no model at runs/alexnet/alexnet.onnx"),
    (["throughput", "--model", "{multi}", "--config", "{tmp}/fixed.tuned.json"], "was tuned for .*fixed.onnx"),
    (["latency", "--config", "{tmp}/notes.txt"], "settings file .*notes.txt is not valid JSON"),
    (["latency", "--config", "{tmp}/newer.json"], "is not a bench settings file"),
    (["latency", "--config", "{tmp}/missing.json"], "settings file .*missing.json does not exist"),
    (["tune", "--model", "{fixed}", "--config", "{tmp}/fixed.tuned.json"], "unrecognized arguments: --config"),
    (["tune", "--model", "{fixed}", "--latency-budget-ms", "-1"],
     "--latency-budget-ms: -1 must be a finite number > 0"),
    (["tune", "--model", "{fixed}", "--min-gain", "1.5"], "--min-gain 1.5 must be in"),
    (["tune", "--model", "{fixed}", "-o", "{tmp}/no/such/dir/t.json"], "output directory"),
    (["profile", "--model", "{fixed}", "--top", "0"], "--top 0 must be >= 1"),
    (["compare", "--model", "{fixed}", "--no-tensorflow", "--profile-runs", "0"], "--profile-runs 0 must be >= 1"),
    (["load", "--model", "{image}", "--scenario", "server", "--qps", "0"], "--qps: 0 must be a finite number > 0"),
    (["load", "--model", "{image}", "--scenario", "server", "--qps", "10", "--latency-bound-ms", "0.000001"],
     "--latency-bound-ms 1e-06 is below this model's minimum latency here"),
    (["load", "--model", "{image}", "--scenario", "offline", "--qps", "10"], "--qps applies to --scenario server"),
    (["load", "--model", "{image}", "--scenario", "single-stream", "--concurrency", "2"],
     "single-stream issues one query at a time"),
    (["load", "--model", "{image}", "--scenario", "multi-stream", "--find-peak"], "--find-peak searches the server"),
    (["load", "--model", "{image}", "--scenario", "server"], "--scenario server needs --qps"),
    (["load", "--model", "{image}", "--csv", "{tmp}/out.txt"], "give a file name ending in .csv"),
    (["load", "--model", "{image}", "--warmup", "-1"], "--warmup -1 must be >= 0"),
    (["load", "--config", "{tmp}/notes.txt"], "settings file .*notes.txt is not valid JSON"),
    (["load", "--model", "{multi}", "--config", "{tmp}/fixed.tuned.json"], "was tuned for .*fixed.onnx"),
    (["check", "{tmp}/newer.json", "--baseline", "{tmp}/newer.json"], "newer than this bench reads"),
    (["check", "{tmp}/a.json", "--baseline", "{tmp}/b.json", "--max-slowdown", "lots"], "is not a percentage"),
    (["throughput", "--model", "{fixed}", "--until-stable", "-1"], "--until-stable: -1 must be a finite number > 0"),
])
def test_bad_input_is_one_line_exit_2(bench, helper_models, tmp_path, args, message):
    from bench import tuned
    from toolkit.files import sha256_file

    fixed = tmp_path / "fixed.onnx"   # a copy: a settings file names models beside or below it
    shutil.copy(helper_models["fixed"], fixed)
    digest = sha256_file(fixed)
    tuned.write(tmp_path / "fixed.tuned.json", tuned.TunedConfig(
        model=fixed, model_sha256=digest, run=fixed, run_sha256=digest,
        variant="float32", batch=2, provider="cpu", intra_op_threads=1, inter_op_threads=0, graph_optimization="all",
        execution_mode="sequential", session_entries=(), latency_budget_ms=None, measured={}, machine={}))
    (tmp_path / "corrupt.onnx").write_bytes(helper_models["multi"].read_bytes()[:50])
    (tmp_path / "notes.txt").write_text("not a model, not json\n")
    newer = {"schema": results.SCHEMA, "version": results.SCHEMA_VERSION + 1}
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    args = [a.format(tmp=tmp_path, **helper_models) for a in args]
    done = bench(*args, quick=args[0] not in ("report", "load", "check"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), done.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "no").exists()


def test_peak_then_rows_with_their_share_of_it(bench, small_alexnet, tmp_path):
    done = bench("peak", "--shapes", "64x64x64", "--rounds", 1, cwd=tmp_path, quick=True)  # to runs/bench-peak.json
    assert done.returncode == 0, done.stderr
    doc = validated(tmp_path / "runs" / "bench-peak.json")
    assert doc["kind"] == "peak" and set(doc["peak"]["rates"]) == {"float32", "int8"}
    assert all(r["ops_per_sample"] == 2 * 64 * 64 and r["peak_fraction"] <= 1 for r in doc["rows"])
    out = tmp_path / "t.json"
    done = bench("throughput", "--model", small_alexnet, "--batch", 2, "--json", out, cwd=tmp_path, quick=True)
    assert done.returncode == 0, done.stderr
    row = validated(out)["rows"][0]
    assert row["precision"] == "float32" and row["ops_per_sample"] > 1e8
    assert row["peak_gop_per_s"] == doc["peak"]["rates"]["float32"]
    assert row["peak_fraction"] == pytest.approx(row["gop_per_s"] / row["peak_gop_per_s"])
    shown = bench("report", out)
    assert "% peak" in shown.stdout and "GOP/s" in shown.stdout and "% of peak: of runs/bench-peak.json" in shown.stdout


def test_a_missing_peak_file_is_one_line_and_exit_2(bench, helper_models, tmp_path):
    done = bench("throughput", "--model", helper_models["fixed"], "--peak", tmp_path / "absent.json", quick=True)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "--peak" in done.stderr and "bench peak --json" in done.stderr


def _in_a_terminal(argv: list[str], timeout: float = 120) -> str:
    """What `argv` writes to stderr when stderr is a terminal (a pseudo-terminal here), escapes and all."""
    import os
    import pty

    from tests.conftest import cli_env

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
                            env=cli_env(TERM="xterm-256color", COLUMNS="150"))
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        proc.wait(timeout=timeout)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")


FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


IMAGES = ["--images", FASHION]


@pytest.mark.parametrize("model, args, shows", [
    ("image", ["sweep", "--batch", "1,4", "--warmup", "1", "--min-time", "0.6", "--min-iterations", "3", *IMAGES],
     ["sweep: onnxruntime batch 1 (1/2)", "sweep: onnxruntime batch 4 (2/2)"]),
    ("image", ["load", "--scenario", "single-stream", "--min-duration", "0.6", "--warmup", "1", *IMAGES],
     ["load: onnxruntime single-stream batch 1: 100 queries and 0.6 s at least"]),
    # The profiler's trace grows with every run: the warm-up (profiled too) is what lasts long enough to be seen.
    ("heavy", ["profile", "--batch", "64", "--warmup", "150", "--min-iterations", "20"],
     ["profile: onnxruntime batch 64, 20 profiled runs"]),
    ("image", ["tune", "--batch", "1", "--passes", "1", "--candidates", "1", "--rounds", "1", "--confirm-time", "0.5",
               "-o", "{tmp}/image.tuned.json", *IMAGES],
     ["tune: starting point 1/1: float32, cpu", "tune: search 1/", "tune: confirming: batch 1, defaults, round 1/1"]),
], ids=["sweep", "load", "profile", "tune"])
def test_progress_shows_on_a_terminal_only(bench, helper_models, tmp_path, model, args, shows):
    # A copy beside tune's -o: a settings file names its model beside it or below.
    args = [*(a.format(tmp=tmp_path) for a in args), "--model", shutil.copy(helper_models[model], tmp_path)]
    piped = bench(*args)
    assert piped.returncode == 0, piped.stderr
    # No bar, no cursor movement in a pipe or a log file: at most a warning (a busy machine's instability).
    assert all(line.startswith("bench: warning: ") for line in piped.stderr.splitlines()), piped.stderr
    assert "\x1b" not in piped.stdout + piped.stderr and "━" not in piped.stderr
    assert "samples/s" in piped.stdout
    shown = _in_a_terminal([sys.executable, "-m", "bench", *args])
    assert "━" in shown and "\x1b[" in shown
    for text in (*shows, "left"):
        assert text in shown
