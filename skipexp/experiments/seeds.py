"""A comparison member's figures over its seeds: the mean and min-max of every summary field, the 95 %
confidence interval of the mean, and each member's difference from the baseline member."""
from __future__ import annotations

import math

from skipexp.core import stats
from skipexp.rundir import files
from skipexp.rundir import summary as summary_mod

# Summary fields averaged over seeds; each also gets its [min, max] in ``spread``.
MEAN_FIELDS = tuple(f for f in files.SUMMARY_FIELDS if f not in ("status", "diverged_at_step"))


def mean_summary(name: str, per_seed: list[dict]) -> dict:
    """A member's summary over its seeds: the mean of every numeric field, its min-max in ``spread``, and for
    :data:`CI_FIELDS` the 95 % confidence interval of the mean over the seeds that did not diverge in ``ci``
    (with their number in ``n``).

    A field is averaged over the seeds that have it as a number (a diverged seed's nan poisons the mean,
    on purpose: the table should not hide it). ``status`` is the common status, else a count per status.
    """
    statuses = [x.get("status", "unknown") for x in per_seed]
    counts = {st: statuses.count(st) for st in dict.fromkeys(statuses)}
    out: dict = {"name": name, "seeds": len(per_seed),
                 "status": statuses[0] if len(counts) == 1 else ", ".join(f"{n} {st}" for st, n in counts.items())}
    diverged = [x["diverged_at_step"] for x in per_seed if x.get("diverged_at_step") is not None]
    if diverged:
        out["diverged_at_step"] = min(diverged)
    spread: dict[str, list[float]] = {}
    for f in MEAN_FIELDS:
        vals = summary_mod.numbers(per_seed, f)
        if vals:
            d = summary_mod.describe(vals)
            out[f] = d["mean"]
            spread[f] = [d["min"], d["max"]]
    out["spread"] = spread
    out["ci"], out["n"] = {}, {}
    for f in CI_FIELDS:
        got = stats.summarize(healthy(per_seed, f))
        out["n"][f] = got["n"]
        if got["ci_low"] is not None:
            out["ci"][f] = [got["ci_low"], got["ci_high"]]
    return out


# Fields whose 95 % CI a comparison over seeds gives, and whose difference from the baseline member.
CI_FIELDS = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc", "final_val_loss",
             "final_val_acc")


def healthy(per_seed: list[dict], field: str) -> list[float]:
    """The finite values of ``field`` over the seeds that did not diverge."""
    return [v for x in per_seed if x.get("status") != "diverged"
            for v in summary_mod.numbers([x], field) if math.isfinite(v)]


def against_baseline(s: dict) -> None:
    """Each member's ``against_baseline``: per field of :data:`CI_FIELDS`, mean(member) - mean(baseline) over
    their seeds that did not diverge, with its 95 % CI and Welch's p (:func:`skipexp.core.stats.welch`)."""
    members = s.get("members", [])
    base = next((m for m in members if m["name"] == s.get("baseline")), members[0] if members else None)
    if base is None:
        return
    s["baseline"] = base["name"]
    theirs = base.get("seed_summaries") or [base.get("summary", {})]
    for m in members:
        if m is base:
            m.pop("against_baseline", None)
            continue
        mine = m.get("seed_summaries") or [m.get("summary", {})]
        m["against_baseline"] = {f: stats.welch(healthy(mine, f), healthy(theirs, f)) for f in CI_FIELDS
                                 if healthy(mine, f) and healthy(theirs, f)}
