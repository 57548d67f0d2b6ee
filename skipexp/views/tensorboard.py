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
- for the points of a sweep (:func:`write_hparams`), TensorBoard's HParams: each point's swept values as
  hyperparameters and ``hparams/<field>`` scalars of its final summary as metrics, the experiment (every
  swept key's values, the metrics) in the sweep folder itself
"""
from __future__ import annotations

import bisect
import itertools
import math
import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import short_key
from skipexp.rundir import files, runio
from skipexp.rundir.summary import summarize

INSTALL_HINT = "pip install 'skipexp[tensorboard]'"
EVENTS = "events.out.tfevents.*"
OLD_SUBDIR = "tensorboard"  # where exports used to put a run's events

# CSV file -> {column: tag} for the files with fixed columns
FIXED = {
    files.METRICS: {"train_loss": "train/loss", "train_acc": "train/acc", "lr": "train/lr",
                    "grad_norm_total": "train/grad_norm_total"},
    files.EVAL: {"test_loss": "test/loss", "test_acc": "test/acc", "val_loss": "val/loss", "val_acc": "val/acc",
                 "train_loss": "train/eval_loss", "train_acc": "train/eval_acc"},
}
# CSV file with a column per layer or boundary -> tag group; each column but `step` becomes <group>/<column>
PER_LAYER = {files.GRAD_NORMS: "grad_norm", files.ACT_GRAD_NORMS: "act_grad_norm", files.ACT_NORMS: "act_rms"}
HISTOGRAMS = {files.GRAD_NORMS: "grad_norm/log10_over_layers",
              files.ACT_GRAD_NORMS: "act_grad_norm/log10_over_boundaries"}
CONFIG_TAG = "config"


def writer_class():
    """The event-file writer, or the install hint where tensorboard is missing."""
    try:
        from torch.utils.tensorboard import summary  # noqa: F401  (what _EventFile builds events with)
    except ImportError:
        raise SkipexpError(f"TensorBoard export needs the tensorboard package, which is not installed; "
                           f"{INSTALL_HINT}", key="tensorboard") from None
    return _EventFile


def row_events(log: str, row: Mapping[str, float], histograms: bool = True) -> Iterator[tuple[str, str, Any]]:
    """What one row of the CSV named ``log`` becomes: ``("scalar", tag, value)`` and
    ``("histogram", tag, values)``. The one definition both the live writer and the export use."""
    if log in FIXED:
        for col, tag in FIXED[log].items():
            if col in row:   # validation and training-data columns exist only where the run evaluates them
                yield "scalar", tag, float(row[col])
        return
    values = {k: float(v) for k, v in row.items() if k != "step"}
    for col, v in values.items():
        yield "scalar", f"{PER_LAYER[log]}/{col}", v
    if histograms and log in HISTOGRAMS:
        logs = [math.log10(v) for v in values.values() if math.isfinite(v) and v > 0]
        if logs:  # an all-zero or all-nan row has no spread to show
            yield "histogram", HISTOGRAMS[log], logs


class _EventFile:
    """One events file, written in the caller's thread: a row is one event, on disk when ``add`` returns.

    torch's SummaryWriter hands every value to a writer thread and its flush waits for that thread, which
    costs a training loop milliseconds per log step; the events here are the ones it would write.
    """

    def __init__(self, folder: Path, suffix: str = "") -> None:
        import numpy as np
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter
        from torch.utils.tensorboard import summary

        self._event, self._summary, self._build = event_pb2.Event, summary_pb2.Summary, summary
        # TensorBoard reads a folder's files in name order: the time first, as its own writer names them
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_UID)}{suffix}"
        self._time = time.time
        self._file = RecordWriter(open(folder / name, "ab"))
        self._np, self._bins = np, np.array(_tensorflow_bins())
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _bins_around(self, values: list[float]):
        """The buckets from just below ``values`` to just above: np.histogram's cost grows with the number of
        buckets (1549), while the histogram keeps only those between the first and last non-empty one,
        and the empty bucket left of them. Spare buckets on each side keep every value off the outer edges,
        where np.histogram's last bucket would also count its right edge. (A test holds the two equal.)"""
        lo, hi = self._np.searchsorted(self._bins, [min(values), max(values)])
        return self._bins[max(0, lo - 3):hi + 3]

    def _write(self, event) -> None:
        self._file.write(event.SerializeToString())
        self._file.flush()

    def add(self, events: Iterable[tuple[str, str, Any]], step: int, walltime: float | None) -> None:
        values = []
        for kind, tag, value in events:
            if kind == "scalar":
                values.append(self._summary.Value(tag=tag, simple_value=value))
            else:   # as SummaryWriter.add_histogram with its default bins="tensorflow"
                values.extend(self._build.histogram(tag, self._np.asarray(value), self._bins_around(value)).value)
        self._write(self._event(wall_time=self._time() if walltime is None else walltime, step=step,
                                summary=self._summary(value=values)))

    def add_summary(self, summary: Any, step: int) -> None:
        """A ready-made Summary proto (the HParams plugin's)."""
        self._write(self._event(wall_time=self._time(), step=step, summary=summary))

    def add_text(self, tag: str, text: str, step: int) -> None:
        self._write(self._event(wall_time=self._time(), step=step, summary=self._build.text(tag, text)))

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


_UID = itertools.count()  # tells apart files one process opens in one second


def _tensorflow_bins() -> list[float]:
    """TensorFlow's histogram buckets, computed as SummaryWriter computes its default ones."""
    v, pos = 1e-12, []
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    return [-x for x in reversed(pos)] + [0.0] + pos


def _add(writer: _EventFile, log: str, row: Mapping[str, float], walltime: float | None, histograms: bool) -> None:
    writer.add(row_events(log, row, histograms), int(row["step"]), walltime)


def _start_time(meta: dict) -> float | None:
    try:
        return datetime.fromisoformat(meta["start_time"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def _add_config(writer: _EventFile, run_dir: Path) -> None:
    config_text = (run_dir / files.CONFIG).read_text()
    writer.add_text(CONFIG_TAG, "".join("    " + line + "\n" for line in config_text.splitlines()), 0)


def _open(run_dir: Path) -> _EventFile:
    return writer_class()(run_dir)


def event_files(run_dir: Path) -> list[Path]:
    """A run's event files, in the folder and in the old ``tensorboard/`` subfolder."""
    return sorted(run_dir.glob(EVENTS)) + sorted((run_dir / OLD_SUBDIR).glob(EVENTS))


class LiveEvents:
    """A run's events written as its CSV rows are (see :func:`row_events`), each row on disk before the
    loop goes on, so TensorBoard shows a run while it trains. A resumed run adds an event file beside the
    first; it is handed only the rows its CSVs accept, so each step is in the events once."""

    def __init__(self, run_dir: Path, meta: dict, histograms: bool = True) -> None:
        fresh = not any(run_dir.glob(EVENTS))
        self._writer = _open(run_dir)
        # wall times are the run's own clock (start time plus elapsed_s), as in an export
        self._t0, self._elapsed = _start_time(meta), None
        self._histograms = histograms
        if fresh:
            _add_config(self._writer, run_dir)

    def add(self, log: str, row: Mapping[str, float]) -> None:
        if log == files.METRICS:
            self._elapsed = float(row["elapsed_s"])
        walltime = self._t0 + self._elapsed if self._t0 is not None and self._elapsed is not None else None
        _add(self._writer, log, row, walltime, self._histograms)

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


# --- HParams of a sweep ----------------------------------------------------------------------------

HPARAMS_SUFFIX = ".skipexp-hparams"   # marks the event files write_hparams owns (and replaces)
# summary.json field -> the metric's tag; each point's final value, at its last step
HPARAM_METRICS = {f: f"hparams/{f}" for f in ("final_test_acc", "best_test_acc", "final_test_loss",
                                              "final_train_loss", "grad_ratio_first_last_end", "steps_per_s")}


def hparam_value(v: Any) -> Any:
    """A swept value as TensorBoard takes a hyperparameter: a number, a string or a bool (lists as text)."""
    if isinstance(v, (bool, int, float, str)):
        return v
    from skipexp.core.fmt import value

    return value(v)


def write_hparams(root: Path, points: list[tuple[dict[str, Any], Path]]) -> list[Path]:
    """TensorBoard HParams for a sweep: each point's run folder gets its values (keys as the point names show
    them) and its final summary as metrics; ``root`` gets the experiment, so that ``tensorboard --logdir
    <sweep folder>`` fills the HParams table and its parallel coordinates. Replaces what an earlier call
    wrote; returns the point folders written."""
    writer_class()
    from torch.utils.tensorboard.summary import hparams

    points = [(vals, d) for vals, d in points if runio.is_run_dir(d)]
    if not points:
        return []
    keys = list(dict.fromkeys(k for vals, _ in points for k in vals))
    table = [{short_key(k): hparam_value(vals.get(k)) for k in keys} for vals, _ in points]
    discrete = {k: sorted({row[k] for row in table}, key=str) for k in table[0]
                if all(isinstance(row[k], (str, bool)) for row in table)
                and len({type(row[k]) for row in table}) == 1}
    metrics = {tag: 0.0 for tag in HPARAM_METRICS.values()}
    written = []
    for hp, (_, run_dir) in zip(table, points):
        s = files.read_json(run_dir / files.SUMMARY) if (run_dir / files.SUMMARY).is_file() else summarize(run_dir)
        _, start, end = hparams(hp, metrics, discrete)
        _replace_hparams(run_dir)
        w = _EventFile(run_dir, HPARAMS_SUFFIX)
        try:
            w.add_summary(start, 0)
            step = int(s.get("steps") or 0)
            w.add([("scalar", tag, float(s[f])) for f, tag in HPARAM_METRICS.items()
                   if isinstance(s.get(f), (int, float)) and math.isfinite(s[f])], step, None)
            w.add_summary(end, step)
        finally:
            w.close()
        written.append(run_dir)
    experiment, _, _ = hparams(table[0], metrics, discrete)
    _replace_hparams(root)
    w = _EventFile(root, HPARAMS_SUFFIX)
    try:
        w.add_summary(experiment, 0)
    finally:
        w.close()
    return written


def _replace_hparams(folder: Path) -> None:
    for old in folder.glob(f"{EVENTS}{HPARAMS_SUFFIX}"):
        old.unlink()
