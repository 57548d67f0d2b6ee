"""The training loop: K >= 1 models of one shape, one step at a time (a single run is K = 1).

One set of rules for every model k: its own batch order, divergence (loss and every gradient, each step,
before the update), checkpoints only with finite weights, its own rows at every log step, its own
evaluation. A model that diverges is retired (its folder finished, ``diverged_at_step`` its own) while the
others go on. The arithmetic is the :class:`~skipexp.training.step.Stepper`'s, the writing each
:class:`~skipexp.training.run.Run`'s; the loop decides only what happens when, and knows nothing of the
console (a :class:`~skipexp.training.run.Reporter` hears it).
"""
from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from skipexp.training.run import Reporter, Run
from skipexp.training.step import Stepper


@dataclass(frozen=True)
class Cadence:
    """When a step logs, evaluates and checkpoints: a function of the lead run's config and length."""
    total: int            # the last step
    per_epoch: int        # steps in an epoch
    batch: int            # examples in a batch (a training split smaller than a batch is one batch of all of it)
    log_every: int
    eval_every: int | None   # None: at the end of each epoch

    @classmethod
    def of(cls, run: Run) -> Cadence:
        log = run.cfg.log
        return cls(run.total_steps, run.steps_per_epoch, min(run.cfg.train.batch_size, len(run.data.y_train)),
                   log.every, log.eval_every)

    def logs(self, step: int) -> bool:
        return step == 1 or step % self.log_every == 0 or step == self.total

    def evaluates(self, step: int) -> bool:
        every = self.eval_every or self.per_epoch
        return step % every == 0 or step == self.total

    def checkpoints(self, step: int) -> bool:
        return step % self.per_epoch == 0 or step == self.total


def stop_reason(step: int, total: int, live: list[int], asked: bool) -> str | None:
    """Why the loop stops after ``step`` (the status its live models end with), or None to go on."""
    if not live:
        return "diverged"       # every model has ended
    if step >= total:
        return "completed"
    if asked:
        return "interrupted"    # should_stop() said so: every live model has just checkpointed
    return None


def train_loop(stepper: Stepper, runs: list[Run], reporter: Reporter, should_stop: Callable[[], bool]) -> None:
    """Train ``runs`` (all at one step: K fresh runs, or one resumed) until :func:`stop_reason` gives a reason;
    every run ends with :meth:`Run.end` (on an exception, the caller ends the live ones)."""
    lead, live = runs[0], list(range(len(runs)))
    plan, start = Cadence.of(lead), time.perf_counter()

    def clock() -> float:   # training seconds: this process's and those before it (a resumed run)
        return lead.elapsed + time.perf_counter() - start

    def end(k: int, status: str, **meta: object) -> None:   # models trained together share their time
        live.remove(k)
        stepper.stack.retire(k)
        runs[k].end(status, clock(), **meta, **stepper.meta())

    reporter.on_start(lead.run_dir, plan.total, lead.step)
    step, order, reason = lead.step, None, stop_reason(lead.step, plan.total, live, False)
    gc.freeze()   # what lives through the loop (torch, data, models): the collector's full passes skip it
    try:
        while reason is None:
            step += 1
            epoch, pos = divmod(step - 1, plan.per_epoch)
            # batch: each model's own order of the training data, drawn afresh at each epoch
            if order is None or pos == 0:
                order = torch.stack([run.batch_order(epoch) for run in runs]).to(lead.device)           # (K, n)
            # step: forward and backward of every model; on log steps, the values to log
            logged = stepper.grads(order[:, pos * plan.batch:(pos + 1) * plan.batch], step, plan.logs(step))
            # log: each live model's rows (a norm that overflowed counts as not finite, as the row shows)
            if logged is not None:
                lrs, now = stepper.stack.lrs(), clock()
                reporter.on_logs({k: runs[k].log(logged[k], step, epoch, lrs[k], now) for k in live})
                for k in live:
                    if not logged[k].finite:
                        stepper.flag(k, step)
            asked = step < plan.total and should_stop()
            evaluate, save = plan.evaluates(step), plan.checkpoints(step) or asked
            # check: a model whose loss or gradient was not finite ends now, its weights the last good step's
            for k, at in stepper.diverged(live, must_read=logged is not None or evaluate or save):
                end(k, "diverged", diverged_at_step=at)
            if live:
                # update: each model's clip, optimizer step and schedule
                stepper.update()
                for k in live:
                    runs[k].step = step
                # evaluate: each live model's own weights, copied out of the stack
                for k in list(live) if evaluate else []:
                    stepper.stack.sync(k)
                    row = runs[k].evaluate(step, epoch)
                    if k == live[0]:
                        reporter.on_eval(row)
                # checkpoint: each live model's weights and optimizer state; an update that overflowed ends it
                for k in list(live) if save else []:
                    stepper.stack.sync(k, state=True)
                    if not runs[k].checkpoint(clock()):
                        end(k, "diverged", diverged_at_step=step)
            # stop: one reason (the status of the models still live), or None to go on
            reason = stop_reason(step, plan.total, live, asked)
    except BaseException:   # the caller writes the status; meta.json then says how long the models trained
        for k in live:
            runs[k].seconds = clock()
            runs[k].folder.hold_meta(**stepper.meta())
        raise
    finally:
        gc.unfreeze()
    for k in list(live):
        end(k, reason)

