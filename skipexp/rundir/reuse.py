"""The state of an existing run folder (a sweep point's, or ``train --run-dir DIR``'s), and settling it before a run.

Re-running a sweep is safe because a point's state is read from its folder (:func:`folder_state`):
``done`` (completed or diverged: a result, never run again), ``resume`` (interrupted or crashed with
``checkpoints/last.pt``: continued from it), ``stale`` (a folder with nothing to resume: moved aside to
``DIR.stale-<time>`` and trained afresh), ``running`` (another process is on it: left alone) or ``new``.
``skipexp train --run-dir DIR --resume`` applies the same rule (:func:`reuse_or_move_aside`), so the Makefile can
re-run any point command without harm.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from skipexp.core.config import RunConfig, flatten, from_dict
from skipexp.core.errors import SkipexpError
from skipexp.rundir import files, runio


def folder_state(run_dir: Path) -> str:
    """new | done | running | resume | stale (see the module docstring)."""
    if not run_dir.exists():
        return "new"
    if not runio.is_run_dir(run_dir):
        return "stale"
    try:
        status = runio.effective_status(files.read_meta(run_dir))
    except SkipexpError:
        return "stale"
    if status in files.FINISHED:
        return "done"
    if status == "running":
        return "running"
    if status in ("interrupted", "crashed", "failed") and files.last_checkpoint(run_dir).is_file():
        return "resume"
    return "stale"


def move_aside(run_dir: Path) -> Path:
    target = run_dir.with_name(f"{run_dir.name}.stale-{runio.timestamp()}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.stale-{runio.timestamp()}-{n}")
    os.replace(run_dir, target)
    return target


# Keys that change how fast a run goes or what it draws, not what it computes: a point may be resumed with
# other values (a sweep folder made when points drew their plots is still this sweep's).
NEUTRAL_KEYS = ("name", "train.threads", "device", "log.plots", "log.html")


def config_differences(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two config dicts: key -> (a's value, b's value)."""
    fa, fb = flatten(a), flatten(b)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
            if k not in ignore and fa.get(k) != fb.get(k)}


def stored_config(run_dir: Path) -> dict:
    """A run folder's config.yaml as today's config reads it: a key added to skipexp since the run was written
    takes its default (the value the run was trained with), so that the run is not taken for another
    experiment. A config.yaml that no longer validates is compared as written."""
    return _as_read(files.read_config_dict(run_dir))


def _as_read(raw: dict) -> dict:
    """``raw`` through today's config (defaults filled in, values normalised), or as it is where it fails."""
    try:
        return from_dict(raw).to_dict()
    except SkipexpError:
        return raw


def reuse_or_move_aside(run_dir: Path, cfg: RunConfig | dict) -> tuple[str, Path | None]:
    """Decide what ``train --run-dir DIR --resume`` does with an existing DIR: (state, moved-aside path).

    A folder holding a run of another config (``cfg``, or its dict) is an error: resuming it would mix
    two experiments.
    """
    cfg_dict = cfg.to_dict() if isinstance(cfg, RunConfig) else _as_read(cfg)
    state = folder_state(run_dir)
    if state == "running":
        raise SkipexpError("another process is training this run now", file=str(run_dir))
    if state in ("done", "resume"):
        diff = config_differences(stored_config(run_dir), cfg_dict, NEUTRAL_KEYS)
        if diff:
            k, (old, new) = next(iter(diff.items()))
            raise SkipexpError(f"holds a run with {k}={old!r}, not {new!r}; move it away or change --run-dir",
                               file=str(run_dir), key=k)
    moved = move_aside(run_dir) if state == "stale" else None
    return state, moved


def read_status(run_dir: Path) -> str:
    if not runio.is_run_dir(run_dir):
        return "missing"
    try:
        return runio.effective_status(files.read_meta(run_dir))
    except SkipexpError:
        return "unknown"


