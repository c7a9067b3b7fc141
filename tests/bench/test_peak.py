"""`bench peak`: the kernels compute what they claim; the peak is the fastest kernel; which peak a run uses.
And `bench load --find-peak`'s peak: the highest QPS that passed in the search and again when re-checked."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from bench import load, scenarios
from bench import peak as peak_lib
from bench.inputs import InputConfig
from bench.results import BenchResult, Peak, Row
from bench.runner import RunConfig
from bench.scenarios import SERVER, LoadSettings, PeakCheck
from bench.session import SessionConfig
from toolkit import environment
from toolkit.cli import UsageError

QUICK = RunConfig(warmup=1, min_time=0, min_iterations=3)


@pytest.mark.parametrize("kernel", peak_lib.KERNELS, ids=[k.label for k in peak_lib.KERNELS])
def test_each_kernel_multiplies(kernel):
    model = peak_lib.kernel_model(kernel, 64, 64, 64)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = np.random.default_rng(1).integers(0, 100, (64, 64)).astype(kernel.a)
    b = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "B"))
    expected = a.astype(np.float64) @ b.astype(np.float64)
    y = session.run(None, {"A": a})[0]
    if kernel.op == "QLinearMatMul":     # requantized: y = round(a@b * 0.01 * 0.01 / 0.01) + 128, saturated
        np.testing.assert_array_equal(y, np.clip(np.rint(expected * 0.01) + 128, 0, 255))
    else:
        np.testing.assert_allclose(y, expected, rtol=1e-5)


def test_the_peak_of_a_precision_is_its_fastest_kernel():
    result = peak_lib.run_peak(shapes=((64, 64, 64), (64, 128, 96)), session_config=SessionConfig(intra_op_threads=1),
                               run_config=QUICK, rounds=2)
    assert result.kind == "peak" and [r.label for r in result.rows] == [
        f"{k.label} {shape}" for shape in ("64x64x64", "64x128x96") for k in peak_lib.KERNELS]
    for precision in ("float32", "int8"):
        rates = [r.gops for r in result.rows if r.precision == precision]
        assert result.peak.rates[precision] == max(rates)
    assert [r.ops_per_sample for r in result.rows] == [2 * 64 * 64] * 5 + [2 * 128 * 96] * 5
    assert all(r.batch == 64 and len(r.times_ms) >= 4 for r in result.rows)
    # Each kernel's CPU time is read over a window around its measured runs, of both rounds.
    assert all(r.resources.cpu_seconds > 0 and r.resources.wall_seconds >= sum(r.times_ms) / 1000 - 1e-6
               for r in result.rows)
    assert max(r.peak_fraction for r in result.rows) == 1.0
    loaded = BenchResult.from_json(json.loads(json.dumps(result.to_json())))
    assert (loaded.rows, loaded.peak) == (result.rows, result.peak)


@pytest.mark.parametrize("text", ["1024", "8x8x8", "axbxc", ""])
def test_shapes_are_checked(text):
    with pytest.raises(UsageError, match="--shapes"):
        peak_lib.parse_shapes(text)


def test_rounds_are_checked():
    assert peak_lib.parse_shapes("64x128x96, 2048x2048x2048") == ((64, 128, 96), (2048, 2048, 2048))
    with pytest.raises(UsageError, match="--rounds 0"):
        peak_lib.run_peak(session_config=SessionConfig(), run_config=QUICK, rounds=0)


def _peak_file(tmp_path, cpu: str, threads: int):
    row = dataclasses.replace(Row.from_times(label="float32 MatMul", engine="onnxruntime", model="k.onnx", batch=100,
                                             providers=["CPUExecutionProvider"], times_s=[0.01]),
                              ops_per_sample=2e6, precision="float32")
    result = BenchResult(kind="peak", config={"session": {"intra_op_threads": threads}},
                         environment={"cpu": {"model": cpu}}, rows=(row,), created="2026-01-01T00:00:00+00:00")
    path = tmp_path / "peak.json"
    path.write_text(json.dumps(result.to_json()))
    return path


def test_a_peak_from_this_machine_is_used_and_named(tmp_path, monkeypatch):
    path = _peak_file(tmp_path, environment.cpu_info()["model"], 2)
    found, note = peak_lib.resolve_peak(str(path), SessionConfig(intra_op_threads=2))
    assert found.rates == {"float32": pytest.approx(2e6 * 100 / 0.01 / 1e9)} and str(path) in note
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    path.rename(tmp_path / peak_lib.DEFAULT_PEAK)
    assert peak_lib.resolve_peak(None, SessionConfig(intra_op_threads=2))[0] == dataclasses.replace(
        found, source=str(peak_lib.DEFAULT_PEAK))


def test_the_default_peak_from_other_settings_is_not_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert peak_lib.resolve_peak(None, SessionConfig())[0] is None             # none measured yet
    (tmp_path / "runs").mkdir()
    _peak_file(tmp_path, "Other CPU", 2).rename(tmp_path / peak_lib.DEFAULT_PEAK)
    found, note = peak_lib.resolve_peak(None, SessionConfig(intra_op_threads=1))
    assert found is None and "CPU Other CPU, 2 intra-op threads" in note
    found, note = peak_lib.resolve_peak(str(peak_lib.DEFAULT_PEAK), SessionConfig(intra_op_threads=1))
    assert found is not None and "note: measured with CPU Other CPU" in note      # asked for by name: used


def test_a_missing_or_wrong_peak_file_is_refused(tmp_path, helper_models):
    with pytest.raises(UsageError, match="no such file"):
        peak_lib.resolve_peak(str(tmp_path / "absent.json"), SessionConfig())
    sweep = BenchResult(kind="sweep", config={}, environment={})
    (tmp_path / "sweep.json").write_text(json.dumps(sweep.to_json()))
    with pytest.raises(UsageError, match="holds a `bench sweep` result"):
        peak_lib.resolve_peak(str(tmp_path / "sweep.json"), SessionConfig())


def test_rows_get_operations_and_tensorflow_is_counted_on_the_reference(small_alexnet):
    def row(label, engine, model):
        return Row.from_times(label=label, engine=engine, model=str(model), batch=4, providers=["x"],
                              times_s=[0.5, 0.5])
    result = BenchResult(kind="compare", config={}, environment={},
                         model={"path": str(small_alexnet), "inputs": [
                             {"name": "images", "dtype": "tensor(uint8)", "shape": ["batch", 28, 28, 1]}]},
                         rows=(row("onnxruntime float32", "onnxruntime", small_alexnet),
                               row("tensorflow float32", "tensorflow", "model.keras")))
    peak = Peak(rates={"float32": 100.0}, source="p.json", created="c", cpu="cpu", intra_op_threads=2)
    done = peak_lib.with_operations(result, InputConfig(), peak, "% of peak: of p.json")
    ours, tf = done.rows
    assert ours.ops_per_sample == tf.ops_per_sample > 1e8 and ours.precision == "float32"
    assert ours.gops == pytest.approx(ours.ops_per_sample * 8 / 1e9)        # 4 samples per 0.5 s
    assert ours.peak_fraction == pytest.approx(ours.gops / 100) and done.peak == peak
    assert done.notes[-1] == "% of peak: of p.json"


@dataclasses.dataclass(frozen=True)
class _Point:
    """A search point as recheck_peak sees one: its QPS and whether it passed."""

    settings: LoadSettings
    ok: bool
    peak: bool = False


def _recheck(search: dict[float, bool], again: dict[float, bool]):
    """recheck_peak over a search with `search` outcomes, each re-check at a QPS passing as `again` says."""
    ran: list[float] = []

    def point(qps, description):
        ran.append(qps)
        return _Point(LoadSettings(SERVER, qps=qps), again[qps])
    rows = [_Point(LoadSettings(SERVER, qps=q), ok) for q, ok in search.items()]
    notes: list[str] = []
    rows, check = load.recheck_peak(point, lambda row: row.ok, rows, notes)
    return rows[len(search):], check, ran, notes


def test_a_found_peak_is_rechecked_and_the_peak_is_the_highest_qps_that_passed_twice():
    search = {100.0: True, 200.0: False, 150.0: True, 175.0: False}
    rechecks, check, ran, notes = _recheck(search, {150.0: False, 100.0: True})
    assert ran == [150.0, 100.0] and [(r.settings.qps, r.peak) for r in rechecks] == [(150.0, False), (100.0, True)]
    assert check == PeakCheck(found=150.0, upper=175.0, rechecks=((150.0, False), (100.0, True)))
    assert check.confirmed == 100.0 and notes == [check.describe()]
    assert notes[0].startswith("find-peak: peak 100 qps, passed in the search and again (150 qps failed, 100 qps "
                               "passed); the search's resolution: 150 passed, 175 failed (16.7% apart)")

    _, check, ran, _ = _recheck(search, {150.0: True})
    assert ran == [150.0] and check.confirmed == 150.0          # the first re-check passed: no more


def test_a_peak_no_recheck_confirms_is_reported_unconfirmed():
    search = {float(q): True for q in range(10, 60, 10)}
    rechecks, check, ran, notes = _recheck(search, {q: False for q in search})
    assert ran == [50.0, 40.0, 30.0][:scenarios.PEAK_RECHECKS] and not any(r.peak for r in rechecks)
    assert check.confirmed is None and check.upper is None and check.to_json()["confirmed"] is None
    assert notes[0].startswith("find-peak: unconfirmed: 50 qps passed once, every re-check failed")
