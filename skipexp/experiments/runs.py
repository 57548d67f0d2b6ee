"""Train one config the way ``skipexp train`` and every member of a comparison do.

One run folder for a config with one seed; with several (``seed: [0, 1, 2]``) one ordinary run folder per
seed, ``<name>-seed<N>``, the seeds trained together where the model allows. ``train --run-dir D --resume``
on an existing D first settles it (:func:`train_or_settle`), the rule a sweep's point commands rely on.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skipexp.core.config import RunConfig
from skipexp.rundir import files

if TYPE_CHECKING:
    from skipexp.training.run import Reporter, RunResult

# label -> the reporter for one training; the library closes what it asked for
ReporterFor = Callable[[str], "Reporter"]


def _close(reporter: Any) -> None:
    if reporter is not None and hasattr(reporter, "close"):
        reporter.close()


def train(cfg: RunConfig, out: Path, run_dir: Path | None = None, *, reporter_for: ReporterFor | None = None,
          should_stop: Callable[[], bool] = lambda: False, progress: Any = None,
          plots: bool = True) -> list[RunResult]:
    """Create the run folder(s) of ``cfg`` and train; one result per seed.

    ``run_dir`` names the folder exactly (for several seeds: ``<run_dir>-seed<N>``); without it the
    folder is ``out/<time>-<name>``.
    """
    from skipexp.training.fit import train_config

    label = cfg.name if len(cfg.seeds) == 1 else f"{cfg.name} ×{len(cfg.seeds)} seeds"
    reporter = reporter_for(label) if reporter_for else None
    try:
        return train_config(cfg, out, run_dir, reporter=reporter, should_stop=should_stop, progress=progress,
                            plots=plots)
    finally:
        _close(reporter)


def resume(run_dir: Path, *, reporter_for: ReporterFor | None = None,
           should_stop: Callable[[], bool] = lambda: False, progress: Any = None) -> RunResult:
    """Continue an interrupted or crashed run from its last checkpoint."""
    from skipexp.training import fit as train_api

    reporter = reporter_for(_run_name(run_dir)) if reporter_for else None
    try:
        return train_api.resume(run_dir, reporter=reporter, should_stop=should_stop, progress=progress)
    finally:
        _close(reporter)


def _run_name(run_dir: Path) -> str:
    """The name the run was trained under (its bar's label), or its folder's where config.yaml is unreadable
    (resume then refuses the folder with its own message)."""
    try:
        return str(files.read_config_dict(run_dir).get("name") or run_dir.name)
    except Exception:
        return run_dir.name


def train_or_settle(cfg: RunConfig, run_dir: Path, *, reporter_for: ReporterFor | None = None,
                    should_stop: Callable[[], bool] = lambda: False, progress: Any = None,
                    notify: Callable[[str], None] = lambda message: None) -> RunResult:
    """``train --run-dir D --resume``: a finished run in D is kept, an interrupted one resumed, anything
    else moved aside and trained afresh (what :func:`skipexp.rundir.reuse.settle` decides).
    ``notify`` hears one line on what was done."""
    from skipexp.rundir.reuse import settle
    from skipexp.training import fit as train_api

    if not run_dir.exists():
        return train(cfg, run_dir.parent, run_dir, reporter_for=reporter_for, should_stop=should_stop,
                     progress=progress)[0]
    state, moved = settle(run_dir, cfg)
    if state == "done":
        from skipexp.rundir.summary import write_summary

        # rewritten, not trusted: a run stopped while it was writing its summary or plots lacks them
        summary = write_summary(run_dir)
        if cfg.log.plots and not (run_dir / files.PLOTS / "grad_heatmap.png").is_file():
            from skipexp.views import plots

            plots.plot_run(run_dir)
        notify(f"{run_dir}: already {summary['status']}; nothing to do")
        return train_api.RunResult(run_dir, summary["status"], summary)
    if state == "resume":
        notify(f"{run_dir}: resuming the interrupted run")
        return resume(run_dir, reporter_for=reporter_for, should_stop=should_stop, progress=progress)
    if moved is not None:
        notify(f"{run_dir}: nothing to resume there; moved it to {moved.name} and training afresh")
    return train(cfg, run_dir.parent, run_dir, reporter_for=reporter_for, should_stop=should_stop,
                 progress=progress)[0]
