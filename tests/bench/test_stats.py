"""Statistics against known distributions: each 95% interval must cover the true value in about 95% of
seeded repeated trials; hand-computed order-statistic ranks; verdicts; the instability warning's causes.
(tests/bench/test_calibration.py holds every interval to the calibration suite's bounds.)

Coverage bands: with T trials the observed share has a standard deviation of sqrt(.95 x .05 / T)
(0.007 at T = 1000, 0.015 at T = 200); each band is about 3 of those around the stated 95%, and
open upwards for the quantile interval, which is conservative on independent values by construction
(never narrower than the exact binomial ranks).
"""
import math

import numpy as np
import pytest

from bench import stats
from bench.stats import Comparison, Interval


def coverage(trials: int, seed: int, make_interval, truth: float) -> float:
    rng = np.random.default_rng(seed)
    return sum(make_interval(rng).contains(truth) for _ in range(trials)) / trials


@pytest.mark.parametrize("q, n", [(0.5, 50), (0.9, 200), (0.99, 1000)])
def test_percentile_interval_covers_the_true_quantile(q, n):
    truth = -math.log(1 - q)  # the q-quantile of Exponential(1)
    share = coverage(1000, 1, lambda rng: stats.percentile_interval(rng.exponential(1.0, n), q), truth)
    assert share >= 0.945


def test_order_statistic_ranks_by_hand():
    # n = 10, median: B(k) = P(Binomial(10, 1/2) <= k); B(1) = 11/1024 <= 0.025 < B(2) = 56/1024,
    # so l = 2; B(7) = 968/1024 < 0.975 <= B(8) = 1013/1024, so u = 9: coverage B(8) - B(1) = 1002/1024.
    assert stats.order_statistic_ranks(10, 0.5) == (2, 9)
    # n = 4: B(0) = 1/16 > 0.025 and B(3) = 15/16 < 0.975: neither side can be bounded.
    assert stats.order_statistic_ranks(4, 0.5) == (None, None)
    # p99 from 100 runs: P(all 100 below the p99) = 0.99^100 = 0.366 < 0.975: no upper bound.
    assert stats.order_statistic_ranks(100, 0.99)[1] is None
    values = np.arange(10.0, 0.0, -1.0)
    assert stats.iid_quantile_bounds(values, 0.5) == (2.0, 9.0)
    # The same values as a series that only falls: every value below the median comes after every one above
    # it, the batches of the indicator disagree completely, and no rank of 10 bounds the median.
    assert stats.percentile_interval(values, 0.5) == Interval(None, None)


def test_percentile_interval_widens_for_a_correlated_series_where_the_iid_ranks_fail():
    truth = 10 + math.sqrt(1 / (1 - 0.8 ** 2)) * 1.2815515655446004  # p90 of the stationary AR(1), phi 0.8
    widened = coverage(400, 8, lambda rng: stats.percentile_interval(ar1(rng, 652, 0.8), 0.9), truth)
    plain = coverage(400, 8, lambda rng: Interval.of(*stats.iid_quantile_bounds(ar1(rng, 652, 0.8), 0.9)), truth)
    assert widened >= 0.93 and plain < 0.75


def test_autocorrelation_time_and_the_batches_it_chooses():
    rng = np.random.default_rng(9)
    # tau of an AR(1) is (1 + phi) / (1 - phi): 9 at phi 0.8; 1 for independent values.
    assert np.median(stats.autocorrelation_time(np.stack([ar1(rng, 5000, 0.8) for _ in range(20)]))) == \
        pytest.approx(9.0, rel=0.2)
    assert np.median(stats.autocorrelation_time(rng.normal(size=(20, 5000)))) == pytest.approx(1.0, abs=0.15)
    assert stats.chosen_batches(rng.normal(size=1000)) == stats.BATCHES
    assert stats.chosen_batches(ar1(rng, 1000, 0.9)) < 5       # 25 autocorrelation times (~19 each) per batch
    assert stats.autocorrelation_time(np.ones(50)) == 1.0      # a constant series: nothing to correlate


def test_batch_means_covers_the_mean_of_independent_times():
    mu, sigma = -6.0, 0.5
    truth = math.exp(mu + sigma ** 2 / 2)  # mean of the lognormal
    share = coverage(1000, 2, lambda rng: stats.batch_means_interval(rng.lognormal(mu, sigma, 100)), truth)
    assert 0.93 <= share <= 0.97


def ar1(rng, n: int, phi: float) -> np.ndarray:
    """Mean-10 AR(1) series: slow and fast stretches, as on a shared machine."""
    noise = rng.normal(size=n)
    series = np.empty(n)
    series[0] = noise[0] / math.sqrt(1 - phi ** 2)
    for i in range(1, n):
        series[i] = phi * series[i - 1] + noise[i]
    return 10 + series


def test_batch_means_holds_for_correlated_times_where_the_plain_t_interval_fails():
    batch = coverage(400, 3, lambda rng: stats.batch_means_interval(ar1(rng, 400, 0.7)), 10.0)
    plain = coverage(400, 3, lambda rng: stats.mean_interval(ar1(rng, 400, 0.7)), 10.0)
    assert 0.92 <= batch <= 0.98
    assert plain < 0.75  # what the batches are for: independent-value intervals are far too narrow here


def test_throughput_interval_is_the_time_interval_inverted():
    times = [0.010, 0.012, 0.011, 0.009, 0.010, 0.013, 0.011, 0.010, 0.012, 0.009]
    low_time, high_time = stats.batch_means_interval(times).low, stats.batch_means_interval(times).high
    interval = stats.throughput_interval(times, samples_per_run=8)
    assert (interval.low, interval.high) == pytest.approx((8 / high_time, 8 / low_time))
    assert stats.throughput_interval([0.01, 0.01, 0.01], 1) is None  # fewer than 2 batches of 2


def test_rate_interval_covers_a_poisson_rate():
    def interval(rng):
        arrivals = np.cumsum(rng.exponential(1 / 200, size=2000))
        return stats.rate_interval(arrivals[arrivals < 5.0], 1, 5.0)
    assert 0.93 <= coverage(1000, 4, interval, 200.0) <= 0.97


def test_mean_ratio_covers_the_true_ratio_at_ten_values_a_side():
    """10 window rates a side: Welch's t on batch means, where a block bootstrap covered 89.5%."""
    def interval(rng):
        base, new = rng.lognormal(0, 0.3, 10), 1.1 * rng.lognormal(0, 0.3, 10)
        return stats.mean_ratio(base, new)[1]
    assert 0.93 <= coverage(1000, 5, interval, 1.1) <= 0.99


def test_mean_ratio_by_hand():
    ratio, interval = stats.mean_ratio([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert ratio == pytest.approx(2.0) and interval.low < 2.0 < interval.high
    with pytest.raises(ValueError, match="at least 4 values"):
        stats.mean_ratio([1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0])


def test_quantile_ratio_covers_the_true_ratio():
    def interval(rng):
        base, new = rng.exponential(1.0, 400), 0.8 * rng.exponential(1.0, 400)
        return stats.quantile_ratio(base, new, 0.9)[1]
    assert coverage(400, 6, interval, 0.8) >= 0.93
    estimate, unbounded = stats.quantile_ratio(np.arange(1.0, 21.0), np.arange(2.0, 42.0, 2.0), 0.99)
    assert estimate == 2.0 and unbounded == Interval(None, None)  # p99 of 20 values: no upper bound


def test_runs_ratio_covers_and_its_resolution_widens_agreeing_runs():
    def interval(rng):
        base, new = rng.lognormal(0, 0.05, 3), 1.2 * rng.lognormal(0, 0.05, 3)
        return stats.runs_ratio(base, new)[1]
    assert 0.93 <= coverage(1000, 10, interval, 1.2) <= 0.97
    # Peaks that agree exactly (each only known to within a 5% step) prove nothing about a 2% difference.
    ratio, sharp = stats.runs_ratio([100.0, 100.0, 100.0], [102.0, 102.0, 102.0])
    assert ratio == pytest.approx(1.02) and sharp.low == pytest.approx(1.02)
    assert stats.runs_ratio([100.0, 100.0, 100.0], [102.0, 102.0, 102.0], resolution=0.05)[1].contains(1.0)
    with pytest.raises(ValueError, match="two runs"):
        stats.runs_ratio([1.0], [1.0, 2.0])


def test_paired_ratio_covers_the_true_ratio_under_load_shared_by_both_sides():
    def interval(rng):
        load = rng.lognormal(0, 0.3, 5)  # each round's machine load, the same for both engines
        base, new = load * rng.lognormal(0, 0.02, 5), 1.2 * load * rng.lognormal(0, 0.02, 5)
        return stats.paired_ratio(base, new)[1]
    assert 0.93 <= coverage(1000, 7, interval, 1.2) <= 0.97


def test_paired_ratio_by_hand_and_refuses_one_round():
    ratio, interval = stats.paired_ratio([100.0, 200.0], [150.0, 300.0])
    assert ratio == pytest.approx(1.5) and interval.low == pytest.approx(1.5) and interval.high == pytest.approx(1.5)
    with pytest.raises(ValueError, match="two rounds"):
        stats.paired_ratio([1.0], [2.0])
    rows = np.array([[100.0, 200.0, 150.0], [10.0, 12.0, 11.0]])
    ratios, lows, highs = stats.paired_ratio_bounds(rows, rows * np.array([[1.1, 1.2, 1.0], [0.9, 1.0, 0.8]]))
    for index in range(2):  # the array form agrees with the one-series form, row by row
        one = stats.paired_ratio(rows[index], rows[index] * [[1.1, 1.2, 1.0], [0.9, 1.0, 0.8]][index])
        assert (ratios[index], lows[index], highs[index]) == pytest.approx((one[0], one[1].low, one[1].high))


@pytest.mark.parametrize("interval, higher_is_better, expected", [
    (Interval(1.02, 1.10), True, stats.FASTER), (Interval(1.02, 1.10), False, stats.SLOWER),
    (Interval(0.90, 0.98), True, stats.SLOWER), (Interval(0.90, 0.98), False, stats.FASTER),
    (Interval(0.95, 1.05), True, stats.SAME), (Interval(None, 0.99), True, stats.SLOWER),
    (Interval(0.99, None), True, stats.SAME),
])
def test_verdict_is_where_the_interval_lies_relative_to_one(interval, higher_is_better, expected):
    assert stats.verdict(interval, higher_is_better) == expected


def test_interval_helpers():
    assert Interval(90.0, 110.0).relative_half_width(100.0) == pytest.approx(0.10)
    assert Interval(None, 110.0).relative_half_width(100.0) == math.inf
    assert Interval(2.0, 4.0).inverted(8.0) == Interval(2.0, 4.0)
    assert Interval(-1.0, 4.0).inverted() == Interval(0.25, None)
    assert Interval.from_json(Interval(1.0, None).to_json()) == Interval(1.0, None)
    assert Interval.of(np.nan, 2.0) == Interval(None, 2.0) and Interval.of(1.0, np.inf) == Interval(1.0, None)


def test_comparison_slowdown_in_time_terms_and_json():
    faster = Comparison("new", "base", "samples/s", True, 100.0, 125.0, 1.25, Interval(1.2, 1.3), stats.FASTER, "t")
    factor, interval = faster.slowdown()
    assert factor == pytest.approx(0.8) and interval == Interval(1 / 1.3, 1 / 1.2)
    slower = Comparison("new", "base", "p90 latency ms", False, 10.0, 12.0, 1.2, Interval(1.1, 1.3), stats.SLOWER, "b")
    assert slower.slowdown() == (1.2, Interval(1.1, 1.3))
    assert Comparison.from_json(slower.to_json()) == slower


def test_coefficient_of_variation():
    assert stats.coefficient_of_variation([1.0, 3.0]) == pytest.approx(math.sqrt(2) / 2)
    assert stats.coefficient_of_variation([5.0]) == 0.0


@pytest.mark.parametrize("load, halves, cause", [
    (6.0, (1.0, 1.0), "the machine is busy (load average 6.0 on 2 usable CPUs)"),
    (0.5, (1.0, 1.3), "the runs drifted (+30% from the first half to the second)"),
    (None, (1.0, 1.05), "scattered slow runs"),
])
def test_variation_warning_names_the_likely_cause_and_a_fix(load, halves, cause):
    warning = stats.variation_warning("m batch 1", 0.25, load_average=load, cpus=2, first_half_mean=halves[0],
                                      second_half_mean=halves[1])
    assert warning.startswith("m batch 1: run times vary a lot (coefficient of variation 25.0%, above 10%)")
    assert cause in warning and "fix: " in warning
    assert stats.variation_warning("m", 0.05, load_average=9.0, cpus=2, first_half_mean=1,
                                   second_half_mean=2) is None


def test_series_variation_warning_reads_the_halves_in_order():
    drifting = [1.0] * 10 + [2.0] * 10
    assert "drifted (+100%" in stats.series_variation_warning("x", drifting, load_average=0.1, cpus=2)
    assert stats.series_variation_warning("x", [1.0] * 20, load_average=9.0, cpus=2) is None
