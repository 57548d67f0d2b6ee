"""Report: rebuild summaries, tables and plots of run, comparison and sweep folders from disk; train nothing.

Works on any state a folder can be left in (completed, diverged, interrupted, crashed mid-row), because
every reader goes through :mod:`skipexp.rundir.runio`, which drops a half-written last line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import number, short_key, value
from skipexp.experiments.html import write_run_reports
from skipexp.experiments.sweep import evidence
from skipexp.experiments.sweep.evidence import SMALL_NOTE, small
from skipexp.rundir import files as files_mod
from skipexp.rundir import runio
from skipexp.rundir.summary import write_summary
from skipexp.science import figures
from skipexp.views import html as html_mod
from skipexp.views.tensorboard import export_tree, write_hparams


@dataclass
class Report:
    kind: str                      # run | compare | sweep
    path: Path
    summary: Any                   # a run's summary dict, a comparison's summary dict, a sweep's rows
    plots: list[Path] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def kind_of(path: Path) -> str:
    """run | compare | sweep, or a SkipexpError saying what the folder is not."""
    from skipexp.experiments import compare
    from skipexp.experiments.sweep import spec

    if not path.exists():
        raise SkipexpError("no such folder", file=str(path))
    if not path.is_dir():
        raise SkipexpError("not a folder; expected a skipexp run, comparison or sweep folder", file=str(path))
    if runio.is_run_dir(path):
        runio.require_run_dir(path)  # checks that skipexp wrote it
        return "run"
    if compare.is_compare_dir(path):
        return "compare"
    if spec.is_sweep_dir(path):
        return "sweep"
    raise SkipexpError("not a skipexp run, comparison or sweep folder (no meta.json, compare summary.json "
                       "or sweep.yaml)", file=str(path))


def report(path: Path, html: bool = True) -> Report:
    """Rewrite a folder's summaries and plots from disk, then those of any measurement taken of it (skipexp
    landscape, sharpness, jacobian, paths), and its report.html unless ``html`` is False."""
    r = _report(path, html)
    measured = figures.redraw(path)
    r.plots += [p for p in measured if p not in r.plots]
    return r


def _report(path: Path, html: bool) -> Report:
    kind = kind_of(path)
    if kind == "run":
        from skipexp.views import plots

        s = write_summary(path)
        got = Report("run", path, s, plots.plot_run(path))
        if html:
            html_mod.write_run(path)
        return got
    if kind == "compare":
        from skipexp.experiments import compare

        s = compare.rebuild(path, html=html)
        if html:   # after rebuild, which rewrote their summaries; the comparison's page links to them
            write_run_reports([path / rel for m in s.get("members", []) for rel in compare.member_runs(m)])
        return Report("compare", path, s, sorted((path / "plots").glob("*.png")))
    from skipexp.experiments.sweep import results, spec

    sw, rows, plots_ = results.rebuild(path, html=html)
    if html:
        write_run_reports([run_dir for _, _, run_dir in spec.folder_points(path)])
    return Report("sweep", path, rows, plots_, {"sweep": sw})


def export_tensorboard(path: Path, histograms: bool = True) -> list[Path]:
    """Every run at or below ``path`` as TensorBoard events, and every sweep there with its HParams
    (:func:`skipexp.views.tensorboard.write_hparams`); the run folders written."""
    from skipexp.experiments.sweep import spec
    written = export_tree(path, histograms)
    roots = [path] if spec.is_sweep_dir(path) else sorted(p.parent for p in path.rglob(files_mod.SWEEP_FILE)
                                                           if spec.is_sweep_dir(p.parent))
    for root in roots:
        write_hparams(root, [(values, run_dir) for _, values, run_dir in spec.folder_points(root)])
    return written


@dataclass
class SweepTable:
    """A sweep's table for people: the header, the rows, each row's status word (which decides its colour),
    how many columns on the left are the sweep's keys, what the rows are (to add to the title) and a note to
    print under it (or None)."""
    head: list[str]
    body: list[list[str]]
    states: list[str]
    keys: int
    rows_are: str | None = None
    note: str | None = None


# what the table over seeds shows, printed under it
SEEDS_NOTE = ("mean ± sample standard deviation over the seeds that did not diverge, and the 95 % confidence "
              "interval of the mean (Student t, n - 1 degrees of freedom); summary.csv has a row per seed, "
              "summary-seeds.csv the mean, sd, n, 95 % CI, min and max of every configuration")
DIFFERENCES_NOTE = ("Δ = mean of the row's configuration - mean of the one it is against, over the seeds that did not "
                    "diverge; [95 % CI] of the difference and p of Welch's t-test (unequal variances); accuracy in "
                    "percentage points; differences.csv has every field")


def sweep_table(rows: list[dict], grid: dict[str, list], select: Any = None) -> SweepTable:
    """A sweep's table: one row per point, or, where ``seed`` is swept over several values, one row per
    configuration with its mean ± sd and 95 % CI over seeds (:func:`skipexp.experiments.sweep.results
    .aggregate_seeds`); with a selection (``select``), only the chosen configurations."""
    from skipexp.experiments.sweep.results import aggregate_seeds, seeds_swept

    if seeds_swept(grid):
        return _seeds_table(aggregate_seeds(rows, grid, select), grid, select)
    head = [short_key(k) for k in grid] + ["status", "params", "train loss", "test acc", "w-grad first/last end",
                                           "train s"]
    body, states = [], []
    for r in rows:
        status = r.get("status", "-")
        if r.get("diverged_at_step") is not None:
            status += f" @{r['diverged_at_step']}"
        ratio = r.get("grad_ratio_first_last_end")
        body.append([value(r.get(k)) for k in grid] + [
            status, number(r.get("params")), number(r.get("final_train_loss")),
            number(r.get("final_test_acc"), pct=True),
            number(ratio, sci=True) if isinstance(ratio, float) else "-", number(r.get("wall_s"))])
        states.append(r.get("status", "-"))
    return SweepTable(head, body, states, len(grid))


def _mean_sd(row: dict, field: str, pct: bool = False) -> str:
    """``1.802 ± 0.1``: the sd to two significant digits (more would be noise); the mean alone with one seed."""
    mean, sd = row.get(f"{field}_mean"), row.get(f"{field}_std")
    if mean is None or sd is None:
        return number(mean, pct)
    return f"{number(mean, pct)} ± " + (number(sd, pct) if pct or sd != sd else f"{sd:.2g}")


def seeds_cell(row: dict, total: int) -> str:
    """How many seeds a configuration's figures are over: ``3``, or ``2/3 (1 diverged)``; seeds that ran but
    did not complete (interrupted, ...) are counted and named: ``3 (1 interrupted)``."""
    counts = row.get("statuses", {})
    odd = ", ".join(f"{n} {st}" for st, n in counts.items() if st != "completed")
    used = sum(n for st, n in counts.items() if st not in ("diverged", *files_mod.NOT_RUN))
    shown = str(used) if used == total else f"{used}/{total}"
    return f"{shown} ({odd})" if odd else shown


def _ci(row: dict, field: str, pct: bool = False) -> str:
    """``[0.31, 0.42]``: the 95 % confidence interval of the mean; ``-`` with fewer than two seeds."""
    lo, hi = row.get(f"{field}_ci_low"), row.get(f"{field}_ci_high")
    return "-" if lo is None or hi is None else f"[{number(lo, pct)}, {number(hi, pct)}]"


def _seeds_table(agg: list[dict], grid: dict[str, list], select: Any = None) -> SweepTable:
    keys = [k for k in grid if k != "seed"]
    total = len(agg)
    if select is not None:   # the chosen configurations: the selected key's column says what was chosen
        agg = [r for r in agg if r.get("selected")]
    head = ([short_key(k) + (f" (chosen on {select.by})" if select is not None and k == select.key else "")
             for k in keys] + ["seeds", "params", "train loss", "95% CI", "test acc", "95% CI",
                               "w-grad first/last end"])
    body, states = [], []
    for r in agg:
        body.append([value(r.get(k)) for k in keys] + [
            seeds_cell(r, len(grid["seed"])), number(r.get("params")), _mean_sd(r, "final_train_loss"),
            _ci(r, "final_train_loss"), _mean_sd(r, "final_test_acc", pct=True), _ci(r, "final_test_acc", pct=True),
            number(r.get("grad_ratio_first_last_end_mean"), sci=True)])
        counts = r.get("statuses", {})
        states.append("completed" if set(counts) == {"completed"} else
                      "diverged" if set(counts) == {"diverged"} else "mixed")
    note = SEEDS_NOTE + ("\n" + SMALL_NOTE if small([r.get("final_test_acc_n") or 0 for r in agg]) else "")
    rows_are = f"{len(body)} configurations × {len(grid['seed'])} seeds"
    if select is not None:
        rows_are = f"{len(body)} chosen of {total} configurations × {len(grid['seed'])} seeds"
    return SweepTable(head, body, states, len(keys), rows_are, note)


def _delta(d: dict, pct: bool) -> str:
    """``+1.2 [0.4, 2.0] pp`` or ``-0.031 [-0.05, -0.01]``; ``-`` where there is no interval."""
    if d.get("diff") is None:
        return "-"
    scale, unit = (100.0, " pp") if pct else (1.0, "")
    ci = "" if d.get("ci_low") is None else f" [{d['ci_low'] * scale:+.3g}, {d['ci_high'] * scale:+.3g}]"
    return f"{d['diff'] * scale:+.3g}{ci}{unit}"


def _p(d: dict) -> str:
    p = d.get("p")
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


SIZE_KEYS = ("depth", "width", "hidden")   # short keys whose values set a model's size


def differences_table(rows: list[dict], sweep: Any) -> SweepTable | None:
    """The differences of a sweep over seeds (:func:`skipexp.experiments.sweep.evidence.differences`), one row per
    configuration and what it is against: train loss and test accuracy, each Δ [95 % CI] and Welch's p; the
    parameter counts of both, ⚠ where they differ. None where the sweep has no seeds or no pairs."""
    from skipexp.experiments.sweep.results import configurations, seeds_swept

    if not seeds_swept(sweep.grid):
        return None
    diffs = evidence.differences(configurations(rows, sweep.grid), sweep.grid, sweep.baseline, sweep.select,
                                 ("final_train_loss", "final_test_acc"))
    if not diffs:
        return None
    keys = [k for k in sweep.grid if k != "seed" and (sweep.select is None or k != sweep.select.key)]
    pairs: dict[tuple, dict[str, dict]] = {}
    for d in diffs:
        pairs.setdefault(tuple(value(d[k]) for k in keys) + (d["against"],), {})[d["field"]] = d
    chosen = sweep.select is not None
    head = [short_key(k) for k in keys] + ["against"] + (["chosen / against"] if chosen else []) + [
        "seeds", "Δ train loss [95% CI]", "p", "Δ test acc [95% CI]", "p", "params"]
    body, states, ns = [], [], []
    empty = {"diff": None, "n": 0, "n_against": 0, "params": None, "params_against": None, "chosen": None,
             "chosen_against": None}
    for key, by_field in pairs.items():
        loss, acc = by_field.get("final_train_loss", empty), by_field.get("final_test_acc", empty)
        same = loss["params"] == loss["params_against"]
        # a size axis (depth, width) changes the parameter count by design: only elsewhere is it a confound
        sized = any(w.split("=")[0] in SIZE_KEYS for w in key[-1].split(", "))
        params = (number(loss["params"]) if same else
                  f"{'' if sized else '⚠ '}{number(loss['params'])} vs {number(loss['params_against'])}")
        body.append(list(key) + ([f"{value(loss['chosen'])} / {value(loss['chosen_against'])}"] if chosen else []) + [
            f"{acc['n']} / {acc['n_against']}", _delta(loss, False), _p(loss), _delta(acc, True), _p(acc), params])
        resolved = any(d.get("ci_low") is not None and (d["ci_low"] > 0 or d["ci_high"] < 0) for d in (loss, acc))
        states.append("completed" if resolved else "mixed")
        ns += [acc["n"], acc["n_against"]]
    note = DIFFERENCES_NOTE + ("\n" + evidence.SMALL_NOTE if evidence.small(ns) else "")
    if any(b[-1].startswith("⚠") for b in body):
        note += "\n⚠ params: the two configurations differ in parameter count, a confound beside the one compared"
    return SweepTable(head, body, states, len(keys) + 1, None, note)
