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
from skipexp.rundir import files as files_mod
from skipexp.rundir import runio


@dataclass
class Report:
    kind: str                      # run | compare | sweep
    path: Path
    summary: Any                   # a run's summary dict, a comparison's summary dict, a sweep's rows
    plots: list[Path] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def kind_of(path: Path) -> str:
    """run | compare | sweep, or a SkipexpError saying what the folder is not."""
    from skipexp.experiments import compare, sweep

    if not path.exists():
        raise SkipexpError("no such folder", file=str(path))
    if not path.is_dir():
        raise SkipexpError("not a folder; expected a skipexp run, comparison or sweep folder", file=str(path))
    if runio.is_run_dir(path):
        runio.require_run_dir(path)  # checks that skipexp wrote it
        return "run"
    if compare.is_compare_dir(path):
        return "compare"
    if sweep.is_sweep_dir(path):
        return "sweep"
    raise SkipexpError("not a skipexp run, comparison or sweep folder (no meta.json, compare summary.json "
                       "or sweep.yaml)", file=str(path))


def report(path: Path, html: bool = True) -> Report:
    """Rewrite a folder's summaries and plots from disk, then those of any measurement taken of it (skipexp
    landscape, sharpness, jacobian, paths), and its report.html unless ``html`` is False."""
    from skipexp.science import figures

    r = _report(path, html)
    measured = figures.redraw(path)
    r.plots += [p for p in measured if p not in r.plots]
    return r


def _report(path: Path, html: bool) -> Report:
    kind = kind_of(path)
    if kind == "run":
        from skipexp.rundir.summary import write_summary
        from skipexp.views import plots

        s = write_summary(path)
        got = Report("run", path, s, plots.plot_run(path))
        if html:
            from skipexp.views import html as html_mod

            html_mod.write_run(path)
        return got
    if kind == "compare":
        from skipexp.experiments import compare

        s = compare.finish(path, html=html)
        if html:   # after finish, which rewrote their summaries; the comparison's page links to them
            from skipexp.experiments.html import write_run_reports

            write_run_reports([path / rel for m in s.get("members", []) for rel in compare.member_runs(m)])
        return Report("compare", path, s, sorted((path / "plots").glob("*.png")))
    from skipexp.experiments import sweep

    sw, rows, plots_ = sweep.finish(path, html=html)
    if html:
        from skipexp.experiments.html import write_run_reports

        write_run_reports([run_dir for _, _, run_dir in sweep.folder_points(path)])
    return Report("sweep", path, rows, plots_, {"sweep": sw})


def export_tensorboard(path: Path, histograms: bool = True) -> list[Path]:
    """Every run at or below ``path`` as TensorBoard events, and every sweep there with its HParams
    (:func:`skipexp.views.tensorboard.write_hparams`); the run folders written."""
    from skipexp.experiments import sweep
    from skipexp.views.tensorboard import export_tree, write_hparams

    written = export_tree(path, histograms)
    roots = [path] if sweep.is_sweep_dir(path) else sorted(p.parent for p in path.rglob(files_mod.SWEEP_FILE)
                                                           if sweep.is_sweep_dir(p.parent))
    for root in roots:
        write_hparams(root, [(values, run_dir) for _, values, run_dir in sweep.folder_points(root)])
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
SEEDS_NOTE = ("mean ± sample standard deviation over the seeds that did not diverge; summary.csv has a row per "
              "seed, summary-seeds.csv the mean, sd, min and max of every configuration")


def sweep_table(rows: list[dict], grid: dict[str, list]) -> SweepTable:
    """A sweep's table: one row per point, or, where ``seed`` is swept over several values, one row per
    configuration with its mean ± sd over seeds (:func:`skipexp.experiments.sweep.summary.aggregate_seeds`)."""
    from skipexp.experiments.sweep.summary import aggregate_seeds, seeds_swept

    if seeds_swept(grid):
        return _seeds_table(aggregate_seeds(rows, grid), grid)
    head = [short_key(k) for k in grid] + ["status", "train loss", "test acc", "w-grad first/last end", "train s"]
    body, states = [], []
    for r in rows:
        status = r.get("status", "-")
        if r.get("diverged_at_step") is not None:
            status += f" @{r['diverged_at_step']}"
        ratio = r.get("grad_ratio_first_last_end")
        body.append([value(r.get(k)) for k in grid] + [
            status, number(r.get("final_train_loss")), number(r.get("final_test_acc"), pct=True),
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
    used = sum(n for st, n in counts.items() if st not in ("diverged", "missing", "not started"))
    shown = str(used) if used == total else f"{used}/{total}"
    return f"{shown} ({odd})" if odd else shown


def _seeds_table(agg: list[dict], grid: dict[str, list]) -> SweepTable:
    keys = [k for k in grid if k != "seed"]
    head = [short_key(k) for k in keys] + ["seeds", "train loss", "test acc", "w-grad first/last end"]
    body, states = [], []
    for r in agg:
        body.append([value(r.get(k)) for k in keys] + [
            seeds_cell(r, len(grid["seed"])), _mean_sd(r, "final_train_loss"),
            _mean_sd(r, "final_test_acc", pct=True), number(r.get("grad_ratio_first_last_end_mean"), sci=True)])
        counts = r.get("statuses", {})
        states.append("completed" if set(counts) == {"completed"} else
                      "diverged" if set(counts) == {"diverged"} else "mixed")
    return SweepTable(head, body, states, len(keys), f"{len(body)} configurations × {len(grid['seed'])} seeds",
                      SEEDS_NOTE)
