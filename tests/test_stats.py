"""skipexp.core.stats against scipy as the oracle: Student's t, the t-interval of a mean, Welch's test."""
import math
import random

import pytest

from skipexp.core import stats

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the oracle here (pip install scipy)")

DFS = (1, 2, 3, 4.5, 9, 29, 100, 1e4)


@pytest.mark.parametrize("df", DFS)
def test_t_cdf_and_quantile_equal_scipy(df):
    for t in (-40.0, -6.3, -2.0, -0.4, 0.0, 1e-6, 0.7, 2.1, 4.3, 12.7, 300.0):
        assert stats.t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), rel=1e-9, abs=1e-15), t
    for p in (1e-9, 0.001, 0.025, 0.2, 0.5, 0.6, 0.975, 0.995, 1 - 1e-9):
        assert stats.t_ppf(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9, abs=1e-12), p


def test_incomplete_beta_equals_scipy():
    from scipy.special import betainc

    for a, b in ((0.5, 0.5), (2.0, 3.0), (50.0, 0.5), (0.5, 5000.0)):
        for x in (0.0, 1e-8, 0.1, 0.5, 0.93, 1 - 1e-9, 1.0):
            assert stats.incomplete_beta(x, a, b) == pytest.approx(betainc(a, b, x), rel=1e-9, abs=1e-15)


def test_summarize_is_the_t_interval_of_the_mean():
    rng = random.Random(0)
    for n in (2, 3, 5, 30):
        xs = [rng.gauss(1.0, 0.3) for _ in range(n)]
        got = stats.summarize(xs)
        sem = scipy_stats.sem(xs)
        lo, hi = scipy_stats.t.interval(0.95, n - 1, loc=sum(xs) / n, scale=sem)
        assert got["n"] == n
        assert got["mean"] == pytest.approx(sum(xs) / n, rel=1e-12)
        assert got["sd"] == pytest.approx(scipy_stats.tstd(xs), rel=1e-12)
        assert (got["ci_low"], got["ci_high"]) == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))
    # three seeds: the quantile is 4.30, far wider than the normal's 1.96
    got = stats.summarize([1.0, 2.0, 3.0])
    assert got["ci_high"] - got["mean"] == pytest.approx(4.302652729749464 / math.sqrt(3), rel=1e-9)


def test_summarize_with_one_value_or_none():
    assert stats.summarize([2.5]) == {"mean": 2.5, "sd": None, "n": 1, "ci_low": None, "ci_high": None}
    assert stats.summarize([]) == {"mean": None, "sd": None, "n": 0, "ci_low": None, "ci_high": None}
    assert stats.summarize([0.5, 0.5, 0.5])["ci_low"] == 0.5  # no spread: the interval is the mean


def test_welch_equals_scipy():
    rng = random.Random(1)
    for na, nb, shift in ((2, 2, 0.0), (3, 5, 0.4), (10, 4, -1.0), (3, 3, 2.0)):
        a = [rng.gauss(0.0, 1.0) for _ in range(na)]
        b = [rng.gauss(shift, 2.0) for _ in range(nb)]
        got = stats.welch(a, b)
        ref = scipy_stats.ttest_ind(a, b, equal_var=False)
        assert got["diff"] == pytest.approx(sum(a) / na - sum(b) / nb, rel=1e-12)
        assert got["p"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert got["df"] == pytest.approx(ref.df, rel=1e-9)
        ci = ref.confidence_interval(0.95)
        assert (got["ci_low"], got["ci_high"]) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))


def test_welch_without_spread_or_with_one_value():
    assert stats.welch([1.0], [2.0, 3.0]) == {"diff": -1.5, "ci_low": None, "ci_high": None, "p": None, "df": None}
    got = stats.welch([1.0, 1.0], [0.5, 0.5])
    assert (got["diff"], got["ci_low"], got["ci_high"], got["p"]) == (0.5, 0.5, 0.5, None)
    with pytest.raises(ValueError):
        stats.welch([], [1.0])
