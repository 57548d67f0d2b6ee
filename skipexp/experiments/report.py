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


def report(path: Path) -> Report:
    kind = kind_of(path)
    if kind == "run":
        from skipexp.rundir.summary import write_summary
        from skipexp.views import plots

        s = write_summary(path)
        return Report("run", path, s, plots.plot_run(path))
    if kind == "compare":
        from skipexp.experiments import compare

        s = compare.finish(path)
        return Report("compare", path, s, sorted((path / "plots").glob("*.png")))
    from skipexp.experiments import sweep

    sw, rows, plots_ = sweep.finish(path)
    return Report("sweep", path, rows, plots_, {"sweep": sw})


def sweep_table(rows: list[dict], grid: dict[str, list]) -> tuple[list[str], list[list[str]]]:
    """Header and cells for a sweep's table: one row per point."""
    head = [short_key(k) for k in grid] + ["status", "train loss", "test acc", "w-grad first/last end", "train s"]
    body = []
    for r in rows:
        status = r.get("status", "-")
        if r.get("diverged_at_step") is not None:
            status += f" @{r['diverged_at_step']}"
        ratio = r.get("grad_ratio_first_last_end")
        body.append([value(r.get(k)) for k in grid] + [
            status, number(r.get("final_train_loss")), number(r.get("final_test_acc"), pct=True),
            number(ratio, sci=True) if isinstance(ratio, float) else "-", number(r.get("wall_s"))])
    return head, body
