"""The calibration suite (bench/calibration.py) at 1,000 trials per case: every interval and verdict within its
bounds, and every method it replaced failing the same bounds (the check can fail).

Seeded: the table is the same on every machine and every run, so a bound missed is a change in bench/stats.py
or bench/check.py, not chance.
"""
import dataclasses
import subprocess
import sys

import pytest

from bench import calibration

TRIALS = 1000


@pytest.fixture(scope="module")
def rows() -> list[calibration.Result]:
    return calibration.table(TRIALS, seed=0)


def test_every_interval_and_verdict_holds_its_bound(rows):
    assert calibration.failures(rows) == []
    held = [r for r in rows if r.bound is not None]
    assert all(r.trials == TRIALS for r in rows) and len(held) >= 40


def test_the_table_has_every_case_the_acceptance_names(rows):
    cases = {r.case for r in rows}
    for name in ("iid normal", "iid lognormal", "AR(1) phi 0.5", "AR(1) phi 0.8", "AR(1) phi 0.9", "M/M/1 load 0.6",
                 "M/M/1 load 0.8", "heavy tails (1 + Lomax 3)", "3 rounds, 3% drift"):
        assert name in cases
    measures = {(r.method.split(":")[0], r.measure) for r in rows}
    for needed in [("p99", "coverage"), ("check", "false REGRESSION at 5%"), ("check", "power (10% slower)"),
                   ("compare", "false verdicts"), ("peak QPS", "false REGRESSION at 5%")]:
        assert needed in measures


def test_the_old_iid_order_statistic_interval_fails_on_ar1(rows):
    """The check that can fail: the independent-values interval, held to the same floor, misses it on AR(1) data."""
    old = {r.case: dataclasses.replace(r, bound=f">= {calibration.COVERAGE_FLOOR:.0%}") for r in rows
           if r.method == "p90: old, iid order statistics"}
    assert old["AR(1) phi 0.8"].missed and old["AR(1) phi 0.8"].value < 0.75
    assert old["AR(1) phi 0.5"].missed and old["M/M/1 load 0.8"].missed
    assert not old["iid normal"].missed  # on independent values it was right


@pytest.mark.parametrize("method, measure", [
    ("old: compare, fixed order (A B), paired t", "false verdicts"),
    ("old: verdict from one run a side (within-run interval)", "false verdicts"),
    ("old: --until-stable 2, interval of the deciding runs", "coverage"),
    ("old: peak QPS as a point, one run a side", "false REGRESSION at 5%"),
])
def test_every_replaced_method_misses_the_bound_its_replacement_holds(rows, method, measure):
    old = [r for r in rows if r.method == method and r.measure == measure]
    bound = f">= {calibration.COVERAGE_FLOOR:.0%}" if measure == "coverage" else f"<= {calibration.FALSE_CEILING:.0%}"
    assert old and any(dataclasses.replace(r, bound=bound).missed for r in old)


def test_the_ceiling_allows_the_simulations_own_error_and_no_more():
    def judged(value: float, trials: int) -> bool:
        return calibration.Result("m", "c", "false verdicts", value, trials, "<= 5%").missed
    assert not judged(0.055, 2000) and judged(0.061, 2000) and judged(0.07, 1000)
    assert calibration.Result("m", "c", "coverage", 0.929, 2000, ">= 93%").missed


def test_the_command_prints_the_table_and_refuses_too_few_trials(capsys):
    status = calibration.main(["--trials", "20", "--seed", "1"])
    out = capsys.readouterr().out
    assert out.startswith("| method | case | measure | value | bound |")
    assert f"{len(calibration.table(20, 1))} rows, 20 trials each" in out and status in (0, 1)
    refused = subprocess.run([sys.executable, "-m", "bench.calibration", "--trials", "5"], capture_output=True,
                             text=True)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == "python -m bench.calibration: error: --trials 5: give at least 10 (1000 for the bounds " \
                             "to mean anything)\n"
