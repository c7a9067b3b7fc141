"""`bench check` and the verdicts, on pairs of results built to be faster, slower or equal.

The times are seeded draws, so each verdict below is fixed; the multipliers are far enough from 1
(or the allowance) for the 95% intervals of 400 runs at a 10% spread to settle them.
"""
import dataclasses
import json

import numpy as np
import pytest

from bench import check, stats
from bench.results import BenchResult, Row
from bench.scenarios import SINGLE_STREAM, LoadRow, LoadSettings, Timeline
from toolkit.cli import UsageError

ENVIRONMENT = {"cpu": {"model": "Test CPU", "usable_cores": 2}, "gpus": [],
               "packages": {"onnxruntime-gpu": "1.31.1", "onnx": "1.23.2", "numpy": "2.4.6"}}
MODEL = {"path": "runs/a/m.onnx", "inputs": [{"name": "x", "dtype": "tensor(float)", "shape": ["batch", 4]}],
         "outputs": ["y"]}


def times_s(scale: float, seed: int, n: int = 400) -> np.ndarray:
    return scale * np.random.default_rng(seed).lognormal(np.log(0.002), 0.1, n)


def inference(scale: float, seed: int, **changes) -> BenchResult:
    row = Row.from_times(label="onnxruntime", engine="onnxruntime", model="m.onnx", batch=8,
                         providers=["CPUExecutionProvider"], times_s=times_s(scale, seed))
    fields = dict(kind="throughput", config={}, environment=ENVIRONMENT, rows=(row,), model=MODEL,
                  created=f"2026-01-0{seed}T00:00:00+00:00")
    fields.update(changes)
    return BenchResult(**fields)


def decided(base: BenchResult, new: BenchResult, allowed: float = 0.05) -> stats.Comparison:
    (comparison,) = check.check(base, new, max_slowdown=allowed, allow_different_environment=False,
                                base_source="base.json", new_source="new.json").comparisons
    return comparison


@pytest.mark.parametrize("scale, verdict, regression", [
    (1.30, stats.SLOWER, True),     # 30% more time per sample: significantly over the 5% allowed
    (1.03, stats.SLOWER, False),    # significantly slower, but within the allowance
    (0.80, stats.FASTER, False),
    (1.00, stats.SAME, False),      # fresh draws of the same distribution
])
def test_check_decides_on_the_slowdowns_interval(scale, verdict, regression):
    comparison = decided(inference(1.0, 1), inference(scale, 2))
    assert (comparison.verdict, comparison.regression) == (verdict, regression)
    slowdown, interval = comparison.slowdown()
    assert interval.contains(scale) and slowdown == pytest.approx(scale, rel=0.03)
    assert comparison.metric == "samples/s" and comparison.test == "block bootstrap (mean time)"


def test_a_slowdown_the_interval_cannot_prove_passes():
    """Measured 5.7% slower with 5% allowed, but the interval reaches below 1.05: no regression is proven."""
    comparison = decided(inference(1.0, 1), inference(1.05, 2))
    assert comparison.verdict == stats.SLOWER and not comparison.regression
    assert comparison.slowdown()[0] > 1.05
    assert comparison.slowdown()[1].low < 1.05 < comparison.slowdown()[1].high


def test_failure_line_names_the_row_and_the_numbers():
    result = check.check(inference(1.0, 1), inference(1.3, 2), max_slowdown=0.05, allow_different_environment=False,
                         base_source="base.json", new_source="new.json")
    message = check.failure(result)
    assert message.startswith("onnxruntime @ 8 samples/s is +3") and "more than the 5.0% allowed" in message
    assert check.failure(check.check(inference(1.0, 1), inference(1.0, 2), max_slowdown=0.05,
                                     allow_different_environment=False, base_source="b", new_source="n")) is None


def load_result(scale: float, seed: int) -> BenchResult:
    latencies = times_s(scale, seed, 300)
    done = np.cumsum(latencies)
    issued = np.concatenate([[0.0], done[:-1]])
    timeline = Timeline.of(1, issued, issued, issued, done)
    row = LoadRow.from_timeline(LoadSettings(SINGLE_STREAM, min_duration_s=0.0, min_queries=1), timeline)
    return BenchResult(kind="load", config={}, environment=ENVIRONMENT, load=(row,), model=MODEL,
                       created="2026-01-01T00:00:00+00:00")


def test_check_compares_load_results_by_the_scenarios_percentile():
    comparison = decided(load_result(1.0, 1), load_result(1.4, 2))
    assert comparison.metric == "p90 latency ms" and not comparison.higher_is_better
    assert comparison.verdict == stats.SLOWER and comparison.regression
    assert comparison.test == "block bootstrap (p90)" and comparison.slowdown()[1].low > 1.3
    assert decided(load_result(1.0, 1), load_result(0.7, 2)).verdict == stats.FASTER


def test_a_peak_is_compared_with_the_allowance_alone():
    base, new = load_result(1.0, 1), load_result(1.0, 2)
    def peak_at(result, qps):
        row = dataclasses.replace(result.load[0], peak=True,
                                  settings=dataclasses.replace(result.load[0].settings, scenario="server", qps=qps))
        return dataclasses.replace(result, load=(row,))
    comparison = decided(peak_at(base, 100.0), peak_at(new, 90.0))
    assert (comparison.metric, comparison.verdict, comparison.interval) == ("peak qps", check.NOT_TESTED, None)
    assert comparison.regression  # 100 / 90 = 1.11 > 1.05
    assert not decided(peak_at(base, 100.0), peak_at(new, 97.0)).regression


@pytest.mark.parametrize("change, message", [
    ({"model": {**MODEL, "path": "runs/b/other.onnx"}}, "different models .*measured m.onnx, the result other.onnx"),
    ({"model": {**MODEL, "outputs": ["z"]}}, "different models .*other inputs or outputs"),
    ({"environment": {**ENVIRONMENT, "packages": {**ENVIRONMENT["packages"], "onnxruntime-gpu": "1.30.0"}}},
     "different environments .*onnxruntime-gpu 1.31.1 vs 1.30.0.*--allow-different-environment"),
    ({"environment": {**ENVIRONMENT, "cpu": {"model": "Other CPU", "usable_cores": 8}}},
     "machine: Test CPU, 2 usable cores, no GPU vs Other CPU, 8 usable cores"),
    ({"rows": (dataclasses.replace(inference(1.0, 2).rows[0], batch=16),)}, "share no rows"),
    ({"kind": "train", "rows": ()}, "is a `bench train` result"),
])
def test_check_refuses_what_it_cannot_compare(change, message):
    with pytest.raises(UsageError, match=message):
        check.check(inference(1.0, 1), inference(1.0, 2, **change), max_slowdown=0.05,
                    allow_different_environment=False, base_source="base.json", new_source="new.json")


def test_a_load_result_against_an_inference_baseline_is_refused():
    with pytest.raises(UsageError, match="compare two inference results or two load results"):
        check.compare_results(inference(1.0, 1), load_result(1.0, 1))


def test_different_environment_allowed_is_noted():
    new = inference(1.0, 2, environment={**ENVIRONMENT, "packages": {**ENVIRONMENT["packages"], "numpy": "2.5.0"}})
    result = check.check(inference(1.0, 1), new, max_slowdown=0.05, allow_different_environment=True,
                         base_source="base.json", new_source="new.json")
    assert "environment differs (allowed): numpy 2.4.6 vs 2.5.0" in result.notes
    assert result.kind == "check" and result.config["max_slowdown"] == 0.05


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("12.5", 0.125), ("0%", 0.0)])
def test_max_slowdown_is_a_percentage(text, value):
    assert check.parse_slowdown(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["-3%", "five", "2000%"])
def test_bad_max_slowdown_is_refused(text):
    with pytest.raises(UsageError, match="--max-slowdown"):
        check.parse_slowdown(text)


def rounds_row(label: str, throughputs: list[float], per_round: int = 5) -> Row:
    """A row of `bench compare`: `per_round` equal runs per round at the given samples/s (batch 1)."""
    times = [1 / t for t in throughputs for _ in range(per_round)]
    row = Row.from_times(label=label, engine="onnxruntime", model="m.onnx", batch=1, providers=["CPU"],
                         times_s=times)
    return dataclasses.replace(row, rounds=(per_round,) * len(throughputs))


def test_paired_comparison_uses_the_rounds():
    # Load moves both engines alike from round to round; the variant is 1.5x the reference in each.
    reference = rounds_row("ref", [100.0, 60.0, 90.0])
    variant = rounds_row("int8", [150.0, 90.0, 135.0])
    assert variant.round_throughputs() == pytest.approx([150.0, 90.0, 135.0])
    comparison = check.paired_comparison(reference, variant)
    assert comparison.ratio == pytest.approx(1.5) and comparison.verdict == stats.FASTER
    assert comparison.test == "paired t, 3 rounds" and comparison.baseline == "ref @ 1"
    one_round = check.paired_comparison(dataclasses.replace(reference, rounds=(15,)),
                                        dataclasses.replace(variant, rounds=(15,)))
    assert one_round.test == "block bootstrap (mean time)"


def test_check_cli_exit_codes(bench, tmp_path):
    paths = {}
    for name, result in [("base", inference(1.0, 1)), ("slower", inference(1.3, 2)), ("same", inference(1.0, 3)),
                         ("other", inference(1.0, 2, model={**MODEL, "path": "bert.onnx"}))]:
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(result.to_json()))
    slower = bench("check", paths["slower"], "--baseline", paths["base"], "--json", tmp_path / "c.json",
                   "--csv", tmp_path / "c.csv")
    assert slower.returncode == 1 and "REGRESSION" in slower.stdout
    assert slower.stderr.startswith("bench: check failed: onnxruntime @ 8 samples/s is +3")
    assert json.loads((tmp_path / "c.json").read_text())["comparisons"][0]["regression"] is True
    assert (tmp_path / "c.csv").read_text().startswith("row,baseline,metric,base,new,ratio,95% CI,verdict,test")
    assert bench("check", paths["slower"], "--baseline", paths["base"], "--max-slowdown", "40%").returncode == 0
    same = bench("check", paths["same"], "--baseline", paths["base"], "--quiet")
    assert same.returncode == 0 and same.stdout == same.stderr == ""
    other = bench("check", paths["other"], "--baseline", paths["base"])
    assert other.returncode == 2 and len(other.stderr.splitlines()) == 1 and "different models" in other.stderr
