"""Statistics over seeds with the standard library alone: a mean with its t-interval, and Welch's test.

A handful of seeds is the usual sample here, so intervals use Student's t, not the normal distribution
(with 3 seeds the 95 % quantile is 4.30, not 1.96). The t distribution's CDF is the regularized incomplete
beta function, computed by its continued fraction (Lentz's method, as in Numerical Recipes §6.4), and its
quantile by bisection on that CDF; ``tests/test_stats.py`` holds both to scipy's to 1e-9.

Every function takes finite floats; a caller filters out diverged seeds (nan) first, as the tables do.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

_EPS = 1e-15      # the continued fraction's relative tolerance
_TINY = 1e-300    # Lentz's guard against a zero denominator
_MAX_TERMS = 10_000


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2))."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for x={x}, a={a}, b={b}")


def incomplete_beta(x: float, a: float, b: float, y: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b) for 0 <= x <= 1 and a, b > 0.

    ``y`` is 1 - x where the caller knows it more exactly than the subtraction would give (x near 1).
    """
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    y = 1.0 - x if y is None else y
    if x == 0.0 or y == 0.0:
        return 0.0 if x == 0.0 else 1.0
    log_front = a * math.log(x) + b * math.log(y) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(y, b, a) / b


def t_sf2(t: float, df: float) -> float:
    """P(|T| > |t|) for Student's t with ``df`` degrees of freedom: the two-sided p-value of ``t``."""
    if math.isinf(t):
        return 0.0
    t2 = t * t
    # x = df / (df + t^2) and 1 - x both computed directly: for small t, 1 - x would cancel to nothing
    return incomplete_beta(df / (df + t2), df / 2.0, 0.5, y=t2 / (df + t2))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom (not necessarily whole)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = t_sf2(t, df) / 2.0
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The quantile of Student's t: the t with P(T <= t) = p, for 0 < p < 1."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    # the two-sided tail beyond t: 1 - p is exact for p > 0.5, while 1 - (1 - p) would round a small p
    target = 2.0 * min(p, 1.0 - p)
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > target:
        lo, hi = hi, hi * 2.0
    for _ in range(200):   # bisection: the tail falls monotonically in t
        mid = 0.5 * (lo + hi)
        if t_sf2(mid, df) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi) if p > 0.5 else -0.5 * (lo + hi)


def _mean_var(values: Sequence[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = math.fsum(values) / n
    return mean, (math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else None)


def summarize(values: Sequence[float], level: float = 0.95) -> dict:
    """mean, sd (sample, n - 1), n and the ``level`` t-interval of the mean (ci_low, ci_high).

    With one value sd and the interval are None; with none, everything but n is.
    """
    n = len(values)
    if n == 0:
        return {"mean": None, "sd": None, "n": 0, "ci_low": None, "ci_high": None}
    mean, var = _mean_var([float(v) for v in values])
    if var is None:
        return {"mean": mean, "sd": None, "n": 1, "ci_low": None, "ci_high": None}
    half = t_ppf(0.5 + level / 2.0, n - 1) * math.sqrt(var / n)
    return {"mean": mean, "sd": math.sqrt(var), "n": n, "ci_low": mean - half, "ci_high": mean + half}


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """Welch's unequal-variance t-test of mean(a) - mean(b): ``diff``, its ``level`` interval (ci_low,
    ci_high, on the Welch-Satterthwaite degrees of freedom ``df``) and the two-sided p-value ``p``.

    Needs two values on each side (else everything but diff is None). Where both sides have no spread the
    difference has no standard error: the interval is the difference itself and p is None.
    """
    if not a or not b:
        raise ValueError("welch needs values on both sides")
    (ma, va), (mb, vb) = _mean_var([float(v) for v in a]), _mean_var([float(v) for v in b])
    diff = ma - mb
    out = {"diff": diff, "ci_low": None, "ci_high": None, "p": None, "df": None}
    if va is None or vb is None:
        return out
    sa, sb = va / len(a), vb / len(b)
    se2 = sa + sb
    if se2 == 0:
        return {**out, "ci_low": diff, "ci_high": diff}
    df = se2 ** 2 / (sa ** 2 / (len(a) - 1) + sb ** 2 / (len(b) - 1))
    se = math.sqrt(se2)
    half = t_ppf(0.5 + level / 2.0, df) * se
    return {"diff": diff, "ci_low": diff - half, "ci_high": diff + half, "p": t_sf2(diff / se, df), "df": df}
