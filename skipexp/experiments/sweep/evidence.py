"""What a sweep concludes over seeds: the value of an axis chosen per configuration on held-out data, and
the differences between configurations with their 95 % confidence intervals and Welch p-values.

A sweep file may say::

    select:                    # choose one axis per configuration on the validation split (never the test set)
      key: train.lr            # the axis chosen: every other combination of values gets its best value of it
      by: final_val_loss       # the mean over seeds of this summary field decides (_loss: lowest, _acc: highest)
      seeds: [0]               # optional: only these seeds decide, and the others train only the chosen values
    baseline:                  # what differences are taken against
      model.skip.kind: none

A configuration is a combination of every swept value but the seed; an *arm* is a configuration without
the selected key (with ``select``, each arm keeps only its chosen configuration). Differences compare an
arm with its partner: the arm that has the baseline's values at the baseline's keys and the arm's own
values elsewhere; without a baseline, the arm one step back along the first numeric axis (depth 4 against
depth 2, at the same kind); without a numeric axis, the arm at the first value of the first axis.

With ``select.seeds`` the sweep runs in two stages: first every configuration at the deciding seeds, then
the other seeds at each arm's chosen value only (:func:`runnable`); a point that the choice leaves out is
``not chosen``, never trained. The choice is made on the deciding seeds alone, so every configuration of an
arm is judged on the same seeds; the chosen one's statistics are over all its seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from skipexp.core import stats
from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import short_key
from skipexp.core.fmt import value as format_value
from skipexp.rundir import files

# Summary fields a selection may be made on: measured on the validation split, or on the training data (for an
# optimisation claim), never on the test set that the comparison then reports.
SELECT_BY = ("final_val_loss", "best_val_loss", "final_val_acc", "best_val_acc", "final_train_loss",
             "final_train_acc")
# Fields whose differences sweep tables and differences.csv give.
DIFF_FIELDS = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc")
SMALL_N = 5   # fewer seeds than this: the intervals are wide and the p-values rough; tables say so
NOT_RUN = files.NOT_RUN     # grid points without a result: never trained
NOT_CHOSEN = "not chosen"   # a point a staged selection leaves out (select.seeds)


@dataclass(frozen=True)
class Selection:
    key: str   # the grid key chosen per configuration
    by: str    # the summary field that decides (one of SELECT_BY)
    seeds: tuple | None = None   # only these seeds decide; the others train only the chosen values (None: all)

    def decides(self, seed: Any) -> bool:
        """Whether a point of this seed takes part in the choice (and so trains at every value)."""
        return self.seeds is None or format_value(seed) in {format_value(s) for s in self.seeds}

    def to_dict(self) -> dict:
        """The sweep file's ``select``, as read."""
        return {"key": self.key, "by": self.by, **({"seeds": list(self.seeds)} if self.seeds is not None else {})}

    @property
    def lower_is_better(self) -> bool:
        return self.by.endswith("_loss")


def read_select(raw: Any, grid: dict[str, list], *, file: str | None) -> Selection | None:
    """A sweep file's ``select``, checked against its grid."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not {"key", "by"} <= set(raw) <= {"key", "by", "seeds"}:
        raise SkipexpError("must be a mapping with key (the grid key to choose), by (the field that decides) and "
                           "optionally seeds (those that decide), e.g. {key: train.lr, by: final_val_loss}",
                           file=file, key="select")
    key, by = raw["key"], raw["by"]
    if key == "seed" or key not in grid:
        choices = ", ".join(k for k in grid if k != "seed")
        raise SkipexpError(f"{key!r} is not a swept key to choose; choose from {choices}", file=file, key="select.key")
    if by not in SELECT_BY:
        raise SkipexpError(f"{by!r} cannot decide: choose on the validation split or the training data, never the "
                           f"test set: one of {', '.join(SELECT_BY)}", file=file, key="select.by")
    return Selection(key, by, _deciding_seeds(raw.get("seeds"), grid, file))


def _deciding_seeds(raw: Any, grid: dict[str, list], file: str | None) -> tuple | None:
    """``select.seeds``: a non-empty list of swept seeds, fewer than all of them (all of them is the default)."""
    if raw is None:
        return None
    swept = [format_value(s) for s in grid.get("seed", [])]
    if len(swept) < 2:
        raise SkipexpError("needs seeds swept in the grid (seed: [0, 1, 2, ...]): the other seeds train only the "
                           "chosen values", file=file, key="select.seeds")
    if not isinstance(raw, list) or not raw or len(raw) >= len(swept):
        raise SkipexpError(f"must be a list of some of the swept seeds ({', '.join(swept)}), not all of them",
                           file=file, key="select.seeds")
    for s in raw:
        if format_value(s) not in swept:
            raise SkipexpError(f"{format_value(s)} is not a swept seed ({', '.join(swept)})", file=file,
                               key="select.seeds")
    return tuple(raw)


def read_baseline(raw: Any, grid: dict[str, list], select: Selection | None, *, file: str | None) -> dict | None:
    """A sweep file's ``baseline``: grid keys and one of each one's values."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise SkipexpError("must be a mapping of swept keys to one of their values, e.g. {model.skip.kind: none}",
                           file=file, key="baseline")
    for k, v in raw.items():
        if k == "seed" or k not in grid or (select is not None and k == select.key):
            raise SkipexpError("is not a swept key a baseline can fix (seed and the selected key cannot be)",
                               file=file, key=f"baseline.{k}")
        if format_value(v) not in [format_value(x) for x in grid[k]]:
            raise SkipexpError(f"{format_value(v)} is not one of its swept values "
                               f"({', '.join(format_value(x) for x in grid[k])})", file=file, key=f"baseline.{k}")
    return dict(raw)


def healthy(points: list[dict], field: str) -> list[float]:
    """The finite values of ``field`` over the seeds that ran and did not diverge."""
    out = []
    for p in points:
        v = p.get(field)
        if p.get("status") in ("diverged", *NOT_RUN) or not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if math.isfinite(v):
            out.append(float(v))
    return out


def choose(configs: list[tuple[dict, list[dict]]], select: Selection | None) -> list[bool]:
    """Which configurations are chosen: per combination of the other values, the one whose mean of
    ``select.by`` over its deciding seeds (all, or ``select.seeds``) is best; a configuration with fewer diverged
    seeds always wins (a diverged seed has no value, and the mean of the rest would flatter it); ties go to the
    first in grid order. Without a selection every configuration is chosen."""
    if select is None:
        return [True] * len(configs)
    best: dict[tuple, tuple[tuple, int]] = {}
    for i, (values, points) in enumerate(configs):
        arm = tuple(format_value(v) for k, v in values.items() if k != select.key)
        points = [p for p in points if select.decides(p.get("seed"))]
        vals = healthy(points, select.by)
        mean = math.fsum(vals) / len(vals) if vals else math.inf
        lost = sum(p.get("status") == "diverged" for p in points) + (not vals)
        score = (lost, mean if select.lower_is_better else -mean)
        if arm not in best or score < best[arm][0]:
            best[arm] = (score, i)
    chosen = {i for _, i in best.values()}
    return [i in chosen for i in range(len(configs))]


def _arm(values: dict, select: Selection | None) -> dict:
    return {k: v for k, v in values.items() if select is None or k != select.key}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(format_value(a[k]) == format_value(b[k]) for k in a)


def _numeric(values: list) -> bool:
    return len(values) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def partners(arms: list[dict], grid: dict[str, list], baseline: dict | None,
             select: Selection | None) -> list[tuple[int, int, str]]:
    """(arm, its partner, the partner's differing values as ``key=value``) per arm that has one (module doc)."""
    keys = [k for k in grid if k != "seed" and (select is None or k != select.key)]
    if baseline is not None:
        fixed = list(baseline)

        def want_of(arm: dict) -> dict | None:
            return {**arm, **baseline}
    elif keys:
        key = next((k for k in keys if _numeric(grid[k])), keys[0])
        fixed, order = [key], [format_value(v) for v in grid[key]]

        def want_of(arm: dict) -> dict | None:
            at = order.index(format_value(arm[key]))
            step_back = at - 1 if _numeric(grid[key]) else 0   # a numeric axis: the neighbour; else the first
            return None if at == 0 else {**arm, key: grid[key][step_back]}
    else:
        return []
    out = []
    for i, arm in enumerate(arms):
        want = want_of(arm)
        if want is None or _same(want, arm):
            continue
        j = next((j for j, other in enumerate(arms) if _same(other, want)), None)
        if j is not None:
            out.append((i, j, ", ".join(f"{short_key(k)}={format_value(want[k])}" for k in fixed)))
    return out


def differences(configs: list[tuple[dict, list[dict]]], grid: dict[str, list], baseline: dict | None = None,
                select: Selection | None = None, fields: tuple[str, ...] = DIFF_FIELDS) -> list[dict]:
    """differences.csv's rows: per arm with a partner and per field, mean(arm) - mean(partner) over their healthy
    seeds, its 95 % CI and Welch's p (:func:`skipexp.core.stats.welch`), with both n and parameter counts."""
    chosen = choose(configs, select)
    picked = [(values, points) for (values, points), c in zip(configs, chosen) if c]
    arms = [_arm(values, select) for values, _ in picked]
    rows = []
    for i, j, against in partners(arms, grid, baseline, select):
        (values, points), (theirs, others) = picked[i], picked[j]
        chosen_values = {} if select is None else {"chosen": values[select.key], "chosen_against": theirs[select.key]}
        for field in fields:
            a, b = healthy(points, field), healthy(others, field)
            if not (a and b):   # a side without a value (all its seeds diverged, or no validation split)
                continue
            w = stats.welch(a, b)
            rows.append({**arms[i], "against": against, **chosen_values, "field": field, "n": len(a),
                         "n_against": len(b), **w, "params": params(points), "params_against": params(others)})
    return rows


def params(points: list[dict]) -> int | None:
    """The parameter count of a configuration's models (its seeds share it), or None where none is known."""
    found = {p.get("params") for p in points if isinstance(p.get("params"), (int, float))}
    return int(found.pop()) if len(found) == 1 else None


def small(n_values: list[int]) -> bool:
    """Whether any of these counts of seeds is under :data:`SMALL_N` (but at least one value exists)."""
    return any(0 < n < SMALL_N for n in n_values)


SMALL_NOTE = (f"⚠ fewer than {SMALL_N} seeds: the 95 % intervals are wide and the p-values rough; "
              "read a difference as resolved only where its interval excludes 0")
