"""The names of the files in a run folder, and the one way any of them is replaced: atomically.

Every module that reads or writes a run, comparison or sweep folder takes its file names from here,
and every whole-file write goes through :func:`atomic_write` or :func:`atomic_path`: readers see the old
file or the new one, never half of one, and a killed writer leaves at most a hidden ``.NAME.*.tmp``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from skipexp.core.errors import SkipexpError

STATUSES = ("running", "completed", "diverged", "interrupted", "failed", "crashed")
FINISHED = ("completed", "diverged")  # a result: a sweep does not run these again
# a sweep's grid point without a run: never started, a compare member not started, left out by a staged selection
NOT_RUN = ("missing", "not started", "not chosen")

# --- a run folder ---------------------------------------------------------------------------------
META = "meta.json"              # status, heartbeat, who and when; rewritten on every change
CONFIG = "config.yaml"          # the resolved config the run was trained with
SUMMARY = "summary.json"        # derived from the CSVs; rewritten by report
# the fields of summary.json that a sweep's summary.csv and a comparison's mean over seeds carry
SUMMARY_FIELDS = ("status", "steps", "params", "final_train_loss", "best_train_loss", "final_train_acc",
                  "best_train_acc", "final_test_loss", "best_test_loss", "final_test_acc", "best_test_acc",
                  "final_val_loss", "best_val_loss", "final_val_acc", "best_val_acc",
                  "final_batch_loss", "best_batch_loss", "final_batch_acc", "best_batch_acc", "train_from",
                  "grad_ratio_first_last_start", "grad_ratio_first_last_end",
                  "act_grad_ratio_first_last_start", "act_grad_ratio_first_last_end",
                  "diverged_at_step", "wall_s", "steps_per_s")
METRICS = "metrics.csv"         # one row per log step
EVAL = "eval.csv"               # one row per evaluation
GRAD_NORMS = "grad_norms.csv"   # per-layer weight-gradient norms
ACT_GRAD_NORMS = "act_grad_norms.csv"  # per-boundary activation-gradient norms
ACT_NORMS = "act_norms.csv"     # per-boundary activation RMS
TRAIN_LOG = "train.log"         # tracebacks and notes of the training process
LOCK = ".lock"                  # flock'd while a process trains in the folder
CHECKPOINTS = "checkpoints"     # folder: last.pt, epoch-N.pt
LAST_CHECKPOINT = "last.pt"
PLOTS = "plots"                 # folder of PNGs
REPORT = "report.html"          # run, comparison or sweep: the page to open in a browser (log.html)
LESION_CSV = "lesion.csv"
LESION_PNG = "lesion.png"
SHATTER_CSV = "shatter.csv"
SHATTER_PNG = "shatter.png"
# measurements of a trained run (skipexp landscape / sharpness / jacobian / paths): a CSV of what was
# measured, a JSON of the settings and the numbers that folder tables gather, and a plot each
LANDSCAPE_CSV = "landscape.csv"          # the loss on a 1D or 2D grid around the checkpoint
INTERPOLATION_CSV = "interpolation.csv"  # the loss on the line from the initial to the trained weights
LANDSCAPE_JSON = "landscape.json"
LANDSCAPE_PNG = "landscape.png"
HESSIAN_CSV = "hessian.csv"              # top eigenvalue and trace of the loss Hessian, at init and trained
HESSIAN_JSON = "hessian.json"
SHARPNESS_CSV = "sharpness.csv"          # the same while training (log.sharpness_every), one row per measurement
SHARPNESS_PNG = "sharpness.png"
JACOBIAN_CSV = "jacobian.csv"            # singular values of dh_i/dh_0 per boundary: mean square and spread
JACOBIAN_SPECTRUM_CSV = "jacobian-spectrum.csv"   # every singular value of dh_depth/dh_0
JACOBIAN_JSON = "jacobian.json"
JACOBIAN_PNG = "jacobian.png"
PATHS_CSV = "paths.csv"                  # gradient per path length (Veit et al. 2016)
PATHS_JSON = "paths.json"
PATHS_PNG = "paths.png"
SHATTER_LAGS_CSV = "shatter-lags.csv"   # every line's autocorrelation at lags 1, 2, 4, ... 64

# --- a comparison or sweep folder -----------------------------------------------------------------
SUMMARY_MD = "summary.md"       # comparison: the table as markdown
SUMMARY_CSV = "summary.csv"     # sweep: one row per point
SUMMARY_SEEDS_CSV = "summary-seeds.csv"  # sweep with several seeds: one row per configuration, over its seeds
DIFFERENCES_CSV = "differences.csv"     # sweep with several seeds: differences between configurations, with CIs
SWEEP_FILE = "sweep.yaml"       # sweep: the sweep, its base made absolute
CURVES_PNG = "curves.png"       # sweep, in plots/: every configuration's training curves
RUNS = "runs"                   # comparison: the member run folders


def seed_run_name(name: str, seed: int) -> str:
    """The folder (and run) name of one seed of a config that lists several."""
    return f"{name}-seed{seed}"


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / CHECKPOINTS / LAST_CHECKPOINT


def file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the umask (mkstemp's own 0600 would hide
    meta.json and summary.json from the group, while the CSVs and plots beside them are readable)."""
    try:  # Linux reports the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (by any writer: savefig, torch.save, csv); on a
    clean exit it replaces ``path`` in one step, with the umask's mode; on an error it is removed.

    The temporary name keeps ``path``'s suffix, since some writers pick the format from it.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace ``path`` by ``data`` atomically."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)


def write_json(path: Path, data: Any) -> None:
    """JSON written atomically; inf becomes "inf" and nan null, which every JSON reader accepts."""
    atomic_write(path, json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")


def jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SkipexpError("missing", file=str(path)) from None
    except (OSError, ValueError) as e:
        raise SkipexpError(f"unreadable JSON ({e})", file=str(path)) from None


def write_csv(path: Path, columns: list[str], rows: list[dict], cell: Any = None) -> None:
    """A whole CSV at once, atomically (:class:`skipexp.rundir.runio.CsvLog` is for step-keyed logs
    that grow row by row). ``cell`` turns each value into what is written; missing keys are empty."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: (cell(r.get(c)) if cell else r.get(c, "")) for c in columns})


# --- meta.json ------------------------------------------------------------------------------------

def read_meta(run_dir: Path) -> dict:
    """meta.json of a run folder; a SkipexpError if it is missing or unreadable."""
    return read_json(run_dir / META)


def meta_or_empty(run_dir: Path) -> dict:
    """meta.json, or {} where the folder has none (plots of a folder being created)."""
    p = run_dir / META
    return read_json(p) if p.exists() else {}


# --- config.yaml ----------------------------------------------------------------------------------

def write_config_text(run_dir: Path, text: str) -> None:
    atomic_write(run_dir / CONFIG, text)


def read_config_dict(run_dir: Path) -> dict:
    """config.yaml as plain data (no validation: a run of an older version still reads)."""
    from skipexp.core.yamlio import parse

    return parse((run_dir / CONFIG).read_text()) or {}
