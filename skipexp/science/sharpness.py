"""Sharpness: the top eigenvalue and the trace of the Hessian of the training loss, at init and at the checkpoint.

The top eigenvalue (the curvature along the sharpest direction; Keskar et al. 2017, Ghorbani et al. 2019)
comes from Lanczos on Hessian-vector products, the trace (the summed curvature over all directions) from
Hutchinson's estimator (:mod:`skipexp.core.curvature`). Both are of the mean cross-entropy on a fixed
training sample, in eval mode, with respect to every parameter. A run trained with ``log.sharpness_every``
also holds ``sharpness.csv``, the same measured while it trained; the figure draws both.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skipexp.core import data as data_mod
from skipexp.core.curvature import COLUMNS, sharpness
from skipexp.rundir import files
from skipexp.science import figures
from skipexp.science import members as members_mod


@dataclass
class Settings:
    samples: int = 1024      # training examples the loss is taken over
    iterations: int = 20     # at most this many Lanczos steps (it stops once the top value settles to 0.1 %)
    probes: int = 20         # Hutchinson probes for the trace
    seed: int = 0            # of the random start and probes


def measure(run: members_mod.Loaded, s: Settings) -> list[dict]:
    """Rows of hessian.csv: the initial model (step 0) and the checkpoint's."""
    x, y = run.sample(s.samples)
    rows = []
    for state, model, step in (("init", run.initial(), 0), ("trained", run.trained, run.step)):
        got = sharpness(model, x, y, s.iterations, s.probes, s.seed)
        rows.append({"state": state, "step": step, **got.row()})
    return rows


def numbers(rows: list[dict]) -> dict:
    by = {r["state"]: r for r in rows}
    return {"top_trained": by["trained"]["top_eigenvalue"], "trace_trained": by["trained"]["trace"],
            "top_init": by["init"]["top_eigenvalue"], "trace_init": by["init"]["trace"],
            "loss_trained": by["trained"]["loss"]}


def study(path: Path, s: Settings, progress: data_mod.Progress | None = None,
          on_member: Callable[[members_mod.Member, dict], None] | None = None) -> members_mod.Result:
    """Measure every run of a run, comparison or sweep folder; write hessian.csv and hessian.json into each,
    the folder's tables and the figures."""
    f = members_mod.folder(path)
    cache: dict = {}
    per_run = []
    for m in f.members:
        run = members_mod.load(m.run_dir, cache, progress)
        members_mod.set_threads(run.cfg, min(s.samples, len(run.splits.y_train)))
        rows = measure(run, s)
        files.write_csv(m.run_dir / files.HESSIAN_CSV, ["state", "step", *COLUMNS], rows)
        nums = numbers(rows)
        files.write_json(m.run_dir / files.HESSIAN_JSON, {
            "settings": {**vars(s), "samples": min(s.samples, len(run.splits.y_train))}, "numbers": nums})
        per_run.append(nums)
        if on_member is not None:
            on_member(m, nums)
    rows = members_mod.member_rows(f, per_run)
    tables, plots = figures.write_tables_and_plots(f, figures.MEASURES["sharpness"], rows)
    return members_mod.Result(f, rows, tables, plots)
