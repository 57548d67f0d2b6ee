"""TensorBoard event files of run folders: written live while a run trains, or exported from its CSVs.

Both ways go through :func:`row_events`, the one definition of what a CSV row becomes, so a live run's
events and a later export hold the same tags and values. Event files go into the run folder itself:
TensorBoard names a run by the folder that holds its event files, so ``tensorboard --logdir runs/`` lists
single runs, the members of comparisons and every point of a sweep under their folder names. Exports
made before this layout went to ``<run>/tensorboard/`` (still readable; a re-export removes them).

Tags, in few sections (TensorBoard groups charts by the part before the first slash):

- ``train/loss``, ``train/acc``, ``train/lr``, ``train/grad_norm_total``; ``test/loss``, ``test/acc``
- ``grad_norm/<layer>``: weight-gradient norm of each layer (``input``, ``blocks.0.fc1``, ..., ``head``)
- ``act_grad_norm/h<i>``: norm of the loss gradient at block boundary i; ``act_rms/h<i>``: activation RMS
- histograms ``grad_norm/log10_over_layers`` and ``act_grad_norm/log10_over_boundaries``: the spread of
  log10 norms at each logged step
- text ``config``
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from skipexp.core.errors import SkipexpError
from skipexp.rundir import files, runio

INSTALL_HINT = "pip install 'skipexp[tensorboard]'"
EVENTS = "events.out.tfevents.*"
OLD_SUBDIR = "tensorboard"  # where exports used to put a run's events

# CSV file -> {column: tag} for the files with fixed columns
FIXED = {
    files.METRICS: {"train_loss": "train/loss", "train_acc": "train/acc", "lr": "train/lr",
                    "grad_norm_total": "train/grad_norm_total"},
    files.EVAL: {"test_loss": "test/loss", "test_acc": "test/acc"},
}
# CSV file with a column per layer or boundary -> tag group; each column but `step` becomes <group>/<column>
PER_LAYER = {files.GRAD_NORMS: "grad_norm", files.ACT_GRAD_NORMS: "act_grad_norm", files.ACT_NORMS: "act_rms"}
HISTOGRAMS = {files.GRAD_NORMS: "grad_norm/log10_over_layers",
              files.ACT_GRAD_NORMS: "act_grad_norm/log10_over_boundaries"}
CONFIG_TAG = "config"


def writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SkipexpError(f"TensorBoard export needs the tensorboard package, which is not installed; "
                           f"{INSTALL_HINT}", key="tensorboard") from None
    return SummaryWriter


def row_events(log: str, row: Mapping[str, float], histograms: bool = True) -> Iterator[tuple[str, str, Any]]:
    """What one row of the CSV named ``log`` becomes: ``("scalar", tag, value)`` and
    ``("histogram", tag, values)``. The one definition both the live writer and the export use."""
    if log in FIXED:
        for col, tag in FIXED[log].items():
            yield "scalar", tag, float(row[col])
        return
    values = {k: float(v) for k, v in row.items() if k != "step"}
    for col, v in values.items():
        yield "scalar", f"{PER_LAYER[log]}/{col}", v
    if histograms and log in HISTOGRAMS:
        logs = [math.log10(v) for v in values.values() if math.isfinite(v) and v > 0]
        if logs:  # an all-zero or all-nan row has no spread to show
            import numpy as np

            yield "histogram", HISTOGRAMS[log], np.array(logs)


def _add(writer, log: str, row: Mapping[str, float], walltime: float | None, histograms: bool) -> None:
    step = int(row["step"])
    for kind, tag, value in row_events(log, row, histograms):
        add = writer.add_scalar if kind == "scalar" else writer.add_histogram
        add(tag, value, step, walltime=walltime)


def _start_time(meta: dict) -> float | None:
    try:
        return datetime.fromisoformat(meta["start_time"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def _add_config(writer, run_dir: Path) -> None:
    config_text = (run_dir / files.CONFIG).read_text()
    writer.add_text(CONFIG_TAG, "".join("    " + line + "\n" for line in config_text.splitlines()), 0)


def _open(run_dir: Path):
    # flush_secs is a backstop only: the live writer flushes each row itself
    return writer_class()(log_dir=str(run_dir), flush_secs=30)


def event_files(run_dir: Path) -> list[Path]:
    """A run's event files, in the folder and in the old ``tensorboard/`` subfolder."""
    return sorted(run_dir.glob(EVENTS)) + sorted((run_dir / OLD_SUBDIR).glob(EVENTS))


class LiveEvents:
    """A run's events written as its CSV rows are (see :func:`row_events`), each row flushed, so
    TensorBoard shows a run while it trains. A resumed run adds an event file beside the first; it is
    handed only the rows its CSVs accept, so each step is in the events once."""

    def __init__(self, run_dir: Path, meta: dict, histograms: bool = True) -> None:
        fresh = not any(run_dir.glob(EVENTS))
        self._writer = _open(run_dir)
        # wall times are the run's own clock (start time plus elapsed_s), as in an export
        self._t0, self._elapsed = _start_time(meta), None
        self._histograms = histograms
        if fresh:
            _add_config(self._writer, run_dir)
            self._writer.flush()

    def add(self, log: str, row: Mapping[str, float]) -> None:
        if log == files.METRICS:
            self._elapsed = float(row["elapsed_s"])
        walltime = self._t0 + self._elapsed if self._t0 is not None and self._elapsed is not None else None
        _add(self._writer, log, row, walltime, self._histograms)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()  # a second close does nothing


def export_run(run_dir: Path, histograms: bool = True) -> Path:
    """Write ``run_dir``'s logged values as TensorBoard events into ``run_dir``, replacing any it has;
    return the folder that holds them (TensorBoard's name for the run)."""
    meta = runio.require_run_dir(run_dir)
    writer_class()  # no tensorboard: the hint before any old events go
    for old in event_files(run_dir):  # a re-export replaces, never duplicates
        old.unlink()
    try:
        (run_dir / OLD_SUBDIR).rmdir()
    except OSError:  # absent, or holds something that is not ours
        pass
    # wall times from the run's own clock: a row's is that of the last train row at or before its step
    t0 = _start_time(meta)
    metrics = runio.read_csv(run_dir / files.METRICS)
    steps, elapsed = [int(r["step"]) for r in metrics], [r["elapsed_s"] for r in metrics]

    def walltime(step: int) -> float | None:
        i = bisect.bisect_right(steps, step)
        return t0 + elapsed[i - 1] if t0 is not None and i else None

    writer = _open(run_dir)
    try:
        _add_config(writer, run_dir)
        for log in (*FIXED, *PER_LAYER):
            rows = metrics if log == files.METRICS else runio.read_csv(run_dir / log)
            for r in rows:
                _add(writer, log, r, walltime(int(r["step"])), histograms)
    finally:
        writer.close()
    return run_dir


def find_runs(root: Path) -> list[Path]:
    """Every run folder at or below ``root`` (a run, a comparison, a sweep, or a folder of them)."""
    if runio.is_run_dir(root):
        return [root]
    return sorted(p.parent for p in root.rglob(files.META) if runio.is_run_dir(p.parent))


def export_tree(root: Path, histograms: bool = True) -> list[Path]:
    """Export every run folder under ``root``; return the folders that hold their events."""
    if not root.is_dir():
        raise SkipexpError("no such folder", file=str(root))
    runs = find_runs(root)
    if not runs:
        raise SkipexpError("holds no skipexp run folders", file=str(root))
    return [export_run(r, histograms) for r in runs]
