"""`python -m export.benchmark`: both paths in one run, the ratio, the record."""
from __future__ import annotations

import json

import pytest

from tests.conftest import run_module


@pytest.mark.slow
def test_benchmark_records_both_paths_and_their_ratio(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_module("export.benchmark", "--image-size", 67, "--samples", 4, "--output", out, COLUMNS="160")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["stock"]["method"] == "stock" and record["fast"]["method"] == "fast"
    assert record["ratio"] == pytest.approx(record["fast"]["seconds"] / record["stock"]["seconds"])
    assert record["target_met"] == (record["ratio"] <= 1 / 3)
    assert record["fast_vs_stock"]["max_abs_diff"] <= 1e-6
    assert record["fast_vs_stock"]["top1_agreement"] == 1.0
    assert record["fast"]["vs_keras"]["samples"] == 4
    assert record["model"]["input_shape"] == [None, 28, 28, 1]
    assert record["environment"]["cpu"]["model"]
    assert f"ratio fast/stock {record['ratio']:.3f}" in proc.stdout


@pytest.mark.parametrize("args, pattern", [
    (["--output", "{tmp}/no/b.json"], "output directory"),
    (["--samples", "x"], "argument --samples: invalid int value: 'x'"),
    (["--image-size", "10", "--output", "{tmp}/b.json"], "--image-size 10 is too small for AlexNet"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, pattern):
    proc = run_module("export.benchmark", *[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export.benchmark: error: ") and pattern in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []
