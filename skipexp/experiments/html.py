"""report.html of comparison and sweep folders, from what their ``rebuild`` computed, and the reports of the
runs they link to (:mod:`skipexp.views.html` draws the pages)."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from skipexp.rundir import files, runio
from skipexp.views import html
from skipexp.views.html.compare import compare_page
from skipexp.views.html.sweep import SweepInfo, sweep_page


def write_run_reports(run_dirs: list[Path], missing_only: bool = False) -> None:
    """The report.html of each run folder (a sweep's points, a comparison's members) that a folder's report
    links to; ``missing_only`` leaves those that have one (written when the run ended)."""
    for d in run_dirs:
        if runio.is_run_dir(d) and not (missing_only and (d / files.REPORT).is_file()):
            html.write_run(d)


def write_compare(cdir: Path, summary: dict, caption: str, notes: tuple[str, ...], run_dirs: list[Path]) -> Path:
    """A comparison folder's report.html (``summary``: what :func:`skipexp.experiments.compare.rebuild` made)."""
    write_run_reports(run_dirs, missing_only=True)   # runs with log.html off, or older than report.html
    return html.write(cdir, compare_page(cdir, summary, caption, notes, html.version()))


def write_sweep(root: Path, sw: Any, rows: list[dict], configs: list[tuple[dict, list[dict]]],
                aggregated: list[dict] | None, run_dirs: list[Path]) -> Path:
    """A sweep folder's report.html from its points' rows, grouped into configurations (with their
    statistics over seeds where seeds are swept)."""
    info = SweepInfo(sw.name, dict(sw.grid), dict(sw.overrides), str(sw.base),
                     " ".join(shlex.quote(w) for w in sw.command()), dict(sw.variants))
    write_run_reports(run_dirs, missing_only=True)
    return html.write(root, sweep_page(root, info, rows, configs, aggregated, html.version()))
