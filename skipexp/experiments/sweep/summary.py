"""A sweep folder's summary.csv and plots, from disk: what ``sweep`` ends with and ``report`` redoes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from skipexp.core.fmt import csv_cell
from skipexp.experiments.sweep.spec import Sweep, folder_points, load_folder
from skipexp.rundir import files, runio
from skipexp.rundir.files import SUMMARY_FIELDS


def collect(root: Path, refresh: bool = True) -> tuple[Sweep, list[dict]]:
    """One row per grid point of the sweep folder: its values, folder name and summary (status missing
    for points never started). ``refresh`` recomputes each point's summary.json from its CSVs."""
    from skipexp.rundir.summary import summarize, write_summary

    sweep = load_folder(root)
    rows = []
    for name, values, run_dir in folder_points(root):
        row: dict[str, Any] = dict(values)
        row["point"] = name
        if runio.is_run_dir(run_dir):
            s = write_summary(run_dir) if refresh else summarize(run_dir)
            row.update({k: s.get(k) for k in SUMMARY_FIELDS})
        else:
            row["status"] = "missing"
        rows.append(row)
    return sweep, rows


def write_summary_csv(root: Path, sweep: Sweep, rows: list[dict]) -> Path:
    files.write_csv(root / files.SUMMARY_CSV, list(sweep.grid) + ["point"] + list(SUMMARY_FIELDS), rows, csv_cell)
    return root / files.SUMMARY_CSV


def finish(root: Path, refresh: bool = True) -> tuple[Sweep, list[dict], list[Path]]:
    """summary.csv and plots of a sweep folder, from disk: what ``sweep`` ends with and ``report`` redoes."""
    from skipexp.views import plots_compare

    sweep, rows = collect(root, refresh)
    write_summary_csv(root, sweep, rows)
    plots = plots_compare.plot_sweep(rows, sweep.grid, root / files.PLOTS, title=f"sweep {sweep.name}")
    return sweep, rows, plots


