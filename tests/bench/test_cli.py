"""Every subcommand as a user runs it (`python -m bench ...` in a subprocess); its JSON validated."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bench
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
    assert (tmp_path / "throughput-vs-batch.png").is_file() and (tmp_path / "latency-histogram.png").is_file()


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
    assert doc["notes"][2].startswith("median run: harness ")
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
    # The benchmark's session defaults are recorded, and said in the notes.
    threads = len(session.os.sched_getaffinity(0))
    assert doc["config"]["session"]["intra_op_threads"] == threads
    assert doc["config"]["session"]["entries"] == [["session.intra_op.allow_spinning", "0"]]
    assert any(f"{threads} intra-op threads" in n and "allow_spinning=0" in n for n in doc["notes"])


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
                 tmp_path / "r.html", "--plot-dir", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "new/old" in done.stdout and "onnxruntime @ 2" in done.stdout
    assert "| onnxruntime @ 2 |" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


LIGHT_IMPORTS = """
import sys
from bench.cli import main, COMMANDS

HEAVY = ("tensorflow", "keras", "onnxruntime", "onnx")
for argv in [["--help"], *([name, "--help"] for name in [*COMMANDS, "report"]), ["report", *sys.argv[1:]]]:
    try:
        main(argv)
    except SystemExit:
        pass  # --help exits
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
    if loaded:
        print(" ".join(argv[:1]), "imported", ", ".join(loaded))
        break
else:
    print("light")
"""


def test_help_and_report_import_neither_tensorflow_nor_onnxruntime():
    data = Path(__file__).parent / "data"
    done = subprocess.run([sys.executable, "-c", LIGHT_IMPORTS, str(data / "sweep-v1.json"),
                           str(data / "train-v1.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "light"
    assert "1.96 sd" in done.stdout and "samples/s" in done.stdout  # the report did render


def test_bench_never_imports_alexnet():
    """bench runs where only onnxruntime is installed; Keras files are loaded by toolkit.kerasfile."""
    for path in Path(bench.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "alexnet" for n in names), f"{path.name}:{node.lineno}"


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
])
def test_bad_input_is_one_line_exit_2(bench, helper_models, tmp_path, args, message):
    (tmp_path / "corrupt.onnx").write_bytes(helper_models["multi"].read_bytes()[:50])
    (tmp_path / "notes.txt").write_text("not a model, not json\n")
    newer = {"schema": results.SCHEMA, "version": results.SCHEMA_VERSION + 1}
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    args = [a.format(tmp=tmp_path, **helper_models) for a in args]
    done = bench(*args, quick=args[0] != "report", cwd=tmp_path)
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
