"""The A/A benchmark script (bench/aa.py) on a tiny run: a throughput pair and a server pair of 2 runs a side,
each run its own `bench` process, on a model the project did not make (onnx's light SqueezeNet). The A/A
counts themselves are measured by running the script on a quiet machine, not asserted here."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import aa


def light(name: str) -> Path:
    return aa.default_model().with_name(f"light_{name}.onnx")


def run_aa(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.aa", *map(str, args)], capture_output=True, text=True)


@pytest.mark.slow
def test_a_tiny_aa_run_checks_every_pair_and_counts_its_regressions(tmp_path):
    done = run_aa("--out", tmp_path, "--model", light("squeezenet"), "--pairs", 1, "--server-pairs", 1, "--runs", 2,
                  "--min-time", 0.2)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "aa.json").read_text())
    for name, kind in (("throughput", "throughput"), ("server", "load")):
        part = summary[name]
        (pair,) = part["each"]
        assert part["pairs"] == 1 and part["false_regressions"] == int(pair["regression"])
        assert pair["verdict"] in ("faster", "slower", "no significant difference")  # 2 runs a side: a verdict
        checked = json.loads((tmp_path / f"{name}-1-check.json").read_text())
        assert checked["config"]["results"] == [str(tmp_path / f"{name}-1-B{i}.json") for i in (1, 2)]
        assert checked["comparisons"][0]["test"] == "Welch t over runs (2 vs 2)"
        one = json.loads((tmp_path / f"{name}-1-check-one-run.json").read_text())["comparisons"][0]
        assert one["verdict"] == "no verdict (one run a side)" and one["regression"] is None
        first = json.loads((tmp_path / f"{name}-1-A1.json").read_text())
        assert first["kind"] == kind and Path(first["model"]["path"]).name == "light_squeezenet.onnx"
    regressions = summary["throughput"]["false_regressions"]
    assert summary["server_qps"] > 0 and f"throughput: {regressions} false REGRESSIONs" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--runs", "1"], "--runs 1: a verdict needs at least 2 runs a side"),
    (["--qps", "5"], "--qps and --latency-bound-ms go together"),
    (["--model", "missing.onnx"], "--model missing.onnx does not exist"),
    (["--max-slowdown", "lots"], "is not a percentage"),
])
def test_bad_input_is_one_line_and_nothing_runs(tmp_path, args, message):
    done = run_aa("--out", tmp_path, *args)
    assert done.returncode == 2 and done.stdout == "" and list(tmp_path.iterdir()) == []
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr
