"""The run folder on disk: exclusive creation, flushed CSV rows, atomic JSON, status and heartbeat.

Everything that reads a run (summary, plots, report, compare, sweep) goes through here, so a
finished, interrupted, diverged or killed run can always be re-read and re-plotted.
"""
from __future__ import annotations

import csv
import os
import socket
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import csv_cell
from skipexp.rundir.files import CONFIG, FINISHED, LOCK, META, read_json

if TYPE_CHECKING:
    from skipexp.core.config import RunConfig

METRICS_COLUMNS = ["step", "epoch", "train_loss", "train_acc", "lr", "grad_norm_total", "elapsed_s"]
EVAL_COLUMNS = ["step", "epoch", "test_loss", "test_acc"]
VAL_COLUMNS = ["val_loss", "val_acc"]   # with a validation split (data.val_size)
TRAIN_COLUMNS = ["train_loss", "train_acc"]   # on the training split, or a fixed sample of it (log.train_eval_size)


def eval_columns(val: bool, train: bool = False) -> list[str]:
    """eval.csv's columns: the test set's, the validation split's where the run holds one out, and the
    training data's where the run evaluates it."""
    return EVAL_COLUMNS + (VAL_COLUMNS if val else []) + (TRAIN_COLUMNS if train else [])

# A run whose heartbeat is older than this, and whose process cannot be seen, has crashed.
STALE_AFTER_S = 120.0


def timestamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def check_folder(out: Path, key: str = "--out") -> None:
    """Refuse ``out`` where it, or a folder above it, is a file: it could never hold run folders."""
    for p in (out, *out.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                where = "" if p == out else f" ({p} is a file)"
                raise SkipexpError(f"is not a folder{where}; give a folder to put run folders in (it is made if "
                                   "missing)", file=str(out), key=key)
            return


def check_writable(out: Path) -> None:
    """Fail before training if ``out`` cannot take a run: a file, read-only or full."""
    check_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".skipexp-write-test-") as f:
            f.write(b"x" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise SkipexpError(f"cannot write here: {e.strerror or e}", file=str(out), key="--out") from None


def create_run_dir(out: Path, name: str, stamp: str | None = None) -> Path:
    """``out/<stamp>-<name>[-<n>]``, created exclusively: two runs never share a folder."""
    return create_exclusive(out, f"{stamp or timestamp()}-{name}")


def create_exclusive(out: Path, base: str) -> Path:
    """``out/<base>``, or ``out/<base>-<n>`` with the first free n: mkdir is atomic, so no two callers
    (threads, processes, make -j) ever get the same folder."""
    check_writable(out)
    for n in range(1, 10_000):
        path = out / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise SkipexpError(f"too many folders named {base} in the same second", file=str(out))


class CsvLog:
    """Appends rows to a CSV and flushes each one, so a killed process keeps every logged row.

    Opening an existing file (resume) repairs a half-written last line; :meth:`roll_back` then drops the
    rows past the checkpoint the run continues from (a killed process wrote them after it), so the file
    holds the rows of one run only: those up to the checkpoint and those the resumed run writes after it.
    Rows at or below the last step on disk are never written twice.
    """

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = path, columns
        self.last_step = -1
        self.live = True   # whether its rows go to a run's sinks too (skipexp.rundir.folder)
        if path.exists() and path.stat().st_size > 0:
            self._repair()
            rows = read_csv(path)
            if rows and rows[0].keys() != set(columns) and list(rows[0]) != columns:
                raise SkipexpError(f"has columns {list(rows[0])}, expected {columns}", file=str(path))
            self.last_step = int(rows[-1]["step"]) if rows else -1
            self._f = open(path, "a", newline="")
        else:
            self._f = open(path, "w", newline="")
            self._f.write(",".join(columns) + "\n")
            self._f.flush()

    def _repair(self) -> None:
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def roll_back(self, step: int) -> int:
        """Cut the file after its last row at or below ``step`` (the step of the checkpoint a resumed run
        continues from): how many rows were dropped. Everything from the first row past ``step`` goes,
        including any row that would break the order of steps."""
        data = self.path.read_bytes()
        head = data.find(b"\n") + 1
        if head == 0:
            return 0
        cut, kept_step, dropped = len(data), -1, 0
        at = head
        while at < len(data):
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end + 1
            try:
                row_step = int(float(data[at:end].split(b",", 1)[0]))
            except ValueError:
                row_step = step + 1   # not a row of ours: nothing from here on is kept
            if cut == len(data) and (row_step > step or row_step <= kept_step):
                cut = at
            if cut < len(data):
                dropped += 1
            else:
                kept_step = row_step
            at = end
        if cut < len(data):
            self._f.flush()
            os.truncate(self.path, cut)
        self.last_step = kept_step
        return dropped

    def write(self, row: dict[str, Any] | Iterable[Any]) -> bool:
        """Append one row, unless its step is already on disk: whether it was written."""
        values = [row[c] for c in self.columns] if isinstance(row, dict) else list(row)
        step = int(values[0])
        if step <= self.last_step:
            return False
        # one write per row: a kill lands between rows, not inside one
        self._f.write(",".join(csv_cell(v) for v in values) + "\n")
        self._f.flush()
        self.last_step = step
        return True

    def close(self) -> None:
        self._f.close()


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows as dicts of floats; a missing file is no rows, a half-written last line is dropped."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        text = f.read()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = []
    reader = csv.DictReader(text.splitlines())
    for r in reader:
        try:
            rows.append({k: float(v) for k, v in r.items() if k is not None})
        except (TypeError, ValueError):
            continue
    return rows


def csv_columns(path: Path) -> list[str]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


# --- meta.json: status and heartbeat -------------------------------------------------------------

def host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie, dead but not yet reaped, has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None where unknown.

    With the pid it tells one process from a later one that reused its pid, as happens after a
    container restart, so a dead run is not mistaken for a running one.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name before ")" may hold spaces


def effective_status(meta: dict) -> str:
    """The status on disk, except that a 'running' run whose process is gone is 'crashed'."""
    status = meta.get("status", "unknown")
    if status != "running":
        return status
    beat = meta.get("heartbeat", {})
    if beat.get("host") == host():
        pid = beat.get("pid")
        if not isinstance(pid, int) or pid == os.getpid() or not pid_alive(pid):
            return "crashed"
        started = beat.get("started")
        return "crashed" if started is not None and process_start(pid) not in (None, started) else "running"
    age = time.time() - float(beat.get("time", 0))
    return "running" if age < STALE_AFTER_S else "crashed"


def is_run_dir(path: Path) -> bool:
    return (path / META).is_file() and (path / CONFIG).is_file()


def require_run_dir(path: Path) -> dict:
    """meta.json of a skipexp run folder, or a SkipexpError saying what the folder is not."""
    if not path.exists():
        raise SkipexpError("no such folder", file=str(path))
    if not path.is_dir():
        raise SkipexpError("not a folder; expected a skipexp run folder", file=str(path))
    if not is_run_dir(path):
        raise SkipexpError("not a skipexp run folder (no meta.json and config.yaml)", file=str(path))
    meta = read_json(path / META)
    if meta.get("tool") != "skipexp":
        raise SkipexpError("meta.json was not written by skipexp", file=str(path))
    return meta


def check_resumable(run_dir: Path) -> RunConfig:
    """The config of a run that ``resume`` may continue, or a SkipexpError saying why it may not.

    Torch-free, so the CLI refuses in a fraction of a second.
    """
    from skipexp.core import config as config_mod

    meta = require_run_dir(run_dir)
    status = effective_status(meta)
    if status in FINISHED:
        raise SkipexpError(f"the run is {status}; there is nothing to resume", file=str(run_dir))
    if status == "running":
        raise SkipexpError(f"the run is still running (pid {meta.get('heartbeat', {}).get('pid')})",
                           file=str(run_dir))
    if status not in ("interrupted", "failed", "crashed"):
        raise SkipexpError(f"meta.json says status {status!r}; only an interrupted, failed or crashed run "
                           "can be resumed", file=str(run_dir))
    cfg = config_mod.load(run_dir / CONFIG)
    if cfg.log.checkpoint == "none":
        raise SkipexpError("this run was trained with log.checkpoint: none, so it kept no checkpoint to resume "
                           "from; train it again (log.checkpoint: last keeps one)", file=str(run_dir))
    return cfg


class RunLock:
    """An exclusive lock on a run folder for as long as one process trains in it.

    Two ``resume`` commands started together on the same crashed run would both see it as
    resumable; the lock lets exactly one of them in. The kernel drops it when the process dies.
    """

    def __init__(self, run_dir: Path):
        self._f = open(run_dir / LOCK, "a")
        try:
            import fcntl
        except ImportError:  # no flock (Windows): the status check in resume is all there is
            return
        try:
            fcntl.flock(self._f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.close()
            raise SkipexpError("another skipexp process is training in this run folder", file=str(run_dir)) from None

    def release(self) -> None:
        self._f.close()
