"""Pure result logic: exact percentiles, constructors, JSON round trip, refusing unknown versions."""
import dataclasses
import json
import math
import statistics
from pathlib import Path

import pytest

from bench import results
from bench.results import BenchResult, Latency, Row, Spread, Throughput, TrainRow
from toolkit.cli import UsageError

DATA = Path(__file__).parent / "data"


def test_percentiles_are_exact_on_known_values():
    latency = Latency.from_values([float(v) for v in reversed(range(101))])  # 0..100, unsorted
    assert (latency.p50, latency.p90, latency.p95, latency.p99) == (50.0, 90.0, 95.0, 99.0)
    assert (latency.min, latency.max, latency.mean, latency.count) == (0.0, 100.0, 50.0, 101)


def test_percentile_interpolates_between_ranks():
    latency = Latency.from_values([4.0, 1.0, 3.0, 2.0])
    assert latency.p50 == 2.5
    assert latency.p90 == pytest.approx(3.7)
    assert latency.stdev == pytest.approx(math.sqrt(5 / 3))  # sample stdev of 1..4


def test_single_value_has_zero_spread_and_empty_is_refused():
    latency = Latency.from_values([7.0])
    assert (latency.p50, latency.p99, latency.stdev) == (7.0, 7.0, 0.0)
    with pytest.raises(ValueError):
        Latency.from_values([])


def test_throughput_from_latency():
    throughput = Throughput.from_latency(Latency.from_values([10.0, 30.0]), batch=32)
    assert throughput.samples_per_second == pytest.approx(32 * 2 / 0.040)
    assert (throughput.iterations, throughput.seconds) == (2, pytest.approx(0.040))


def test_train_rows_report_spread_and_efficiency():
    one = TrainRow.from_intervals(1, [100.0, 100.0])
    two = TrainRow.from_intervals(2, [150.0, 170.0], base=one)
    assert one.efficiency == 1.0 and one.total.half_range95 == 0.0 and one.total.mean_ci95 == (100.0, 100.0)
    assert two.per_rank.mean == pytest.approx(80.0)
    assert two.total.half_range95 == pytest.approx(1.96 * 10.0)  # population std of 150, 170
    assert two.efficiency == pytest.approx(0.8)
    assert Spread.from_values([1.0, 3.0]).mean == 2.0


@pytest.mark.parametrize("values, t_quantile", [
    # t(0.975, n-1) from a printed table of Student's t: 4.303 for 2 degrees of freedom, 2.262 for 9.
    ([100.0, 110.0, 90.0], 4.303),
    ([float(v) for v in range(1, 11)], 2.262),
])
def test_mean_ci95_is_a_student_t_confidence_interval_of_the_mean(values, t_quantile):
    spread = Spread.from_values(values)
    mean, sample_sd = sum(values) / len(values), statistics.stdev(values)
    half = t_quantile * sample_sd / math.sqrt(len(values))
    assert spread.mean_ci95 == pytest.approx((mean - half, mean + half), rel=2e-4)
    # The other figure, the intervals' scatter: 1.96 x their population sd.
    assert spread.half_range95 == pytest.approx(1.96 * statistics.pstdev(values))


def test_one_interval_has_no_confidence_interval():
    spread = Spread.from_values([5.0])
    assert (spread.mean, spread.half_range95, spread.mean_ci95) == (5.0, 0.0, None)
    assert Spread.from_json(spread.to_json(), [5.0], results.SCHEMA_VERSION) == spread


def sample_result(kind="sweep") -> BenchResult:
    rows = tuple(Row.from_times(label="onnxruntime", engine="onnxruntime", model="m.onnx", batch=b,
                                providers=["CPUExecutionProvider"], times_s=[0.001 * b, 0.002 * b, 0.003 * b])
                 for b in (1, 8))
    return BenchResult(kind=kind, config={"batch": "1,8"}, environment={"cpu": {"model": "test cpu"}}, rows=rows,
                       requested_providers=("cuda",), providers=("CPUExecutionProvider",),
                       fallback="CUDA unavailable, ran on CPU", created="2026-01-01T00:00:00+00:00")


def test_json_round_trip_keeps_everything():
    result = sample_result()
    doc = json.loads(json.dumps(result.to_json()))
    assert doc["version"] == results.SCHEMA_VERSION and doc["providers"] == ["CPUExecutionProvider"]
    assert doc["rows"][1]["times_ms"] == [8.0, 16.0, 24.0]
    assert BenchResult.from_json(doc) == result


def test_operations_and_peak_round_trip_and_version_2_files_load_without_them():
    result = sample_result()
    peak = results.Peak(rates={"float32": 50.0}, source="p.json", created="c", cpu="test cpu", intra_op_threads=2)
    rows = tuple(dataclasses.replace(r, ops_per_sample=1e9, precision="float32", peak_gops=50.0) for r in result.rows)
    counted = dataclasses.replace(result, rows=rows, peak=peak)
    doc = json.loads(json.dumps(counted.to_json()))
    # batch 1 in 2 ms per run: 500 samples/s x 1 GOP = 500 GOP/s, 10x the peak given.
    assert doc["rows"][0]["gop_per_s"] == pytest.approx(500.0) and doc["rows"][0]["peak_fraction"] == pytest.approx(10)
    assert BenchResult.from_json(doc) == counted and doc["peak"]["rates"] == {"float32": 50.0}
    old = result.to_json()
    for row in old["rows"]:
        for key in ("ops_per_sample", "precision", "gop_per_s", "peak_gop_per_s", "peak_fraction"):
            del row[key]
    del old["peak"]
    assert BenchResult.from_json({**old, "version": 2}) == result


def test_train_json_round_trip():
    one = TrainRow.from_intervals(1, [100.0, 110.0, 90.0])
    result = BenchResult(kind="train", config={}, environment={}, train=(one, TrainRow.from_intervals(2, [150.0], one)),
                         created="2026-01-01T00:00:00+00:00")
    doc = json.loads(json.dumps(result.to_json()))
    ci = [pytest.approx(75.159, abs=1e-3), pytest.approx(124.841, abs=1e-3)]  # 100 -+ 4.303 * 10 / sqrt(3)
    assert doc["train"][0]["total"] == {"mean": 100.0, "half_range95": pytest.approx(16.0033, abs=1e-4),
                                        "mean_ci95": ci}
    assert doc["train"][1]["total"]["mean_ci95"] is None
    assert BenchResult.from_json(doc) == result


def test_version_1_files_load_with_the_old_field_mapped():
    """tests/bench/data/*-v1.json were written by bench's version-1 code (commit 51b1ac9)."""
    train = results.load(DATA / "train-v1.json")
    spread = train.train[1].per_rank
    assert spread.half_range95 == 8.001666493091715  # v1's "ci95", verbatim
    assert spread.mean_ci95 == Spread.from_values([75.0, 80.0, 85.0]).mean_ci95  # from the intervals kept
    assert train.train[0].total == Spread.from_values([100.0, 110.0, 90.0])
    sweep = results.load(DATA / "sweep-v1.json")
    assert sweep.rows[0].latency.p50 == 2.5 and sweep.fallback == "CUDA unavailable, ran on CPU"


def test_version_2_files_load_as_the_result_that_wrote_them():
    """data/*-v2.json: `fixed_result()` and `train_result()` of test_report.py, written by commit fe89db6's code."""
    from tests.bench.test_report import fixed_result, train_result
    assert results.load(DATA / "sweep-v2.json") == fixed_result()
    assert results.load(DATA / "train-v2.json") == train_result()


def test_rows_write_their_intervals_and_rounds():
    times = [0.001 * (1 + (7 * i) % 30) for i in range(30)]  # 1..30 ms, shuffled
    row = Row.from_times(label="x", engine="onnxruntime", model="m.onnx", batch=2, providers=["CPU"], times_s=times)
    doc = json.loads(json.dumps(row.to_json()))
    assert doc["rounds"] == [] and doc["cv"] == pytest.approx(statistics.stdev(row.times_ms) / row.latency.mean)
    # P(Binomial(30, 1/2) <= 9) = 0.021 <= 0.025 < P(<= 10); P(<= 19) = 0.951 < 0.975 <= P(<= 20): ranks 10 and 21
    # for independent values; this series repeats a pattern every few runs, which bench/stats.py widens it for.
    assert doc["ci95"]["p50"] == [8.0, 23.0] and doc["ci95"]["p99"][1] is None  # 30 runs cannot bound a p99
    low, high = doc["ci95"]["samples_per_second"]
    assert low < row.throughput.samples_per_second < high
    assert Row.from_json(doc) == row


def test_single_row_runs_have_top_level_throughput_and_latency():
    result = sample_result("latency")
    doc = BenchResult(**{**result.__dict__, "rows": result.rows[:1]}).to_json()
    assert doc["throughput"] == pytest.approx(1 / 0.002)
    assert doc["latency_ms"]["p50"] == 2.0 and doc["latency_ms"]["p99"] == pytest.approx(2.98)


@pytest.mark.parametrize("change, message", [
    ({"version": results.SCHEMA_VERSION + 1}, "newer than this bench reads"),
    ({"version": 0}, "unknown schema version"),
    ({"version": "1"}, "no integer schema version"),
    ({"schema": "other"}, "is not a bench results file"),
    ({"rows": [{"label": "x"}]}, "malformed"),
])
def test_loader_refuses_unknown_or_broken_files(tmp_path, change, message):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**sample_result().to_json(), **change}))
    with pytest.raises(UsageError, match=message):
        results.load(path)


def test_loader_refuses_non_json_and_missing(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        results.load(tmp_path / "bad.json")
    with pytest.raises(UsageError, match="does not exist"):
        results.load(tmp_path / "missing.json")


def _set(doc, path: tuple, value):
    """`doc` with the value at `path` (keys and list indices) replaced."""
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


@pytest.mark.parametrize("path, value, message", [
    (("rows", 0, "latency_ms", "mean"), "fast", "rows[0].latency.mean must be float, got a string"),
    (("environment",), ["host", "cpu"], "environment must be a JSON object, got a list"),
    (("environment", "cpu"), "Xeon", "environment.cpu must be a JSON object, got a string"),
    (("rows", 1, "label"), {"a": 1}, "rows[1].label must be str, got an object"),
    (("rows", 0, "throughput", "samples_per_second"), None, "samples_per_second must be float, got null"),
    (("created",), 20260101, "results.created must be str, got a number"),
    (("rows", 0, "batch"), 1e300, "rows[0].batch must be int, got a number"),
    (("model", "path"), ["a"], "model.path must be str, got a list"),
])
def test_values_of_the_wrong_type_are_refused_in_one_line_naming_where(tmp_path, path, value, message):
    path_ = tmp_path / "r.json"
    path_.write_text(json.dumps(_set(json.loads((DATA / "sweep-v3.json").read_text()), path, value)))
    with pytest.raises(UsageError, match="malformed bench results file") as refused:
        results.load(path_)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("text", ['{"schema": "alexnet-toolkit/bench", "config": ' + "[" * 200_000 + "]" * 200_000
                                  + "}", '{"version": ' + "9" * 5000 + "}"])
def test_json_nested_too_deep_or_with_huge_numbers_is_one_line(tmp_path, text):
    (tmp_path / "r.json").write_text(text)
    with pytest.raises(UsageError, match="is not JSON this can read"):
        results.load(tmp_path / "r.json")
