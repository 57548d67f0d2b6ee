"""Training's public API: make run folders (:func:`create_run`), train them, or resume one.

:func:`train_config` is the whole of ``skipexp train``'s work: a folder per seed, trained.
``train_runs`` is the one lifecycle around the engine (:mod:`skipexp.training.loop`) for K >= 1
one-seed configs: lock the folders, set the runs up, train, finish each folder, draw its views.
:func:`train` is K = 1; :func:`train_group` trains K models together where they can be stacked
(seeds of one config, or configs that :func:`skipexp.training.stackable.group_configs` puts in one group)
and otherwise one after another. Nothing here prints: progress goes to a :class:`Reporter`, text to
each folder's train.log.
"""
from __future__ import annotations

import shutil
import sys
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from skipexp.core import data as data_mod
from skipexp.core.config import RunConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.models import count_parameters
from skipexp.rundir import files, runio
from skipexp.rundir.summary import write_summary
from skipexp.training.loop import train_loop
from skipexp.training.memory import check_fits
from skipexp.training.modelstack import make_bank
from skipexp.training.run import Reporter, Run, RunResult
from skipexp.training.setup import (
    create_run,
    finish_meta,
    logged_in,
    note,
    resolve_device,
    setup,
    write_views,
)
from skipexp.training.stackable import group_configs
from skipexp.training.stacked import unsupported

__all__ = ["Reporter", "RunResult", "create_run", "resume", "train", "train_config", "train_group", "train_runs"]


def train_config(cfg: RunConfig, out: Path, run_dir: Path | None = None, *, reporter: Reporter | None = None,
                 should_stop: Callable[[], bool] = lambda: False, progress: data_mod.Progress | None = None,
                 plots: bool = True) -> list[RunResult]:
    """Train ``cfg`` into new folders under ``out`` (or ``run_dir``): one per seed, named ``<name>-seed<N>``
    where it lists several, the seeds together where the model allows."""
    if len(cfg.seeds) == 1:
        return [train(cfg, create_run(cfg, out, run_dir), reporter=reporter, should_stop=should_stop,
                      progress=progress, plots=plots)]
    cfgs = [cfg.replace(seed=s, name=files.seed_run_name(cfg.name, s)) for s in cfg.seeds]
    dirs = [create_run(c, out, None if run_dir is None else run_dir.parent / files.seed_run_name(run_dir.name, s))
            for c, s in zip(cfgs, cfg.seeds)]
    return train_group(cfgs, dirs, reporter=reporter, should_stop=should_stop, progress=progress, plots=plots)


def train(cfg: RunConfig, run_dir: Path, *, reporter: Reporter | None = None,
          should_stop: Callable[[], bool] = lambda: False, resume: bool = False,
          progress: data_mod.Progress | None = None, plots: bool = True) -> RunResult:
    """Train ``cfg`` into ``run_dir`` (made by :func:`create_run`), or continue it with ``resume``."""
    return train_runs([cfg], [run_dir], reporter=reporter, should_stop=should_stop, resume=resume,
                      progress=progress, plots=plots)[0]


def resume(run_dir: Path, *, reporter: Reporter | None = None, should_stop: Callable[[], bool] = lambda: False,
           progress: data_mod.Progress | None = None) -> RunResult:
    """Continue an interrupted, failed or crashed run from checkpoints/last.pt (see runio.check_resumable)."""
    cfg = runio.check_resumable(run_dir)
    return train(cfg, run_dir, reporter=reporter, should_stop=should_stop, resume=True, progress=progress)


def train_group(cfgs: list[RunConfig], run_dirs: list[Path], *, reporter: Reporter | None = None,
                should_stop: Callable[[], bool] = lambda: False, progress: data_mod.Progress | None = None,
                plots: bool = True) -> list[RunResult]:
    """Train one-seed configs of one group (see :mod:`skipexp.training.stackable`) into their run folders
    (from create_run).

    Together where :func:`unsupported` allows; otherwise one after another, noting why in meta.json.
    """
    reason = unsupported(cfgs[0].replace(seed=[c.seeds[0] for c in cfgs])) if len(cfgs) > 1 else "a single seed"
    if reason is None:
        for run_dir in run_dirs:
            note(run_dir, {"vectorized": True, "seeds_together": [c.seeds[0] for c in cfgs],
                           "trained_with": [d.name for d in run_dirs]})
        return train_runs(cfgs, run_dirs, reporter=reporter, should_stop=should_stop, progress=progress,
                          plots=plots)
    results: list[RunResult] = []
    started = 0
    try:
        for cfg, run_dir in zip(cfgs, run_dirs):
            started += 1
            note(run_dir, {"vectorized": False, "vectorized_reason": reason})
            results.append(train(cfg, run_dir, reporter=reporter, should_stop=should_stop, progress=progress,
                                 plots=plots))
            if results[-1].status == "interrupted":
                break
    finally:
        for run_dir in run_dirs[started:]:   # folders of seeds that never started
            shutil.rmtree(run_dir, ignore_errors=True)
    return results




def train_runs(cfgs: list[RunConfig], run_dirs: list[Path], *, reporter: Reporter | None = None,
               should_stop: Callable[[], bool] = lambda: False, resume: bool = False,
               progress: data_mod.Progress | None = None, plots: bool = True) -> list[RunResult]:
    """Train K >= 1 models of one shape, one per config and folder, together (resume: K = 1).

    The configs must form one group of :func:`~skipexp.training.stackable.group_configs`: equal but for
    per-model values. A bad input found while setting up (data files, device) leaves no folder behind;
    a run that got going and then stopped on one is interrupted, resumable from its checkpoint.
    """
    if len(cfgs) > 1 and len(group_configs(cfgs)) != 1:
        raise ValueError("models trained together must have equal configs but for per-model values "
                         "(skipexp.training.stackable.PER_MODEL)")
    reporter = reporter or Reporter()
    locks: list[runio.RunLock] = []
    try:
        for run_dir in run_dirs:
            locks.append(runio.RunLock(run_dir))
    except SkipexpError:
        for lock in locks:
            lock.release()
        if not resume:
            for run_dir in run_dirs:
                shutil.rmtree(run_dir, ignore_errors=True)
        raise
    together = f" ({len(cfgs)} models together)" if len(cfgs) > 1 else ""
    logs = [open(run_dir / files.TRAIN_LOG, "a") for run_dir in run_dirs]
    for log in logs:
        log.write(f"[{datetime.now():%Y-%m-%d %H:%M:%S}] {'resume' if resume else 'train'} {' '.join(sys.argv)}"
                  f"{together}\n")
        log.flush()
    runs: list[Run] = []
    done: dict[int, RunResult] = {}

    def finish(k: int, status: str) -> None:
        run = runs[k]
        for csv_log in run.logs.values():
            csv_log.close()
        finish_meta(run.run_dir, run, status)
        summary = write_summary(run.run_dir, check=False)   # rows this process wrote and just closed
        logs[k].write(f"status {status}: {summary}\n")
        logs[k].close()
        done[k] = RunResult(run.run_dir, status, summary)

    try:
        need = check_fits(cfgs, resolve_device(cfgs[0].device))   # before building anything: refused if too big
        for cfg, run_dir, log in zip(cfgs, run_dirs, logs):
            # models trained together share one copy of the data
            runs.append(setup(cfg, run_dir, resume, progress, splits=runs[0].data if runs else None))
            run = runs[-1]
            log.write(f"device {run.device}, {count_parameters(run.model)} parameters, "
                      f"{run.total_steps} steps from step {run.step}{together}; {need}\n")
            log.flush()
        reporter.on_runs([(run.cfg.name, run.run_dir) for run in runs])
        train_loop(make_bank(runs), runs, reporter, should_stop, finish)
    except SkipexpError:
        for log in logs:
            log.close()
        if len(runs) == len(cfgs):  # they got going, then stopped: resumable from their checkpoints
            for k, run in enumerate(runs):
                if k not in done:
                    finish_meta(run.run_dir, run, "interrupted")
        elif not resume:  # bad input found while setting up (data files, device): leave no folder behind
            for run_dir in run_dirs:
                shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except BaseException as e:
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        for k, (run_dir, log) in enumerate(zip(run_dirs, logs)):
            if k in done:
                continue
            log.write(traceback.format_exc())
            log.close()
            finish_meta(run_dir, runs[k] if k < len(runs) else None, status)
        logged_in(e, [d for k, d in enumerate(run_dirs) if k not in done])
        raise
    finally:
        for run in runs:
            for csv_log in run.logs.values():
                csv_log.close()
        for lock in locks:
            lock.release()
    results = [done[k] for k in range(len(cfgs))]
    for cfg, result in zip(cfgs, results):
        write_views(cfg, result.run_dir, plots)
    for result in results:
        reporter.on_end(result.status, result.summary)
    return results
