"""Verdicts on pairs of measurements, and the regression check `bench check`.

Each pair becomes a `stats.Comparison`: the ratio of one metric, its 95% confidence interval, the
test that gave it, and "faster", "slower" or "no significant difference" (the interval excludes 1
or not). Which test depends on how the pair was measured:
  * `bench compare` (engines interleaved in rounds): `paired_comparison`, Student's t on the
    per-round log ratios of samples/s; load that changes between rounds cancels.
  * two separate results (`bench report --compare`, `bench check`): `independent_comparison`, a
    moving-block bootstrap of the ratio of mean run times (inference rows), of the scenario's
    percentile latency or of the window rates (load rows). A change of machine load between the
    two runs counts as a difference: that is what the environment check and repeated baselines are for.

`bench check RESULT --baseline BASE --max-slowdown 5%` decides, for every row the two share,
whether RESULT is *significantly* slower than BASE by more than the allowance: the lower end of
the slowdown's interval (time per sample, new / base) above 1.05. It exits 1 if any row is, 0
otherwise, and refuses (exit 2) results of another model, of another kind, or from another
machine or package versions (unless --allow-different-environment).

    bench check new.json --baseline base.json                    # exit 0, 1 (regression) or 2 (refused)
    comparisons = compare_results(base, new)                     # report --compare's verdicts
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bench import stats
from bench.results import BenchResult, Row
from bench.scenarios import OFFLINE, SERVER, LoadRow
from bench.stats import Comparison
from toolkit.cli import UsageError

INFERENCE_KINDS = ("throughput", "latency", "sweep", "compare", "overhead")
THROUGHPUT = "samples/s"
NOT_TESTED = "not tested"
# What `bench check` holds to be the same machine and software: hostnames are left out (CI runners
# of one type differ in name only), the packages whose versions change the numbers are in.
PACKAGES = ("onnxruntime-gpu", "onnxruntime", "onnx", "numpy", "tensorflow", "keras")


def parse_slowdown(text: str) -> float:
    """'5%' or '5' -> 0.05."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise UsageError(f"--max-slowdown {text!r} is not a percentage: e.g. --max-slowdown 5%") from None
    if not 0 <= value < 1000:
        raise UsageError(f"--max-slowdown {text}: give a percentage from 0 to 1000, e.g. 5%")
    return value / 100


def row_label(row: Row) -> str:
    return f"{row.label} @ {row.batch}"


def paired_comparison(reference: Row, row: Row) -> Comparison:
    """`row` against `reference` from the same interleaved rounds (bench compare); one round: bootstrap."""
    if len(reference.rounds) < 2 or len(reference.rounds) != len(row.rounds):
        return independent_comparison(reference, row, row_label(reference))
    ratio, interval = stats.paired_ratio(reference.round_throughputs(), row.round_throughputs())
    return Comparison(row=row_label(row), baseline=row_label(reference), metric=THROUGHPUT, higher_is_better=True,
                      base_value=reference.throughput.samples_per_second, value=row.throughput.samples_per_second,
                      ratio=ratio, interval=interval, verdict=stats.verdict(interval, True),
                      test=f"paired t, {len(row.rounds)} rounds")


def independent_comparison(base: Row, new: Row, baseline: str) -> Comparison:
    """Samples/s of two separately measured rows: the bootstrap ratio of mean run times, inverted."""
    time_ratio, interval = stats.bootstrap_ratio(base.times_ms, new.times_ms, stats.mean)
    scale = new.batch / base.batch  # samples per run, should the batches differ
    ratio = scale / time_ratio
    interval = interval.inverted(scale)
    return Comparison(row=row_label(new), baseline=baseline, metric=THROUGHPUT, higher_is_better=True,
                      base_value=base.throughput.samples_per_second, value=new.throughput.samples_per_second,
                      ratio=ratio, interval=interval, verdict=stats.verdict(interval, True),
                      test="block bootstrap (mean time)")


def load_comparison(base: LoadRow, new: LoadRow, baseline: str) -> Comparison:
    """The scenario's metric of two load rows: percentile latency, samples/s, or (find-peak) the peak QPS."""
    common = dict(row=new.label(), baseline=baseline)
    if new.peak:
        ratio = (new.settings.qps or 0) / (base.settings.qps or 1)
        return Comparison(**common, metric="peak qps", higher_is_better=True, base_value=base.settings.qps or 0,
                          value=new.settings.qps or 0, ratio=ratio, interval=None, verdict=NOT_TESTED,
                          test="none (search result)")
    if new.settings.scenario == OFFLINE:
        ratio, interval = stats.bootstrap_ratio(base.window_rates(), new.window_rates(), stats.mean)
        test = "block bootstrap (window rates)"
    else:
        p = new.settings.percentile
        ratio, interval = stats.bootstrap_ratio(base.latencies_ms(), new.latencies_ms(), stats.rank_quantile(p))
        test = f"block bootstrap (p{p * 100:g})"
    return Comparison(**common, metric=new.metric, higher_is_better=new.higher_is_better,
                      base_value=base.metric_value, value=new.metric_value, ratio=ratio, interval=interval,
                      verdict=stats.verdict(interval, new.higher_is_better), test=test)


def _load_key(row: LoadRow) -> tuple:
    s = row.settings
    # A peak is matched with the other run's peak; a server point with the same QPS.
    qps = "peak" if row.peak else s.qps if s.scenario == SERVER else None
    return s.scenario, s.batch, s.concurrency, qps


def _family(result: BenchResult, source: str) -> str:
    if result.kind in INFERENCE_KINDS:
        return "inference"
    if result.kind == "load":
        return "load"
    raise UsageError(f"{source} is a `bench {result.kind}` result: compare inference results (throughput, latency, "
                     "sweep, compare, overhead) or `bench load` results")


def compare_results(base: BenchResult, new: BenchResult, base_source: str = "the first results",
                    new_source: str = "the second results") -> list[Comparison]:
    """A comparison for each row both results have (same label and batch, or same load setup)."""
    if _family(base, base_source) != _family(new, new_source):
        raise UsageError(f"{base_source} is a `bench {base.kind}` result and {new_source} a `bench {new.kind}` "
                         "result: compare two inference results or two load results")
    baseline = "baseline"
    if new.kind == "load":
        before = {_load_key(r): r for r in _compared_load_rows(base)}
        found = [load_comparison(before[_load_key(r)], r, baseline) for r in _compared_load_rows(new)
                 if _load_key(r) in before]
    else:
        rows = {(r.label, r.batch): r for r in base.rows}
        found = [independent_comparison(rows[(r.label, r.batch)], r, baseline) for r in new.rows
                 if (r.label, r.batch) in rows]
    if not found:
        raise UsageError(f"{base_source} and {new_source} share no rows (same label and batch, or the same load "
                         "scenario, batch, concurrency and QPS): nothing to compare")
    return found


def _compared_load_rows(result: BenchResult) -> list[LoadRow]:
    """A find-peak result is compared by its peak alone (the points tried on the way differ from run to run)."""
    peaks = [r for r in result.load if r.peak]
    return peaks or list(result.load)


def model_mismatch(base: BenchResult, new: BenchResult) -> str | None:
    """Why the two results are not of the same model (file name, inputs, outputs), or None."""
    if base.model is None or new.model is None:
        return None if base.model == new.model else "one result has no model"
    def identity(model: dict[str, Any]) -> tuple:
        inputs = [(i["name"], i["dtype"], list(i["shape"])) for i in model.get("inputs", [])]
        return Path(model["path"]).name, inputs, list(model.get("outputs", []))
    (base_name, base_inputs, base_outputs), (name, inputs, outputs) = identity(base.model), identity(new.model)
    if base_name != name:
        return f"the baseline measured {base_name}, the result {name}"
    if (base_inputs, base_outputs) != (inputs, outputs):
        return f"{name} has other inputs or outputs in the baseline ({base_inputs} -> {base_outputs})"
    return None


def environment_mismatches(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two environment records in CPU, GPUs and the versions of PACKAGES."""
    def machine(env: dict[str, Any]) -> str:
        cpu = env.get("cpu", {})
        gpus = ", ".join(g.get("name", "?") for g in env.get("gpus", [])) or "no GPU"
        return f"{cpu.get('model', '?')}, {cpu.get('usable_cores', '?')} usable cores, {gpus}"
    found = []
    if machine(base) != machine(new):
        found.append(f"machine: {machine(base)} vs {machine(new)}")
    base_packages, packages = base.get("packages", {}), new.get("packages", {})
    for name in PACKAGES:
        if base_packages.get(name) != packages.get(name):
            found.append(f"{name} {base_packages.get(name, 'absent')} vs {packages.get(name, 'absent')}")
    return found


def with_decision(comparison: Comparison, allowed: float) -> Comparison:
    """Regression: the slowdown's interval lies wholly above 1 + allowed (untested: its value does)."""
    slowdown, interval = comparison.slowdown()
    if interval is None:
        regression = slowdown > 1 + allowed
    else:
        regression = interval.low is not None and interval.low > 1 + allowed
    return dataclasses.replace(comparison, allowed_slowdown=allowed, regression=regression)


def check(base: BenchResult, new: BenchResult, *, max_slowdown: float, allow_different_environment: bool,
          base_source: str, new_source: str) -> BenchResult:
    """`bench check`'s result: every shared row compared, each with its decision; UsageError to refuse."""
    mismatch = model_mismatch(base, new)
    if mismatch:
        raise UsageError(f"{new_source} and the baseline {base_source} are of different models ({mismatch}): "
                         "check against a baseline of the same model")
    comparisons = compare_results(base, new, f"the baseline {base_source}", new_source)
    differences = environment_mismatches(base.environment, new.environment)
    if differences and not allow_different_environment:
        raise UsageError(f"{new_source} and the baseline {base_source} come from different environments "
                         f"({'; '.join(differences)}): measure both on one machine with the same packages, or pass "
                         "--allow-different-environment")
    notes = [f"baseline {base_source} ({base.created}), result {new_source} ({new.created})",
             f"regression: significantly slower by more than {max_slowdown:.1%}, i.e. the lower end of the "
             f"slowdown's 95% interval above {1 + max_slowdown:.3f}",
             *(f"environment differs (allowed): {d}" for d in differences)]
    return BenchResult(kind="check", config={"result": new_source, "baseline": base_source,
                                             "max_slowdown": max_slowdown,
                                             "allow_different_environment": allow_different_environment},
                       environment=new.environment, model=new.model, requested_providers=new.requested_providers,
                       providers=new.providers, fallback=new.fallback, notes=tuple(notes),
                       comparisons=tuple(with_decision(c, max_slowdown) for c in comparisons))


def failure(result: BenchResult) -> str | None:
    """The one line `bench check` fails with, or None when no row regressed."""
    regressed = [c for c in result.comparisons if c.regression]
    if not regressed:
        return None
    return "; ".join(_describe(c) for c in regressed)


def _describe(comparison: Comparison) -> str:
    slowdown, interval = comparison.slowdown()
    bounds = "" if interval is None else f" (95% interval {_percent(interval.low)} to {_percent(interval.high)})"
    return (f"{comparison.row} {comparison.metric} is {_percent(slowdown)} slower than the baseline{bounds}, "
            f"more than the {comparison.allowed_slowdown:.1%} allowed")


def _percent(factor: float | None) -> str:
    return "?" if factor is None else f"{factor - 1:+.1%}"

