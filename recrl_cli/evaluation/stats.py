"""Statistics for study tables over seeds: Student-t confidence intervals and paired t-tests.

Inputs are short sequences of floats (one metric value per seed). NaN values propagate to every output on
purpose: a NaN metric means a run to look at, and silently dropping it would flatter the method.
"""

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps


def _check_level(level: float) -> None:
    """Reject confidence levels outside (0, 1) (ValueError)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level}")


def _half_width(sd: float, n: int, level: float) -> float:
    """Student-t CI half-width ``t_{(1+level)/2, n-1} · sd / √n``; NaN for n < 2."""
    if n < 2:
        return float("nan")
    return float(sps.t.ppf(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n))


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean of values [n] and the half-width of its two-sided Student-t confidence interval.

    ``half = t_{(1+level)/2, n-1} · s / √n`` with s the sample standard deviation (ddof = 1). Half-width NaN
    for n < 2, both NaN for n = 0 or if any value is NaN.
    """
    _check_level(level)
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    n = x.shape[0]
    if n == 0:
        return float("nan"), float("nan")
    sd = float(x.std(ddof=1)) if n >= 2 else float("nan")
    return float(x.mean()), _half_width(sd, n, level)


def paired_difference(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """Paired comparison of a [n] and b [n] (e.g. method vs baseline on the same seeds).

    Returns ``(mean d, CI half-width of mean d, two-sided p-value)`` for d_i = a_i - b_i, the p-value of the
    paired t-test ``t = mean(d) / (s_d / √n)`` with n-1 degrees of freedom (as ``scipy.stats.ttest_rel``).
    p is NaN for n < 2; with zero variance of d it is 0.0 for a nonzero mean and 1.0 for a zero mean (where
    the t statistic is ±inf or 0/0). NaN inputs give NaN outputs. Different lengths -> ValueError.
    """
    _check_level(level)
    xa = np.asarray(a, dtype=np.float64).reshape(-1)
    xb = np.asarray(b, dtype=np.float64).reshape(-1)
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples need equal lengths, got {xa.shape[0]} and {xb.shape[0]}")
    d = xa - xb
    n = d.shape[0]
    mean, half = mean_ci(d, level)
    if n < 2 or math.isnan(mean):
        return mean, half, float("nan")
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return mean, half, 0.0 if mean != 0.0 else 1.0
    t_stat = mean / (sd / math.sqrt(n))
    return mean, half, float(2.0 * sps.t.sf(abs(t_stat), n - 1))
