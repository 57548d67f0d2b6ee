"""report.html: one self-contained page per run, comparison or sweep folder (styles, script and figures
inline, nothing fetched). :mod:`.run`, :mod:`.compare` and :mod:`.sweep` build the pages from what the
folder holds; :mod:`.svg` draws their charts, :mod:`.page` frames them."""
from __future__ import annotations

from pathlib import Path

from skipexp.rundir import files


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("skipexp")
    except PackageNotFoundError:
        return "unknown"


def write(folder: Path, html: str) -> Path:
    """``folder/report.html``, replaced atomically."""
    path = folder / files.REPORT
    files.atomic_write(path, html)
    return path


def write_run(run_dir: Path) -> Path:
    """A run folder's report.html, from its files."""
    from skipexp.views.html.run import run_page

    return write(run_dir, run_page(run_dir, version()))
