"""Sharpness while training (``log.sharpness_every: N``, off by default): the top Hessian eigenvalue and trace
of the training loss, measured at evaluation time and written to the run's sharpness.csv.

The loop calls :func:`at_evaluation` after each evaluation (the model then holds the run's current
weights, stacked models included). It measures at the first evaluation on or after each multiple of N
steps, and at the last step; the measurement reads the model without changing it, its gradients or any
random state, so a run's numbers are the same with it or without it. Each measurement costs 16-30
Hessian-vector products on SAMPLES training examples (docs/science.md, Sharpness).
"""
from __future__ import annotations

from skipexp.core.curvature import COLUMNS, sharpness
from skipexp.rundir import files, runio
from skipexp.training.run import Run

SAMPLES = 512       # the first training examples, the same sample at every measurement
ITERATIONS = 20     # Lanczos steps at most (it stops once the top eigenvalue settles to 0.1 %)
PROBES = 10         # Hutchinson probes for the trace
LOG = "sharpness"   # its key in Run.logs


def due(step: int, every: int, interval: int, total: int) -> bool:
    """Whether the evaluation at ``step`` is the first at or after a multiple of ``every`` (evaluations come
    every ``interval`` steps, and at the last step ``total``)."""
    previous = ((step - 1) // interval) * interval   # the evaluation before this one (0: none)
    return step == total or step // every > previous // every


def at_evaluation(run: Run, step: int) -> None:
    every = run.cfg.log.sharpness_every
    if not every or not due(step, every, run.cfg.log.eval_every or run.steps_per_epoch, run.total_steps):
        return
    x, y = run.data.x_train[:SAMPLES], run.data.y_train[:SAMPLES]
    got = sharpness(run.model, x, y, ITERATIONS, PROBES, seed=step)
    if LOG not in run.logs:   # opened on first use (a resumed run appends); closed with the run's other logs
        run.logs[LOG] = runio.CsvLog(run.run_dir / files.SHARPNESS_CSV, ["step", *COLUMNS])
    run.logs[LOG].write({"step": step, **got.row()})
