"""Training's way in: a config into new run folders (:func:`train_config`), an interrupted run continued
(:func:`resume`), an existing folder settled first (:func:`train_or_resume`), and under all three
:func:`fit`: K >= 1 one-model configs, each in its folder, trained together by the loop.

Nothing here prints: progress goes to a :class:`~skipexp.training.run.Reporter`, text to each folder's
train.log, and what a run shows besides its files (TensorBoard's live events, its plots) to the ``views``
the caller gives (:class:`Views`; the CLI and ``skipexp.train`` give :class:`skipexp.views.run_views.RunViews`).
"""
from __future__ import annotations

import shutil
import sys
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from skipexp.core import data as data_mod
from skipexp.core.config import RunConfig, dump
from skipexp.core.errors import SkipexpError
from skipexp.core.models import count_parameters
from skipexp.rundir import files, runio
from skipexp.rundir.folder import RowSink, RunFolder
from skipexp.rundir.reuse import reuse_or_move_aside
from skipexp.rundir.summary import write_summary
from skipexp.training.loop import train_loop
from skipexp.training.memory import check_fits
from skipexp.training.modelstack import model_stack
from skipexp.training.run import Reporter, Run, RunResult
from skipexp.training.setup import resolve_device, setup
from skipexp.training.stackable import group_configs
from skipexp.training.stacked import unstackable_reason
from skipexp.training.step import Stepper


class Views(Protocol):
    """What a run shows besides its files: where its rows go as they are written, and what it draws as it ends."""

    def sink(self, cfg: RunConfig, run_dir: Path, meta: dict, rolled_back: int) -> RowSink | None: ...
    def draw(self, cfg: RunConfig, run_dir: Path) -> None: ...


class NoViews:
    """Its files only: no live events, nothing drawn."""

    def sink(self, cfg: RunConfig, run_dir: Path, meta: dict, rolled_back: int) -> RowSink | None:
        return None

    def draw(self, cfg: RunConfig, run_dir: Path) -> None:
        return None


def never() -> bool:
    return False


def create_run(cfg: RunConfig, out: Path, run_dir: Path | None = None) -> Path:
    """Make the run folder of ``cfg`` (``out/<time>-<name>``, or ``run_dir`` exactly) with its config.yaml and a
    first meta.json."""
    return RunFolder.create(out, cfg.name, cfg.seed, dump(cfg), run_dir).run_dir


def train_config(cfg: RunConfig, out: Path, run_dir: Path | None = None, *, reporter: Reporter | None = None,
                 should_stop: Callable[[], bool] = never, progress: data_mod.Progress | None = None,
                 views: Views | None = None) -> list[RunResult]:
    """Train ``cfg`` into new folders under ``out`` (or ``run_dir``): one per seed, named ``<name>-seed<N>``
    where it lists several (``<run_dir>-seed<N>``), the seeds trained together."""
    if len(cfg.seeds) == 1:
        cfgs, dirs = [cfg], [create_run(cfg, out, run_dir)]
    else:
        cfgs = [cfg.replace(seed=s, name=files.seed_run_name(cfg.name, s)) for s in cfg.seeds]
        dirs = [create_run(c, out, None if run_dir is None else run_dir.parent / files.seed_run_name(run_dir.name, s))
                for c, s in zip(cfgs, cfg.seeds)]
    return fit(cfgs, dirs, reporter=reporter, should_stop=should_stop, progress=progress, views=views)


def resume(run_dir: Path, *, reporter: Reporter | None = None, should_stop: Callable[[], bool] = never,
           progress: data_mod.Progress | None = None, views: Views | None = None) -> RunResult:
    """Continue an interrupted, failed or crashed run from checkpoints/last.pt (see runio.check_resumable)."""
    cfg = runio.check_resumable(run_dir)
    return fit([cfg], [run_dir], resume=True, reporter=reporter, should_stop=should_stop, progress=progress,
               views=views)[0]


def train_or_resume(cfg: RunConfig, run_dir: Path, *, reporter: Reporter | None = None,
                    should_stop: Callable[[], bool] = never, progress: data_mod.Progress | None = None,
                    views: Views | None = None, notify: Callable[[str], None] = lambda message: None) -> RunResult:
    """``train --run-dir D --resume``: a finished run in D is kept, an interrupted one resumed, anything else moved
    aside and trained afresh (:func:`skipexp.rundir.reuse.reuse_or_move_aside`); ``notify`` hears what was done."""
    hooks = {"reporter": reporter, "should_stop": should_stop, "progress": progress, "views": views}
    state, moved = reuse_or_move_aside(run_dir, cfg) if run_dir.exists() else ("new", None)
    if state == "done":
        # rewritten, not trusted: a run stopped while it was writing its summary or plots lacks them
        summary = write_summary(run_dir)
        if cfg.log.plots and not (run_dir / files.PLOTS / "grad_heatmap.png").is_file():
            (views or NoViews()).draw(cfg, run_dir)
        notify(f"{run_dir}: already {summary['status']}; nothing to do")
        return RunResult(run_dir, summary["status"], summary)
    if state == "resume":
        notify(f"{run_dir}: resuming the interrupted run")
        return fit([runio.check_resumable(run_dir)], [run_dir], resume=True, **hooks)[0]
    if moved is not None:
        notify(f"{run_dir}: nothing to resume there; moved it to {moved.name} and training afresh")
    return fit([cfg], [create_run(cfg, run_dir.parent, run_dir)], **hooks)[0]


def fit(cfgs: list[RunConfig], run_dirs: list[Path], *, resume: bool = False, reporter: Reporter | None = None,
        should_stop: Callable[[], bool] = never, progress: data_mod.Progress | None = None,
        views: Views | None = None) -> list[RunResult]:
    """Train K >= 1 models of one shape, one per config and folder (from :func:`create_run`), together as one
    stack (resume: K = 1): lock the folders, set the runs up, train, draw each folder's views.

    The configs must form one group of :func:`~skipexp.training.stackable.group_configs`: equal but for
    per-model values. A bad input found while setting up (data files, device) leaves no folder behind;
    a run that got going and then stopped on one is interrupted, resumable from its checkpoint.
    """
    if len(cfgs) > 1 and len(group_configs(cfgs)) != 1:
        raise ValueError("models trained together must have equal configs but for per-model values "
                         "(skipexp.training.stackable.PER_MODEL)")
    reporter, views = reporter or Reporter(), views or NoViews()
    folders = _lock(run_dirs, resume)
    together = f" ({len(cfgs)} models together)" if len(cfgs) > 1 else ""
    for folder in folders:
        folder.log_text(f"[{datetime.now():%Y-%m-%d %H:%M:%S}] {'resume' if resume else 'train'} "
                        f"{' '.join(sys.argv)}{together}\n")
        if len(cfgs) > 1 and not resume:
            folder.write_meta(vectorized=True, seeds_together=[c.seeds[0] for c in cfgs],
                        trained_with=[d.name for d in run_dirs])
    runs: list[Run] = []
    try:
        need = check_fits(cfgs, resolve_device(cfgs[0].device))   # before building anything: refused if too big
        for cfg, folder in zip(cfgs, folders):
            # models trained together share one copy of the data
            run = setup(cfg, folder, resume, progress, views.sink, splits=runs[0].data if runs else None)
            if not runs and (why := unstackable_reason(run.model)) is not None:
                raise SkipexpError(f"cannot train this model: {why}", key="model")
            runs.append(run)
            folder.log_text(f"device {run.device}, {count_parameters(run.model)} parameters, "
                            f"{run.total_steps} steps from step {run.step}{together}; {need}\n")
        reporter.on_runs([(run.cfg.name, run.run_dir) for run in runs])
        lead = runs[0]
        train_loop(Stepper(model_stack(runs), lead.data, lead.device, lead.cfg.train), runs, reporter, should_stop)
    except SkipexpError:
        if len(runs) == len(cfgs):  # they got going, then stopped: resumable from their checkpoints
            for run in runs:
                if run.status is None:
                    run.folder.end("interrupted", summary=False, train_seconds=round(run.seconds, 3),
                                      steps_done=run.step)
        else:
            for folder in folders:
                folder.close()
            if not resume:  # bad input found while setting up (data files, device): leave no folder behind
                for run_dir in run_dirs:
                    shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except BaseException as e:
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        for k, folder in enumerate(folders):
            if k < len(runs) and runs[k].status is not None:
                continue
            folder.log_text(traceback.format_exc())
            fields = {} if k >= len(runs) else {"train_seconds": round(runs[k].seconds, 3), "steps_done": runs[k].step}
            folder.end(status, summary=False, **fields)
        logged_in(e, [f.run_dir for k, f in enumerate(folders) if k >= len(runs) or runs[k].status is None])
        raise
    finally:
        for folder in folders:
            folder.close()
            folder.unlock()
    for run in runs:
        _draw(views, run)
    for run in runs:
        reporter.on_end(run.result.status, run.result.summary)
    return [run.result for run in runs]


def _lock(run_dirs: list[Path], resume: bool) -> list[RunFolder]:
    """Each folder, locked for this process; none where one is taken (and, training afresh, the folders gone)."""
    folders: list[RunFolder] = []
    try:
        for run_dir in run_dirs:
            folders.append(RunFolder(run_dir))
            folders[-1].lock()
    except SkipexpError:
        for folder in folders:
            folder.unlock()
        if not resume:
            for run_dir in run_dirs:
                shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return folders


def _draw(views: Views, run: Run) -> None:
    """The run's views; where drawing breaks, the traceback goes to its train.log (``report`` can redraw them)."""
    try:
        views.draw(run.cfg, run.run_dir)
    except Exception as e:
        run.folder.log_text(traceback.format_exc())
        logged_in(e, [run.run_dir])
        raise


def logged_in(error: BaseException, run_dirs: list[Path]) -> None:
    """Note on ``error`` the train.log files its traceback went to (``error.train_logs``), so that the one line
    the command prints points at them, and only where they exist."""
    try:
        error.train_logs = [str(d / files.TRAIN_LOG) for d in run_dirs]  # type: ignore[attr-defined]
    except AttributeError:   # an exception type without attributes of its own
        pass

