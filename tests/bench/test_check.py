"""`bench check` and the verdicts, on results built to be faster, slower or equal.

A verdict needs repeated runs a side (each run a seeded draw whose level also moves from run to run, as
separate processes do); one run a side gives the ratio, its within-run interval and no verdict. The
multipliers are far enough from 1 (or the allowance) for 3 runs of 400 at a 10% spread to settle them;
"same distribution -> no verdict" is a rate over many seeded draws, not one draw.
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
BETWEEN_RUNS = 0.01  # log-scale spread of a run's level from process to process


def times_s(scale: float, seed: int, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    level = np.exp(rng.normal(0, BETWEEN_RUNS))
    return scale * level * rng.lognormal(np.log(0.002), 0.1, n)


def inference(scale: float, seed: int, **changes) -> BenchResult:
    row = Row.from_times(label="onnxruntime", engine="onnxruntime", model="m.onnx", batch=8,
                         providers=["CPUExecutionProvider"], times_s=times_s(scale, seed))
    fields = dict(kind="throughput", config={}, environment=ENVIRONMENT, rows=(row,), model=MODEL,
                  created=f"2026-01-0{seed % 9 + 1}T00:00:00+00:00")
    fields.update(changes)
    return BenchResult(**fields)


def runs(make, scale: float, first_seed: int, count: int = 3) -> list[BenchResult]:
    return [make(scale, first_seed + index) for index in range(count)]


def checked(bases: list[BenchResult], news: list[BenchResult], allowed: float = 0.05) -> BenchResult:
    return check.check(bases, news, max_slowdown=allowed, allow_different_environment=False,
                       base_sources=[f"base{i}.json" for i in range(len(bases))],
                       new_sources=[f"new{i}.json" for i in range(len(news))])


def decided(bases: list[BenchResult], news: list[BenchResult], allowed: float = 0.05) -> stats.Comparison:
    (comparison,) = checked(bases, news, allowed).comparisons
    return comparison


@pytest.mark.parametrize("scale, verdict, regression", [
    (1.30, stats.SLOWER, True),     # 30% more time per sample: significantly over the 5% allowed
    (1.045, stats.SLOWER, False),   # significantly slower, but not provably beyond the allowance
    (0.80, stats.FASTER, False),
])
def test_check_decides_on_the_slowdowns_interval_between_runs(scale, verdict, regression):
    comparison = decided(runs(inference, 1.0, 10), runs(inference, scale, 20))
    assert (comparison.verdict, comparison.regression) == (verdict, regression)
    slowdown, interval = comparison.slowdown()
    assert interval.contains(scale) and slowdown == pytest.approx(scale, rel=0.03)
    assert comparison.metric == "samples/s" and comparison.test == "Welch t over runs (3 vs 3)"


def test_same_distribution_gives_no_verdict_at_the_stated_rate():
    """200 seeded A/A checks of 3 runs a side: false verdicts near the 5% a 95% interval allows (binomial
    sd 1.5% at 200), false REGRESSIONs at 5% allowed at most a few; a real 10% slowdown is found."""
    verdicts, regressions, found = 0, 0, 0
    for trial in range(200):
        base, same = runs(inference, 1.0, 1000 + 10 * trial), runs(inference, 1.0, 5000 + 10 * trial)
        comparison = decided(base, same)
        verdicts += comparison.verdict != stats.SAME
        regressions += bool(comparison.regression)
        found += decided(base, runs(inference, 1.1, 9000 + 10 * trial)).verdict == stats.SLOWER
    assert verdicts <= 18 and regressions <= 2 and found >= 190


def test_one_run_a_side_gives_the_ratio_and_no_verdict():
    """Two single runs whose levels differ (as separate processes do) by more than their within-run intervals
    allow: the interval excludes 1, yet no verdict and no REGRESSION (the old check called it slower)."""
    base, new = inference(1.0, 1), inference(1.0, 2, rows=(Row.from_times(
        label="onnxruntime", engine="onnxruntime", model="m.onnx", batch=8, providers=["CPUExecutionProvider"],
        times_s=1.08 * times_s(1.0, 2)),))
    result = checked([base], [new])
    (comparison,) = result.comparisons
    assert comparison.interval.high < 1 / 1.05  # within-run: "significantly" slower by more than 5% ...
    assert (comparison.verdict, comparison.regression) == (stats.NO_VERDICT, None)  # ... which one run cannot tell
    assert comparison.test.startswith(check.WITHIN_RUN) and check.failure(result) is None
    assert any(n.startswith("one run a side") and "bench check NEW1.json" in n for n in result.notes)


def test_a_slowdown_the_interval_cannot_prove_passes():
    """Measured over 5% slower with 5% allowed, but the interval reaches below 1.05: no regression is proven."""
    comparison = decided(runs(inference, 1.0, 10), runs(inference, 1.06, 20))
    assert comparison.verdict == stats.SLOWER and not comparison.regression
    assert comparison.slowdown()[0] > 1.05
    assert comparison.slowdown()[1].low < 1.05 < comparison.slowdown()[1].high


def test_failure_line_names_the_row_and_the_numbers():
    result = checked(runs(inference, 1.0, 10), runs(inference, 1.3, 20))
    message = check.failure(result)
    assert message.startswith("onnxruntime @ 8 samples/s is +29.8% slower than the baseline (95% interval +2")
    assert message.endswith("more than the 5.0% allowed")
    assert check.failure(checked(runs(inference, 1.0, 10), runs(inference, 1.0, 20))) is None


def test_one_baseline_against_several_results_is_refused():
    with pytest.raises(UsageError, match="at least two runs on each side"):
        checked([inference(1.0, 1)], runs(inference, 1.0, 20))


def load_result(scale: float, seed: int) -> BenchResult:
    latencies = times_s(scale, seed, 300)
    done = np.cumsum(latencies)
    issued = np.concatenate([[0.0], done[:-1]])
    timeline = Timeline.of(1, issued, issued, issued, done)
    row = LoadRow.from_timeline(LoadSettings(SINGLE_STREAM, min_duration_s=0.0, min_queries=1), timeline)
    return BenchResult(kind="load", config={}, environment=ENVIRONMENT, load=(row,), model=MODEL,
                       created="2026-01-01T00:00:00+00:00")


def test_check_compares_load_results_by_the_scenarios_percentile():
    comparison = decided(runs(load_result, 1.0, 10), runs(load_result, 1.4, 20))
    assert comparison.metric == "p90 latency ms" and not comparison.higher_is_better
    assert comparison.verdict == stats.SLOWER and comparison.regression
    assert comparison.test == "Welch t over runs (3 vs 3)" and comparison.slowdown()[1].low > 1.3
    assert decided(runs(load_result, 1.0, 10), runs(load_result, 0.7, 20)).verdict == stats.FASTER
    single = decided([load_result(1.0, 1)], [load_result(1.4, 2)])
    assert single.verdict == stats.NO_VERDICT and single.test.endswith("(p90 ranks widened for dependence)")
    assert single.interval.contains(single.ratio)


def peak_at(result: BenchResult, qps: float) -> BenchResult:
    row = dataclasses.replace(result.load[0], peak=True,
                              settings=dataclasses.replace(result.load[0].settings, scenario="server", qps=qps))
    return dataclasses.replace(result, load=(row,))


def test_a_peak_is_compared_between_runs_with_the_searchs_step_as_its_resolution():
    base = [peak_at(load_result(1.0, i), 100.0) for i in range(3)]
    comparison = decided(base, [peak_at(load_result(1.0, i), 90.0) for i in range(3)])
    assert (comparison.metric, comparison.verdict) == ("peak qps", stats.SLOWER)
    assert comparison.test == "Welch t over runs (3 vs 3), resolution 5.0%"
    assert comparison.regression and comparison.slowdown()[1].low > 1.05  # 100 / 90: 11% slower, proven
    # 3% lower in every run: within the search's 5% step, so not proven over the 5% allowed.
    assert not decided(base, [peak_at(load_result(1.0, i), 97.0) for i in range(3)]).regression


def test_a_single_peak_says_its_resolution_and_gives_no_verdict():
    comparison = decided([peak_at(load_result(1.0, 1), 100.0)], [peak_at(load_result(1.0, 2), 80.0)])
    assert comparison.verdict == stats.NO_VERDICT and comparison.regression is None
    assert comparison.interval.low == pytest.approx(0.8 / 1.05) and comparison.interval.high == pytest.approx(0.84)
    assert comparison.test == f"{check.WITHIN_RUN} (each peak only known to within 5.0%)"


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
        checked([inference(1.0, 1)], [inference(1.0, 2, **change)])
    with pytest.raises(UsageError, match=message):  # any one of several runs
        checked(runs(inference, 1.0, 10), [inference(1.0, 2), inference(1.0, 3, **change)])


def test_a_load_result_against_an_inference_baseline_is_refused():
    with pytest.raises(UsageError, match="compare two inference results or two load results"):
        check.compare_results(inference(1.0, 1), load_result(1.0, 1))


def test_different_environment_allowed_is_noted():
    new = inference(1.0, 2, environment={**ENVIRONMENT, "packages": {**ENVIRONMENT["packages"], "numpy": "2.5.0"}})
    result = check.check([inference(1.0, 1)], [new], max_slowdown=0.05, allow_different_environment=True,
                         base_sources=["base.json"], new_sources=["new.json"])
    assert "environment differs (allowed): numpy 2.4.6 vs 2.5.0" in result.notes
    assert result.kind == "check" and result.config["max_slowdown"] == 0.05
    assert (result.config["results"], result.config["baselines"]) == (["new.json"], ["base.json"])


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
    assert one_round.verdict == stats.NO_VERDICT and one_round.test.startswith(check.WITHIN_RUN)


def test_check_cli_exit_codes(bench, tmp_path):
    def written(name: str, result: BenchResult) -> str:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(result.to_json()))
        return str(path)
    base = [written(f"base{i}", r) for i, r in enumerate(runs(inference, 1.0, 10))]
    slower = [written(f"slower{i}", r) for i, r in enumerate(runs(inference, 1.3, 20))]
    same = [written(f"same{i}", r) for i, r in enumerate(runs(inference, 1.0, 30))]
    other = written("other", inference(1.0, 2, model={**MODEL, "path": "bert.onnx"}))
    failed = bench("check", *slower, "--baseline", *base, "--json", tmp_path / "c.json", "--csv", tmp_path / "c.csv")
    assert failed.returncode == 1 and "REGRESSION" in failed.stdout
    assert failed.stderr.startswith("bench: check failed: onnxruntime @ 8 samples/s is +29.8% slower")
    assert json.loads((tmp_path / "c.json").read_text())["comparisons"][0]["regression"] is True
    assert (tmp_path / "c.csv").read_text().startswith("row,baseline,metric,base,new,ratio,95% CI,verdict,test")
    assert bench("check", *slower, "--baseline", *base, "--max-slowdown", "40%").returncode == 0
    passed = bench("check", *same, "--baseline", *base, "--quiet")
    assert passed.returncode == 0 and passed.stdout == passed.stderr == ""
    single = bench("check", slower[0], "--baseline", base[0], "--json", tmp_path / "one.json")
    assert single.returncode == 0 and "no verdict" in single.stdout
    (one,) = json.loads((tmp_path / "one.json").read_text())["comparisons"]
    assert (one["verdict"], one["regression"]) == (stats.NO_VERDICT, None)
    refused = bench("check", other, "--baseline", base[0])
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1 and "different models" in refused.stderr
