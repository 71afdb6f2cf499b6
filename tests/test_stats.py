"""Tests of recrl_cli.evaluation.stats: t confidence intervals and paired t-tests vs scipy."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from recrl_cli.evaluation.stats import mean_ci, paired_difference


def test_mean_ci_hand_computed():
    # mean 2, s = 1, t_{0.975, 2} = 4.302653 -> half-width 4.302653 / √3 = 2.48414
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.302652729749464 / math.sqrt(3), rel=1e-12)
    assert half == pytest.approx(2.48414, abs=1e-5)


def test_mean_ci_level_and_scipy_interval():
    x = [0.71, 0.74, 0.69, 0.73, 0.75]
    mean, half = mean_ci(x, level=0.9)
    lo, hi = sps.t.interval(0.9, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert mean - half == pytest.approx(lo, rel=1e-12)
    assert mean + half == pytest.approx(hi, rel=1e-12)
    assert mean_ci(x, level=0.99)[1] > half


def test_mean_ci_small_samples_and_nan():
    assert mean_ci([0.5]) == (0.5, pytest.approx(float("nan"), nan_ok=True))
    assert math.isnan(mean_ci([0.5])[1])
    assert all(math.isnan(v) for v in mean_ci([]))
    assert all(math.isnan(v) for v in mean_ci([0.5, float("nan"), 0.7]))
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_difference_matches_ttest_rel(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.75, 0.01, size=7)
    b = a - rng.normal(0.004, 0.006, size=7)
    mean, half, p = paired_difference(a.tolist(), b.tolist())
    ref = sps.ttest_rel(a, b)
    assert p == pytest.approx(ref.pvalue, rel=1e-10)
    assert mean == pytest.approx(float(np.mean(a - b)), rel=1e-12)
    assert (mean, half) == pytest.approx(mean_ci((a - b).tolist()), rel=1e-12)


def test_paired_difference_degenerate_cases():
    assert paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])[2] == 0.0  # constant nonzero difference
    assert paired_difference([1.0, 2.0], [1.0, 2.0])[2] == 1.0  # identical samples
    assert math.isnan(paired_difference([1.0], [0.0])[2])
    assert all(math.isnan(v) for v in paired_difference([1.0, float("nan")], [0.0, 0.0]))
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0, 2.0], [1.0])
