"""One run folder's writer: the only code that writes a run's meta.json, CSV logs, checkpoints, train.log
and summary.json.

A training process holds one :class:`RunFolder` per model. It keeps what the summary needs of the rows it
writes (and, resuming, of the rows already on disk), so that the summary it writes as the run ends is built
from what the process holds, equal to what ``report`` rebuilds from the CSVs. Rows also go to the sinks the
caller adds (TensorBoard's live events), each row once: the rows a resumed run's CSV turns away (already on
disk) no sink sees. Another process that gives up on a run (a second Ctrl-C, a sweep's worker that died twice)
opens the folder and says so through :meth:`mark_interrupted` or :meth:`mark_failed`.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import csv_cell
from skipexp.rundir import files, runio
from skipexp.rundir.summary import summarize_rows

HEARTBEAT_S = 2.0   # meta.json's heartbeat is rewritten at most this often (status changes always)


class RowSink(Protocol):
    """Where a run's rows go besides its CSVs (TensorBoard's live events): each row once, as a dict."""

    def add(self, log: str, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def now_iso() -> str:
    return datetime.now().isoformat(timespec="seconds")


class _Held:
    """What the summary needs of one CSV's rows, as the CSV reads back (every cell a float): all the rows, or
    (``ends_only``) the first and the last."""

    def __init__(self, ends_only: bool):
        self.ends_only, self.rows = ends_only, []

    def add(self, row: dict[str, float]) -> None:
        if self.ends_only and len(self.rows) == 2:
            self.rows[1] = row
        else:
            self.rows.append(row)


class RunFolder:
    """A run folder, written by this process: meta.json, the CSV logs by name, checkpoints, train.log, summary."""

    # the logs summary.json is computed from, by name, and whether it needs only their first and last rows
    SUMMARIZED = {"metrics": False, "eval": False, "grad": True, "act_grad": True}

    def __init__(self, run_dir: Path, meta: dict | None = None):
        """The folder ``run_dir`` with its meta.json as on disk (or ``meta``, for a folder being made)."""
        self.run_dir = run_dir
        self.meta: dict = files.read_meta(run_dir) if meta is None else meta
        self.logs: dict[str, runio.CsvLog] = {}
        self.sinks: list[RowSink] = []
        self.held: dict[str, _Held] = {}
        self._last_beat = 0.0
        self._lock: runio.RunLock | None = None

    def lock(self) -> None:
        """Hold the folder's lock for as long as this process trains in it (a SkipexpError where another holds it)."""
        self._lock = runio.RunLock(self.run_dir)

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @classmethod
    def create(cls, out: Path, name: str, seed: int | list[int], config_text: str,
               run_dir: Path | None = None) -> RunFolder:
        """Make the run folder (``out/<time>-<name>``, or ``run_dir`` exactly; exclusively) with its config.yaml
        and a first meta.json."""
        if run_dir is None:
            run_dir = runio.create_run_dir(out, name)
        else:
            runio.check_writable(run_dir.parent)
            try:
                run_dir.mkdir()
            except FileExistsError:
                raise SkipexpError("already exists; run folders are never reused", file=str(run_dir)) from None
        files.atomic_write(run_dir / files.CONFIG, config_text)
        # "running" with a heartbeat from the start: a process killed while loading data shows as crashed
        folder = cls(run_dir, {"tool": "skipexp", "name": name, "seed": seed, "created": now_iso()})
        folder.write_meta(status="running")
        return folder

    # --- meta.json ------------------------------------------------------------------------------------

    def write_meta(self, **fields: Any) -> None:
        """Merge ``fields`` into meta.json and write it (with a fresh heartbeat)."""
        self.meta.update(fields)
        self.beat(force=True)

    def hold_meta(self, **fields: Any) -> None:
        """Merge ``fields`` into meta.json, written with the next change (the status, as the run ends)."""
        self.meta.update(fields)

    def beat(self, force: bool = False) -> None:
        """Rewrite meta.json's heartbeat (at most every HEARTBEAT_S, unless ``force``)."""
        now = time.time()
        if not force and now - self._last_beat < HEARTBEAT_S:
            return
        self._last_beat = now
        self.meta["heartbeat"] = {"host": runio.host(), "pid": os.getpid(), "started": runio.process_start(os.getpid()),
                                  "time": now, "iso": datetime.fromtimestamp(now).isoformat(timespec="seconds")}
        files.write_json(self.run_dir / files.META, self.meta)

    def mark_interrupted(self) -> bool:
        """Record that the process training this run is quitting at once (a second Ctrl-C). A finished run keeps
        its status. True when the run was marked interrupted."""
        if self.meta.get("status") not in ("running", "interrupted"):
            return False
        self.meta["status"] = "interrupted"
        files.write_json(self.run_dir / files.META, self.meta)
        return True

    def mark_failed(self, reason: str) -> None:
        """Record that a run was given up on (its worker died twice), unless it has a result."""
        if self.meta.get("status") not in files.FINISHED:
            self.meta.update(status="failed", failure=reason.splitlines()[0][:500] if reason else "")
            files.write_json(self.run_dir / files.META, self.meta)

    # --- CSV logs -------------------------------------------------------------------------------------

    def open_log(self, name: str, file: str, columns: list[str], live: bool = True) -> runio.CsvLog:
        """The CSV log ``name`` (file ``file``), opened once: appended to where it exists. ``live``: its rows go to
        the sinks too."""
        if name not in self.logs:
            self.logs[name] = log = runio.CsvLog(self.run_dir / file, columns)
            log.live = live
            if name in self.SUMMARIZED:
                self.held[name] = _Held(self.SUMMARIZED[name])
        return self.logs[name]

    def roll_back(self, step: int) -> int:
        """Drop the rows past ``step`` (the checkpoint a resumed run continues from) from every log: how many."""
        return sum(log.roll_back(step) for log in self.logs.values())

    def hold_rows_on_disk(self) -> None:
        """Take in what the summary needs of the rows already on disk (a resumed run's, after its roll-back)."""
        for name, held in self.held.items():
            for row in runio.read_csv(self.logs[name].path):
                held.add(row)

    def write(self, name: str, row: dict[str, Any] | Iterable[Any]) -> None:
        """One row of log ``name``: to its CSV and, where the CSV takes it (a new step), to the sinks."""
        log = self.logs[name]
        values = [row[c] for c in log.columns] if isinstance(row, dict) else list(row)
        if not log.write(values):
            return
        if name in self.held or (log.live and self.sinks):
            as_dict = dict(zip(log.columns, values))
            if name in self.held:   # as the CSV reads back: every cell a float, exactly (csv_cell writes repr)
                self.held[name].add({c: float(csv_cell(v)) for c, v in as_dict.items()})
            if log.live:
                for sink in self.sinks:
                    sink.add(log.path.name, as_dict)

    # --- checkpoints and train.log --------------------------------------------------------------------

    def save_checkpoint(self, save: Callable[[Path], None], epoch: int | None = None) -> None:
        """checkpoints/last.pt (and, with ``epoch``, epoch-N.pt), each written whole by ``save(path)`` to a
        temporary file that then replaces it: last.pt is always a whole checkpoint."""
        last = files.last_checkpoint(self.run_dir)
        last.parent.mkdir(exist_ok=True)
        with files.atomic_path(last) as tmp:
            save(tmp)
        if epoch is not None:
            with files.atomic_path(last.with_name(f"epoch-{epoch}.pt")) as tmp:
                save(tmp)

    def log_text(self, text: str) -> None:
        """Append ``text`` to train.log."""
        with open(self.run_dir / files.TRAIN_LOG, "a") as f:
            f.write(text)

    # --- the end --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the CSV logs and the sinks (again is harmless)."""
        for log in self.logs.values():
            log.close()
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def end(self, status: str, summary: bool = True, **fields: Any) -> dict:
        """Close the logs; write the final status, the end time and ``fields`` into meta.json; with ``summary``,
        write summary.json, built from the rows this process holds, and return it."""
        self.close()
        self.write_meta(status=status, end_time=now_iso(), **fields)
        if not summary:
            return {}
        s = summarize_rows(self.meta, *(self.held[name].rows if name in self.held else []
                                        for name in self.SUMMARIZED), name=self.run_dir.name)
        files.write_json(self.run_dir / files.SUMMARY, s)
        return s
