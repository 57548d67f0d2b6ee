"""The training loop: K >= 1 models of one shape, one step at a time (a single run is K = 1).

One set of rules for every model k: its own batch order, divergence (loss and every gradient, each
step, before the update), checkpoints only with finite weights, its own rows at every log step, its
own evaluation. A model that diverges is retired (its folder finished, ``diverged_at_step`` its own)
while the others go on. Evaluation, checkpoints, rows and the models' arithmetic are functions the
loop calls; it knows nothing of the console (a :class:`~skipexp.training.run.Reporter` hears it).

A step's arithmetic is two functions of :class:`Step` (gradients, then the update), with the divergence
check between them. On CUDA, after one eager step, both are captured as CUDA graphs and replayed
(``train.cuda_graphs``): the same kernels on the same tensors, so the same numbers, without the launches.
"""
from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable

import torch

from skipexp.core import data as data_mod
from skipexp.core.config import TrainConfig
from skipexp.core.metrics import evaluate
from skipexp.training import sharpness
from skipexp.training.checkpoint import save_checkpoint
from skipexp.training.graphs import CaptureFailed, Graphs
from skipexp.training.modelstack import Lone, Stacked
from skipexp.training.run import Reporter, Run


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
    """One evaluation of one model: the test set, the validation split where the run holds one out, and the
    training data (its whole split, or a fixed sample: ``log.train_eval_size``) in eval mode, which is what a
    summary's train loss and accuracy are."""
    d = run.data
    loss, acc = evaluate(run.model, d.x_test, d.y_test)
    row = {"step": step, "epoch": epoch, "test_loss": loss, "test_acc": acc}
    if d.y_val is not None:
        row["val_loss"], row["val_acc"] = evaluate(run.model, d.x_val, d.y_val)
    if run.cfg.log.train_eval_size != 0:
        x, y = data_mod.train_sample(d, run.cfg.log.train_eval_size, run.cfg.data.seed)
        row["train_loss"], row["train_acc"] = evaluate(run.model, x, y)
    run.logs["eval"].write(row)
    sharpness.at_evaluation(run, step)   # log.sharpness_every; nothing when off (the default)
    return row


class Step:
    """A step's arithmetic as two functions that read their inputs (the batch's indices, the step number)
    from buffers of their own: :meth:`grads` (forward, loss, backward, the divergence flags and, on log
    steps, the logged values) and :meth:`update` (clip, optimizer). Eager on the CPU; on CUDA with
    ``graphs``, eager for the first step and replayed as captured graphs after it."""

    def __init__(self, bank: Lone | Stacked, data: data_mod.Splits, first_bad: torch.Tensor, batch: int,
                 graphs: Graphs | None):
        self.bank, self.data, self.first_bad, self.graphs = bank, data, first_bad, graphs
        self.idx = torch.zeros(bank.k, batch, dtype=torch.long, device=first_bad.device)   # (K, B)
        self.at = torch.zeros((), dtype=torch.long, device=first_bad.device)               # the step number
        self.warm = False        # one eager step done: gradients and optimizer state exist to capture
        self.replays = 0         # steps' functions replayed as graphs
        self.error: str | None = None   # why capture failed, where it did (every step then runs eagerly)
        if graphs is not None or first_bad.device.type == "cuda":
            # captured steps read lr from the device; on CUDA every step does, so that replay changes no number
            bank.opt.lr_on_device(first_bad.device)

    def grads(self, idx: torch.Tensor, step: int, capture: bool) -> torch.Tensor | None:
        """Gradients of model k on its batch ``idx[k]``; with ``capture``, the (K, values) to log."""
        self.idx.copy_(idx)
        self.at.fill_(step)
        return self._run(("grads", capture), lambda: self._grads(capture))

    def update(self) -> None:
        self.bank.opt.load_lr()
        self._run("update", self._update)
        if not self.warm and self.graphs is not None:
            self.warm = True
            self.bank.opt.hold_grads()   # the update reads these tensors, whichever captured backward ran

    def _grads(self, capture: bool) -> torch.Tensor | None:
        bank, d = self.bank, self.data
        x, y = d.x_train[self.idx], d.y_train[self.idx]                                     # (K, B, in), (K, B)
        logits, hs = bank.forward(x, capture=capture)
        losses = bank.losses(logits, y)                                                     # (K,)
        bank.backward(losses)
        new = bank.nonfinite(losses) & (self.first_bad == 0)
        self.first_bad.copy_(torch.where(new, self.at, self.first_bad))   # masked_fill_ would read self.at on the host
        return bank.record(losses, logits, y, hs) if capture else None

    def _update(self) -> None:
        self.bank.clip_()  # each model's own clip, after recording: the logged norms are the gradient's own
        self.bank.opt.step()

    def _run(self, key: object, fn: Callable[[], object]):
        if self.graphs is None:
            return fn()
        if not self.warm:
            return self.graphs.eager(fn)
        try:
            out = self.graphs(key, fn)
        except CaptureFailed as e:   # nothing ran, so the step runs eagerly instead, and every step after it
            self.error, self.graphs = str(e).splitlines()[0][:200], None
            return fn()
        self.replays += 1
        return out

    def meta(self) -> dict:
        """What meta.json says of the capture: whether steps were replayed, and why not where capture failed."""
        replayed = {"cuda_graphs": self.replays > 0}
        return replayed if self.error is None else {**replayed, "cuda_graphs_error": self.error}


def capturable(device: torch.device, train: TrainConfig) -> bool:
    """Whether steps are captured: on CUDA, unless turned off or compiled (torch.compile captures its own)."""
    return device.type == "cuda" and train.cuda_graphs and not train.compile


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
    use_graphs = capturable(device, lead.cfg.train)
    says_graphs = device.type == "cuda" or use_graphs   # meta.json's cuda_graphs: where it means something
    # a training split smaller than a batch is one batch of all of it, every step
    arith = Step(bank, d, first_bad, min(B, len(d.y_train)), Graphs(device) if use_graphs else None)

    def clock() -> float:
        return lead.elapsed + time.perf_counter() - started

    def end(k: int, status: str, diverged_at: int | None = None) -> None:
        if diverged_at is not None:
            runs[k].meta.update(diverged_at_step=diverged_at)
        if says_graphs:
            runs[k].meta.data.update(arith.meta())
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
            log_now = step == 1 or step % log.every == 0 or step == total
            logged = arith.grads(order[:, pos * B:(pos + 1) * B], step, capture=log_now)
            if logged is not None:
                values, lrs, now, rows = logged.tolist(), bank.lrs(), clock(), {}
                for k in live:
                    rows[k] = row = write_rows(runs[k], values[k], step, epoch, lrs[k], now)
                    if not (math.isfinite(row["train_loss"]) and math.isfinite(row["grad_norm_total"])):
                        mine = first_bad[k:k + 1]   # also a norm that overflowed: what the row shows
                        mine.masked_fill_(mine == 0, step)
                    runs[k].meta.beat()
                reporter.on_logs(rows)
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
            arith.update()
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
        if says_graphs:   # written with the status: by finish(), or by the caller on an exception
            for k in live:
                runs[k].meta.data.update(arith.meta())
    for k in list(live):
        end(k, "completed" if step >= total else "interrupted")
