"""Export run folders to TensorBoard event files, from the CSVs on disk (never from a live model).

Each run gets ``<run>/tensorboard/``, so ``tensorboard --logdir runs/`` lists single runs, the members of
comparisons and every point of a sweep, named by their folders. Exporting again replaces the old events.
Tags (TensorBoard groups charts by the part before the slash):

- ``train/loss``, ``train/acc``, ``train/lr``, ``train/grad_norm_total``; ``test/loss``, ``test/acc``
- ``grad_norm/<layer>``: weight-gradient norm of each layer (``input``, ``blocks.0.fc1``, ..., ``head``)
- ``act_grad_norm/h<i>``: norm of the loss gradient at block boundary i; ``act_rms/h<i>``: activation RMS
- histograms ``grad_norm_log10`` and ``act_grad_norm_log10``: the spread over layers at each logged step
"""
from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from skipexp.core.errors import SkipexpError
from skipexp.rundir import files, runio

INSTALL_HINT = "pip install 'skipexp[tensorboard]'"
SUBDIR = "tensorboard"

# file in the run folder -> tag group; each column but `step` becomes <group>/<column>
PER_LAYER = {files.GRAD_NORMS: "grad_norm", files.ACT_GRAD_NORMS: "act_grad_norm", files.ACT_NORMS: "act_rms"}
HISTOGRAMS = {files.GRAD_NORMS: "grad_norm_log10", files.ACT_GRAD_NORMS: "act_grad_norm_log10"}
TRAIN_SCALARS = {"train_loss": "train/loss", "train_acc": "train/acc", "lr": "train/lr",
                 "grad_norm_total": "train/grad_norm_total"}
TEST_SCALARS = {"test_loss": "test/loss", "test_acc": "test/acc"}


def writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SkipexpError(f"TensorBoard export needs the tensorboard package, which is not installed; "
                           f"{INSTALL_HINT}", key="tensorboard") from None
    return SummaryWriter


def _start_time(meta: dict) -> float | None:
    try:
        return datetime.fromisoformat(meta["start_time"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def export_run(run_dir: Path, histograms: bool = True) -> Path:
    """Write ``run_dir``'s logged values as TensorBoard events into ``run_dir/tensorboard``; return that folder."""
    import numpy as np

    meta = runio.require_run_dir(run_dir)
    SummaryWriter = writer_class()
    out = run_dir / SUBDIR
    out.mkdir(exist_ok=True)
    for old in out.glob("events.out.tfevents.*"):  # a re-export replaces, never duplicates
        old.unlink()
    # wall times from the run's own clock, so TensorBoard's "relative" axis shows training seconds
    t0 = _start_time(meta)
    metrics = runio.read_csv(run_dir / files.METRICS)
    walltime = {int(r["step"]): t0 + r["elapsed_s"] for r in metrics} if t0 is not None else {}
    writer = SummaryWriter(log_dir=str(out))
    try:
        config_text = (run_dir / files.CONFIG).read_text()
        writer.add_text("config", "".join("    " + line + "\n" for line in config_text.splitlines()), 0)
        for r in metrics:
            step = int(r["step"])
            for col, tag in TRAIN_SCALARS.items():
                writer.add_scalar(tag, r[col], step, walltime=walltime.get(step))
        for r in runio.read_csv(run_dir / files.EVAL):
            step = int(r["step"])
            for col, tag in TEST_SCALARS.items():
                writer.add_scalar(tag, r[col], step, walltime=walltime.get(step))
        for name, group in PER_LAYER.items():
            for r in runio.read_csv(run_dir / name):
                step = int(r["step"])
                values = {k: v for k, v in r.items() if k != "step"}
                for col, v in values.items():
                    writer.add_scalar(f"{group}/{col}", v, step, walltime=walltime.get(step))
                logs = [math.log10(v) for v in values.values() if math.isfinite(v) and v > 0]
                if histograms and name in HISTOGRAMS and logs:
                    writer.add_histogram(HISTOGRAMS[name], np.array(logs), step, walltime=walltime.get(step))
    finally:
        writer.close()
    return out


def find_runs(root: Path) -> list[Path]:
    """Every run folder at or below ``root`` (a run, a comparison, a sweep, or a folder of them)."""
    if runio.is_run_dir(root):
        return [root]
    return sorted(p.parent for p in root.rglob(files.META) if runio.is_run_dir(p.parent))


def export_tree(root: Path, histograms: bool = True) -> list[Path]:
    """Export every run folder under ``root``; return their tensorboard folders."""
    if not root.is_dir():
        raise SkipexpError("no such folder", file=str(root))
    runs = find_runs(root)
    if not runs:
        raise SkipexpError("holds no skipexp run folders", file=str(root))
    return [export_run(r, histograms) for r in runs]
