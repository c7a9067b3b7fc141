"""Verdicts on pairs of measurements, and the regression check `bench check`.

Each pair becomes a `stats.Comparison`: the ratio of one metric, its 95% confidence interval, the
test that gave it, and a verdict. A verdict ("faster", "slower" or "no significant difference":
the interval excludes 1 or not) needs the variation between runs, not only within one: two
identical runs a few seconds apart differ by more than their within-run intervals allow
(bench/calibration.py: a verdict from one run a side is false in over a third of A/A trials). So:
  * `bench compare` (engines interleaved in >= 2 rounds, mirrored order within each):
    `paired_comparison`, Student's t on the per-round log ratios of samples/s; load that changes
    between rounds, and a linear drift within one, cancel.
  * repeated runs of both sides (`bench check` with >= 2 results a side, each from its own `bench`
    process): Welch's t on the log of each run's metric (samples/s; the scenario's percentile
    latency or samples/s; a --find-peak peak QPS, known only to within the search's step, which is
    added as a uniform error: stats.runs_ratio).
  * one run a side (`bench report --compare`, `bench check` of two files, `compare --rounds 1`): the
    ratio and its within-run interval only (stats.mean_ratio / quantile_ratio; a peak: the search's
    step), verdict "no verdict (one run a side)", never a REGRESSION: it cannot tell a change from
    run-to-run variation.

`bench check NEW.json... --baseline BASE.json... --max-slowdown 5%` decides, for every row all the
results share, whether NEW is *significantly* slower than BASE by more than the allowance: the lower
end of the slowdown's interval (time per sample, new / base) above 1.05. Its false-REGRESSION rate
on unchanged models is at most 2.5% (one side of a 95% interval, at a true slowdown equal to the
allowance; far less at none: bench/calibration.py). It exits 1 if any row regressed, 0 otherwise
(with one run a side: 0 and a note saying no verdict was possible), and refuses (exit 2) results of
another model, of another kind, or from another machine or package versions (unless
--allow-different-environment).

    bench check new1.json new2.json new3.json --baseline base1.json base2.json base3.json   # exit 0, 1 or 2
    comparisons = compare_results(base, new)                     # report --compare: one run a side
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from bench import stats
from bench.results import BenchResult, Row
from bench.scenarios import OFFLINE, PEAK_DECIMALS, PEAK_TOLERANCE, SERVER, LoadRow
from bench.stats import Comparison
from toolkit.cli import UsageError

INFERENCE_KINDS = ("throughput", "latency", "sweep", "compare", "overhead")
THROUGHPUT = "samples/s"
WITHIN_RUN = "within-run only, one run a side"
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
    """`row` against `reference` from the same interleaved rounds (bench compare); one round: no verdict."""
    if len(reference.rounds) < 2 or len(reference.rounds) != len(row.rounds):
        return _one_run_a_side(reference, row, row_label(reference))
    ratio, interval = stats.paired_ratio(reference.round_throughputs(), row.round_throughputs())
    return Comparison(row=row_label(row), baseline=row_label(reference), metric=THROUGHPUT, higher_is_better=True,
                      base_value=reference.throughput.samples_per_second, value=row.throughput.samples_per_second,
                      ratio=ratio, interval=interval, verdict=stats.verdict(interval, True),
                      test=f"paired t, {len(row.rounds)} rounds")


def peak_resolution(row: LoadRow) -> float:
    """How closely a --find-peak search located its peak, as a fraction: its rules' tolerance, or LoadGen's
    decimals of QPS where those are coarser."""
    qps = row.settings.qps or 1.0
    return max(PEAK_TOLERANCE[row.settings.rules], 10 ** -PEAK_DECIMALS / qps)


def _metric(row: Row | LoadRow) -> tuple[str, str, bool, float]:
    """(row label, metric, higher is better, value) of a row: samples/s, the scenario's metric, or the peak QPS."""
    if isinstance(row, Row):
        return row_label(row), THROUGHPUT, True, row.throughput.samples_per_second
    if row.peak:
        return row.label(), "peak qps", True, row.settings.qps or 0.0
    return row.label(), row.metric, row.higher_is_better, row.metric_value


def _between_runs(bases: Sequence[Row | LoadRow], news: Sequence[Row | LoadRow], baseline: str) -> Comparison:
    """Repeated runs a side: Welch's t on the log of each run's metric (a peak's step as its resolution)."""
    label, metric, higher, _ = _metric(news[0])
    base_values = [_metric(r)[3] for r in bases]
    new_values = [_metric(r)[3] for r in news]
    resolution = peak_resolution(news[0]) if isinstance(news[0], LoadRow) and news[0].peak else 0.0
    ratio, interval = stats.runs_ratio(base_values, new_values, resolution)
    test = f"Welch t over runs ({len(bases)} vs {len(news)})" + (
        f", resolution {resolution:.1%}" if resolution else "")
    return Comparison(row=label, baseline=baseline, metric=metric, higher_is_better=higher,
                      base_value=stats.geometric_mean(base_values), value=stats.geometric_mean(new_values),
                      ratio=ratio, interval=interval, verdict=stats.verdict(interval, higher), test=test)


def _one_run_a_side(base: Row | LoadRow, new: Row | LoadRow, baseline: str) -> Comparison:
    """One run a side: the ratio and its within-run interval, no verdict (between-run variation is unknown)."""
    label, metric, higher, value = _metric(new)
    base_value = _metric(base)[3]
    if isinstance(new, Row) and isinstance(base, Row):
        time_ratio, interval = stats.mean_ratio(base.times_ms, new.times_ms)
        scale = new.batch / base.batch  # samples per run, should the batches differ
        ratio, interval, how = scale / time_ratio, interval.inverted(scale), "batch-means t of the mean time"
    elif isinstance(new, Row) or isinstance(base, Row):
        raise ValueError(f"{label}: a load test's row against a throughput row: nothing to compare")
    elif new.peak:
        ratio = value / base_value
        step = 1 + peak_resolution(new)
        interval, how = stats.Interval(ratio / step, ratio * step), f"each peak only known to within {step - 1:.1%}"
    elif new.settings.scenario == OFFLINE:
        ratio, interval = stats.mean_ratio(base.window_rates(), new.window_rates())
        how = "Welch t of the window rates"
    else:
        p = new.settings.percentile
        ratio, interval = stats.quantile_ratio(base.latencies_ms(), new.latencies_ms(), p)
        how = f"p{p * 100:g} ranks widened for dependence"
    return Comparison(row=label, baseline=baseline, metric=metric, higher_is_better=higher, base_value=base_value,
                      value=value, ratio=ratio, interval=interval, verdict=stats.NO_VERDICT,
                      test=f"{WITHIN_RUN} ({how})")


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


def _keyed(result: BenchResult) -> dict[tuple, Row | LoadRow]:
    """The rows to compare, by what matches them across results: label and batch, or the load setup."""
    if result.kind == "load":
        return {_load_key(r): r for r in _compared_load_rows(result)}
    return {(r.label, r.batch): r for r in result.rows}


def compare_results(base: BenchResult, new: BenchResult, base_source: str = "the first results",
                    new_source: str = "the second results") -> list[Comparison]:
    """A comparison for each row both results have, one run a side: within-run intervals, no verdicts."""
    return compare_runs([base], [new], base_source, new_source)


def compare_runs(bases: Sequence[BenchResult], news: Sequence[BenchResult], base_source: str = "the first results",
                 new_source: str = "the second results") -> list[Comparison]:
    """A comparison for each row every result has: between runs where each side has >= 2, else one run a side."""
    if len(bases) != len(news) and min(len(bases), len(news)) == 1:
        raise UsageError(f"{len(bases)} baseline result(s) against {len(news)}: a verdict needs at least two runs on "
                         "each side (each from its own `bench` process); give both sides repeated runs, or one each")
    families = {_family(r, base_source) for r in bases} | {_family(r, new_source) for r in news}
    if len(families) > 1:
        raise UsageError(f"{base_source} is a `bench {bases[0].kind}` result and {new_source} a `bench {news[0].kind}` "
                         "result: compare two inference results or two load results")
    keyed = [_keyed(r) for r in (*bases, *news)]
    baseline = "baseline"
    found = []
    for key in keyed[len(bases)]:
        if not all(key in rows for rows in keyed):
            continue
        base_rows, new_rows = [rows[key] for rows in keyed[:len(bases)]], [rows[key] for rows in keyed[len(bases):]]
        found.append(_between_runs(base_rows, new_rows, baseline) if len(bases) >= 2
                     else _one_run_a_side(base_rows[0], new_rows[0], baseline))
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
    """Regression: the slowdown's interval lies wholly above 1 + allowed; none decided without a verdict."""
    slowdown, interval = comparison.slowdown()
    if comparison.verdict == stats.NO_VERDICT or interval is None:
        return dataclasses.replace(comparison, allowed_slowdown=allowed, regression=None)
    regression = interval.low is not None and interval.low > 1 + allowed
    return dataclasses.replace(comparison, allowed_slowdown=allowed, regression=regression)


def _refuse_mixed(bases: Sequence[BenchResult], news: Sequence[BenchResult], base_sources: Sequence[str],
                  new_sources: Sequence[str], allow_different_environment: bool) -> list[str]:
    """UsageError if any result is of another model than the first baseline, or (unless allowed) from another
    environment; the environment differences allowed, for the notes."""
    reference, reference_source = bases[0], base_sources[0]
    differences: list[str] = []
    for result, source in zip((*bases[1:], *news), (*base_sources[1:], *new_sources)):
        mismatch = model_mismatch(reference, result)
        if mismatch:
            raise UsageError(f"{source} and the baseline {reference_source} are of different models ({mismatch}): "
                             "check against a baseline of the same model")
        found = environment_mismatches(reference.environment, result.environment)
        if found and not allow_different_environment:
            raise UsageError(f"{source} and the baseline {reference_source} come from different environments "
                             f"({'; '.join(found)}): measure both on one machine with the same packages, or pass "
                             "--allow-different-environment")
        differences.extend(d for d in found if d not in differences)
    return differences


def check(bases: Sequence[BenchResult], news: Sequence[BenchResult], *, max_slowdown: float,
          allow_different_environment: bool, base_sources: Sequence[str], new_sources: Sequence[str]) -> BenchResult:
    """`bench check`'s result: every shared row compared, each with its decision; UsageError to refuse.
    `bases`, `news`: each side's runs (>= 2 a side for a verdict), named by `base_sources`, `new_sources`."""
    differences = _refuse_mixed(bases, news, base_sources, new_sources, allow_different_environment)
    base_source, new_source = ", ".join(base_sources), ", ".join(new_sources)
    comparisons = compare_runs(bases, news, f"the baseline {base_source}", new_source)
    notes = [f"baseline {base_source} ({', '.join(r.created for r in bases)}), result {new_source} "
             f"({', '.join(r.created for r in news)})",
             f"regression: significantly slower by more than {max_slowdown:.1%}, i.e. the lower end of the "
             f"slowdown's 95% interval above {1 + max_slowdown:.3f} (at most 2.5% false regressions when the true "
             "slowdown is the allowance)",
             *(f"environment differs (allowed): {d}" for d in differences)]
    if len(news) < 2:
        notes.append("one run a side: the interval holds within-run variation only, so no verdict and no "
                     "REGRESSION can be given; for a verdict, repeat each side in its own process and pass them "
                     "all: bench check NEW1.json NEW2.json NEW3.json --baseline BASE1.json BASE2.json BASE3.json")
    new = news[-1]
    return BenchResult(kind="check", config={"result": new_source, "baseline": base_source,
                                             "results": list(new_sources), "baselines": list(base_sources),
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

