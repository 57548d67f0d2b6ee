"""Statistics over seeds, standard library only: a mean with its 95 % confidence interval, and Welch's t-test.

Both use Student's t distribution (not the normal approximation, which is too narrow at 3-5 seeds): its
CDF through the regularised incomplete beta function, its quantile by bisection on the CDF.

- :func:`summarize` ``(values) -> {mean, sd, n, ci_low, ci_high}``: the sample mean, the sample standard
  deviation (n - 1), n, and the 95 % confidence interval of the mean, mean ± t(0.975, n - 1) sd / sqrt(n).
  With one value sd and the interval are None; with none, everything but n is None.
- :func:`welch` ``(a, b) -> {diff, ci_low, ci_high, p}``: the difference of the means, mean(a) - mean(b),
  its 95 % confidence interval with Welch-Satterthwaite degrees of freedom, and the two-sided p-value of
  Welch's t-test (unequal variances). None where either side has fewer than two values, and the interval
  collapses to the difference (p None) where both sides have no spread at all.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

LEVEL = 0.95   # the confidence level of every interval


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability P(|T| >= |t|) of Student's t with ``df`` degrees of freedom (df may be
    fractional, as Welch's are)."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (0.5 < p < 1), by bisection on :func:`t_sf2` to 1e-12."""
    target = 2.0 * (1.0 - p)   # the two-sided tail beyond the quantile
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_sf2(mid, df) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def _mean_var(values: Sequence[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = math.fsum(values) / n
    return mean, (math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else None)


def summarize(values: Sequence[float]) -> dict:
    """Mean, sample sd, n and the 95 % confidence interval of the mean (see the module doc)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"mean": None, "sd": None, "n": 0, "ci_low": None, "ci_high": None}
    mean, var = _mean_var(values)
    if var is None:
        return {"mean": mean, "sd": None, "n": 1, "ci_low": None, "ci_high": None}
    sd = math.sqrt(var)
    half = t_quantile((1 + LEVEL) / 2, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "n": n, "ci_low": mean - half, "ci_high": mean + half}


def welch(a: Sequence[float], b: Sequence[float]) -> dict:
    """mean(a) - mean(b), its 95 % confidence interval and Welch's two-sided p (see the module doc)."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        return {"diff": None, "ci_low": None, "ci_high": None, "p": None}
    (ma, va), (mb, vb) = _mean_var(a), _mean_var(b)
    diff = ma - mb
    if va is None or vb is None:
        return {"diff": diff, "ci_low": None, "ci_high": None, "p": None}
    sa, sb = va / len(a), vb / len(b)
    se2 = sa + sb
    if se2 == 0.0:
        return {"diff": diff, "ci_low": diff, "ci_high": diff, "p": None}
    df = se2 ** 2 / (sa ** 2 / (len(a) - 1) + sb ** 2 / (len(b) - 1))
    se = math.sqrt(se2)
    half = t_quantile((1 + LEVEL) / 2, df) * se
    return {"diff": diff, "ci_low": diff - half, "ci_high": diff + half, "p": t_sf2(diff / se, df)}
