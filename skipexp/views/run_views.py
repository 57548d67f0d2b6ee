"""What a training process shows of its runs besides their CSVs: TensorBoard's live events as rows are
written, and the plots and report.html a finished run draws from its files.

Training does not import this layer: whoever calls it (the CLI, ``skipexp.train``, compare, a sweep) hands
it a :class:`RunViews`.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skipexp.core.config import RunConfig
from skipexp.views import html


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: matplotlib makes objects by the hundred thousand, and each
    full collection it sets off walks all of torch's too, which costs a run's plots a fifth of their time.
    The figures' cycles are collected after, once."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class RunViews:
    """The views of runs as they train and when they end. ``plots=False`` (a comparison or a sweep draws its own)
    leaves out a run's own plots, not its report.html."""

    def __init__(self, plots: bool = True):
        self.plots = plots

    def sink(self, cfg: RunConfig, run_dir: Path, meta: dict, rolled_back: int):
        """TensorBoard's live events where ``log.tensorboard`` asks for them, else None. A resumed run whose rows
        were rolled back has its events rewritten from the CSVs as they are now first."""
        if not cfg.log.tensorboard:
            return None
        from skipexp.views.tensorboard import LiveEvents, export_run  # only here: others never load tensorboard

        if rolled_back:
            export_run(run_dir)
        return LiveEvents(run_dir, meta)

    def draw(self, cfg: RunConfig, run_dir: Path) -> None:
        """A finished run's plots and report.html, from its files."""
        if self.plots and cfg.log.plots:
            with _gc_paused():
                from skipexp.views import plots as plots_mod  # matplotlib: only for a run that draws

                plots_mod.plot_run(run_dir)
                if cfg.log.sharpness_every:
                    from skipexp.views import mechanisms

                    mechanisms.plot_sharpness_log(run_dir)
        if cfg.log.html:
            html.write_run(run_dir)
