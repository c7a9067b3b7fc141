"""`python -m export.int8study`: each int8 choice's agreement and speed, recorded in one run."""
from __future__ import annotations

import json

import pytest

from tests.conftest import run_module


def test_study_records_agreement_and_speed_per_choice(trained_export, fashion_mnist_dir, tmp_path):
    out = tmp_path / "study.json"
    proc = run_module("export.int8study", trained_export.path, "--dataset", "fashion_mnist", "--data-dir",
                      fashion_mnist_dir, "--samples", 32, "--calibration-samples", 16, "--batch", "1,4",
                      "--rounds", 1, "--min-time", 0.05, "--only", "default,per-tensor weights", "--output", out,
                      COLUMNS="200")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    rows = {r["name"]: r for r in record["configurations"]}
    assert set(rows) == {"default", "per-tensor weights"}
    assert rows["per-tensor weights"]["options"]["per_channel"] is False
    for row in rows.values():
        assert row["vs_float32"]["samples"] == 32 and 0.5 <= row["vs_float32"]["top1_agreement"] <= 1
        assert set(row["samples_per_second"]) == set(row["speedup_vs_float32"]) == {"1", "4"}
        for batch, rate in row["samples_per_second"].items():  # the speed-up is this choice's rate over float32's
            assert row["speedup_vs_float32"][batch] == pytest.approx(
                rate / record["float32_samples_per_second"][batch], rel=1e-3)
    assert record["environment"]["cpu"]["model"]
    assert "top-1 = float32" in proc.stdout and "per-tensor weights" in proc.stdout
    assert list(tmp_path.iterdir()) == [out]


def test_unknown_configuration_is_one_line_and_exit_2(trained_export, tmp_path):
    proc = run_module("export.int8study", trained_export.path, "--dataset", "fashion_mnist", "--only", "magic",
                      "--output", tmp_path / "s.json")
    assert proc.returncode == 2 and "no such configuration" in proc.stderr and "default" in proc.stderr
    assert not (tmp_path / "s.json").exists()
