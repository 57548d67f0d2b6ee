"""The statistics over seeds against scipy as the oracle (skipped where scipy is not installed)."""
from __future__ import annotations

import math
import random

import pytest

from skipexp.core import stats

scipy_stats = pytest.importorskip("scipy.stats")

SAMPLES = [[0.1, 0.4], [1.0, 2.0, 4.0], [0.37, 0.35, 0.41, 0.36, 0.39], [5.0, -3.0, 2.5, 0.0, 1.0, 9.0, -2.0],
           [random.Random(s).gauss(0, 1) for s in range(30)]]


@pytest.mark.parametrize("df", [1, 2, 3.7, 4, 8, 30.5, 200])
def test_student_t_matches_scipy(df):
    for t in (0.0, 0.3, 1.0, 2.5, 7.0, 40.0):
        assert stats.t_sf2(t, df) == pytest.approx(2 * scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-15)
    for p in (0.6, 0.9, 0.975, 0.995):
        assert stats.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9)


@pytest.mark.parametrize("values", SAMPLES)
def test_summarize_matches_scipy(values):
    s = stats.summarize(values)
    lo, hi = scipy_stats.t.interval(0.95, len(values) - 1, loc=sum(values) / len(values),
                                    scale=scipy_stats.sem(values))
    assert s["n"] == len(values)
    assert s["mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)
    assert s["sd"] == pytest.approx(scipy_stats.tstd(values), rel=1e-12)
    assert (s["ci_low"], s["ci_high"]) == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))


@pytest.mark.parametrize("a,b", list(zip(SAMPLES, SAMPLES[1:] + SAMPLES[:1])))
def test_welch_matches_scipy(a, b):
    w = stats.welch(a, b)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert w["diff"] == pytest.approx(sum(a) / len(a) - sum(b) / len(b), rel=1e-12)
    assert w["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert (w["ci_low"], w["ci_high"]) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))


def test_too_few_values_give_no_interval():
    assert stats.summarize([]) == {"mean": None, "sd": None, "n": 0, "ci_low": None, "ci_high": None}
    assert stats.summarize([2.0]) == {"mean": 2.0, "sd": None, "n": 1, "ci_low": None, "ci_high": None}
    assert stats.welch([1.0], [1.0, 2.0]) == {"diff": -0.5, "ci_low": None, "ci_high": None, "p": None}
    assert stats.welch([1.0, 1.0], [2.0, 2.0]) == {"diff": -1.0, "ci_low": -1.0, "ci_high": -1.0, "p": None}
    assert math.isclose(stats.summarize([1.0, 1.0])["ci_low"], 1.0)
