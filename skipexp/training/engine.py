"""The training loop: K >= 1 models of one shape, one step at a time (a single run is K = 1).

One set of rules for every model k: its own batch order, divergence (loss and every gradient, each
step, before the update), checkpoints only with finite weights, its own rows at every log step, its
own evaluation. A model that diverges is retired (its folder finished, ``diverged_at_step`` its own)
while the others go on. Evaluation, checkpoints, rows and the models' arithmetic are functions the
loop calls; it knows nothing of the console (a :class:`~skipexp.training.session.Reporter` hears it).
"""
from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable

import torch

from skipexp.core import data as data_mod
from skipexp.core.metrics import evaluate
from skipexp.training.bank import Lone, Stacked
from skipexp.training.checkpoint import save_checkpoint
from skipexp.training.session import Reporter, Run


def write_rows(run: Run, values: list[float], step: int, epoch: int, lr: float, elapsed: float) -> dict:
    """One log step's rows of one model (values as :meth:`Lone.record` orders them)."""
    nl, nb = len(run.probe.layer_names), (len(values) - 3 - len(run.probe.layer_names)) // 2
    row = {"step": step, "epoch": epoch, "train_loss": values[0], "train_acc": values[1],
           "lr": lr, "grad_norm_total": values[2], "elapsed_s": round(elapsed, 3)}
    run.logs["metrics"].write(row)
    run.logs["grad"].write([step] + values[3:3 + nl])
    run.logs["act_grad"].write([step] + values[3 + nl:3 + nl + nb])
    run.logs["act"].write([step] + values[3 + nl + nb:])
    return row


def evaluate_run(run: Run, step: int, epoch: int) -> dict:
    loss, acc = evaluate(run.model, run.data.x_test, run.data.y_test)
    row = {"step": step, "epoch": epoch, "test_loss": loss, "test_acc": acc}
    run.logs["eval"].write(row)
    return row


def train_loop(bank: Lone | Stacked, runs: list[Run], reporter: Reporter, should_stop: Callable[[], bool],
               finish: Callable[[int, str], None]) -> None:
    """Train ``runs`` (all at one step: K fresh runs, or one resumed) to the end, a divergence or a stop.

    ``finish(k, status)`` closes model k's folder the moment it ends; every model ends with a call.
    """
    lead = runs[0]
    d, B, log = lead.data, lead.cfg.train.batch_size, lead.cfg.log
    total, per_epoch, device = lead.total_steps, lead.steps_per_epoch, lead.device
    live, started, order = list(range(len(runs))), time.perf_counter(), None
    # each model's first step whose loss or gradient was not finite (0: none). Kept on the device and read on
    # CPU every step, on CUDA only where it matters (log, eval, checkpoint, stop), to spare a sync per step.
    first_bad = torch.zeros(len(runs), dtype=torch.long, device=device)

    def clock() -> float:
        return lead.elapsed + time.perf_counter() - started

    def end(k: int, status: str, diverged_at: int | None = None) -> None:
        if diverged_at is not None:
            runs[k].meta.update(diverged_at_step=diverged_at)
        runs[k].seconds = clock()   # models trained together share their time; each folder reports all of it
        live.remove(k)
        bank.retire(k)
        finish(k, status)

    reporter.on_start(lead.run_dir, total, lead.step)
    step = lead.step
    # what is alive now (torch, the data, the models) lives through the loop: frozen, the collector's full
    # passes skip it. Unfrozen, the loop's own allocations set one off within ~200 steps of configs/skip.yaml,
    # ~80 ms scanning torch's objects: ~5% of that run.
    gc.freeze()
    try:
        while step < total and live:
            step += 1
            epoch, pos = divmod(step - 1, per_epoch)
            if order is None or pos == 0:
                order = torch.stack([data_mod.batch_order(len(d.y_train), r.cfg.seeds[0], epoch)
                                     for r in runs]).to(device)                                   # (K, n)
            idx = order[:, pos * B:(pos + 1) * B]                                                   # (K, B)
            x, y = d.x_train[idx], d.y_train[idx]                                                   # (K, B, in), (K, B)
            log_now = step == 1 or step % log.every == 0 or step == total
            logits, hs = bank.forward(x, capture=log_now)
            losses = bank.losses(logits, y)                                                         # (K,)
            bank.backward(losses)
            first_bad.masked_fill_(bank.nonfinite(losses) & (first_bad == 0), step)
            if log_now:
                values, lrs, now = bank.record(losses, logits, y, hs), bank.lrs(), clock()
                for k in live:
                    row = write_rows(runs[k], values[k], step, epoch, lrs[k], now)
                    if not (math.isfinite(row["train_loss"]) and math.isfinite(row["grad_norm_total"])):
                        mine = first_bad[k:k + 1]   # also a norm that overflowed: what the row shows
                        mine.masked_fill_(mine == 0, step)
                    runs[k].meta.beat()
                    if k == live[0]:
                        reporter.on_log(row)
            last, epoch_end = step == total, step % per_epoch == 0
            stop = not last and should_stop()
            eval_now = (log.eval_every and step % log.eval_every == 0) or (not log.eval_every and epoch_end) or last
            if device.type == "cpu" or log_now or eval_now or epoch_end or stop:
                # before the update: the weights stay those of the last good step
                for k, bad_at in enumerate(first_bad.tolist()):
                    if bad_at and k in live:
                        end(k, "diverged", bad_at)
                if not live:
                    break
            bank.clip_()  # each model's own clip, after recording: the logged norms are the gradient's own
            bank.opt.step()
            bank.sched.step()
            for k in live:
                runs[k].step = step
            if eval_now:
                for k in list(live):
                    bank.sync(k)
                    row = evaluate_run(runs[k], step, epoch)
                    if k == live[0]:
                        reporter.on_eval(row)
            if epoch_end or last or stop:
                for k in list(live):
                    bank.sync(k, state=True)
                    if not save_checkpoint(runs[k], clock()):
                        end(k, "diverged", step)  # finite gradients, yet the update overflowed
            if stop:
                break
    finally:   # also on an exception: meta.json then says how long the models trained
        gc.unfreeze()
        for k in live:
            runs[k].seconds = clock()
    for k in list(live):
        end(k, "completed" if step >= total else "interrupted")
