"""Sharpness while training (``log.sharpness_every: N``, off by default): the top Hessian eigenvalue and trace
of the training loss, measured at evaluation time and written to the run's sharpness.csv.

The loop calls :func:`at_evaluation` after each evaluation (the model then holds the run's current
weights, stacked models included). It measures at the first evaluation on or after each multiple of N
steps, and at the last step; the measurement reads the model without changing it, its gradients or any
random state, so a run's numbers are the same with it or without it. Each measurement costs 16-30
Hessian-vector products on SAMPLES training examples (docs/science.md, Sharpness).
"""
from __future__ import annotations

from torch import nn

from skipexp.core.config import LogConfig
from skipexp.core.curvature import COLUMNS, sharpness
from skipexp.core.data import Splits
from skipexp.rundir import files
from skipexp.rundir.folder import RunFolder

SAMPLES = 512       # the first training examples, the same sample at every measurement
ITERATIONS = 20     # Lanczos steps at most (it stops once the top eigenvalue settles to 0.1 %)
PROBES = 10         # Hutchinson probes for the trace
LOG = "sharpness"   # its name among the run folder's logs


def due(step: int, every: int, interval: int, total: int) -> bool:
    """Whether the evaluation at ``step`` is the first at or after a multiple of ``every`` (evaluations come
    every ``interval`` steps, and at the last step ``total``)."""
    previous = ((step - 1) // interval) * interval   # the evaluation before this one (0: none)
    return step == total or step // every > previous // every


def at_evaluation(model: nn.Module, data: Splits, log: LogConfig, folder: RunFolder, step: int, total: int,
                  steps_per_epoch: int) -> None:
    """Measure and write a row of sharpness.csv where ``log.sharpness_every`` makes this evaluation due."""
    every = log.sharpness_every
    if not every or not due(step, every, log.eval_every or steps_per_epoch, total):
        return
    got = sharpness(model, data.x_train[:SAMPLES], data.y_train[:SAMPLES], ITERATIONS, PROBES, seed=step)
    # opened on first use (a resumed run appends); closed with the run's other logs
    folder.open_log(LOG, files.SHARPNESS_CSV, ["step", *COLUMNS], live=False)
    folder.write(LOG, {"step": step, **got.row()})
