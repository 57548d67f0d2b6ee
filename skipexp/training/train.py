"""Train one model into one run folder; resume one from its checkpoint.

The loop (:func:`_loop`) fits on a screen: evaluation, checkpoints, gradient recording and rows
are functions it calls. Nothing here prints: progress goes to a :class:`Reporter`, text to train.log.
"""
from __future__ import annotations

import math
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from skipexp.core import data as data_mod
from skipexp.rundir import runio
from skipexp.core.config import RunConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.metrics import GradProbe, accuracy, evaluate
from skipexp.core.models import count_parameters
from skipexp.rundir.summary import write_summary
from skipexp.training.checkpoint import (_load_checkpoint, _save_checkpoint, _weights_finite,  # noqa: F401
                                         load_checkpoint_file)
from skipexp.training.session import (Reporter, RunResult, _finish_meta, _git_commit, _Run, _setup,  # noqa: F401
                                      create_run, default_threads, resolve_device, write_views)


# --- the loop ------------------------------------------------------------------------------------

def _record(run: _Run, step: int, epoch: int, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
            hs: list[torch.Tensor], elapsed: float) -> dict:
    """Write the rows of a log step; one device-to-host copy for all of them."""
    w = run.probe.weight_norms()
    values = torch.cat([torch.stack([loss.detach(), accuracy(logits, y), w.square().sum().sqrt()]), w,
                        GradProbe.act_grad_norms(hs), GradProbe.act_rms(hs)]).tolist()
    loss_v, acc_v, total_v = values[:3]
    nl, nb = len(run.probe.layer_names), len(hs)
    row = {"step": step, "epoch": epoch, "train_loss": loss_v, "train_acc": acc_v,
           "lr": run.sched.get_last_lr()[0], "grad_norm_total": total_v, "elapsed_s": round(elapsed, 3)}
    run.logs["metrics"].write(row)
    run.logs["grad"].write([step] + values[3:3 + nl])
    run.logs["act_grad"].write([step] + values[3 + nl:3 + nl + nb])
    run.logs["act"].write([step] + values[3 + nl + nb:])
    return row


def _evaluate(run: _Run, step: int, epoch: int) -> dict:
    loss, acc = evaluate(run.model, run.data.x_test, run.data.y_test)
    row = {"step": step, "epoch": epoch, "test_loss": loss, "test_acc": acc}
    run.logs["eval"].write(row)
    return row


def _loop(run: _Run, reporter: Reporter, should_stop: Callable[[], bool]) -> str:
    started, order = time.perf_counter(), None
    reporter.on_start(run.run_dir, run.total_steps, run.step)
    try:
        return _steps(run, reporter, should_stop, started)
    finally:
        run.seconds = run.elapsed + time.perf_counter() - started


def _nonfinite(loss: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor:
    """() bool: is the loss or any gradient NaN or infinite? Stays on the device (no host sync).

    One fused pass over all gradients: the check AMP's grad scaler uses, with a scale of 1 that leaves
    them as they are (4x cheaper on the CPU than a norm per gradient, and this runs every step).
    """
    found = torch.zeros((), device=loss.device)
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, torch.ones((), device=loss.device))
    return (found > 0) | ~torch.isfinite(loss.detach())


def _steps(run: _Run, reporter: Reporter, should_stop: Callable[[], bool], started: float) -> str:
    cfg, d, B = run.cfg, run.data, run.cfg.train.batch_size
    seed, every, eval_every = cfg.seeds[0], cfg.log.every, cfg.log.eval_every
    order = None
    # first step whose loss or gradient was not finite (0: none). Kept on the device and read on CPU
    # every step, on CUDA only where it matters (log, eval, checkpoint, stop), to spare a sync per step.
    first_bad = torch.zeros((), dtype=torch.long, device=run.device)
    while run.step < run.total_steps:
        step = run.step + 1
        epoch, pos = divmod(step - 1, run.steps_per_epoch)
        if order is None or pos == 0:
            order = data_mod.batch_order(len(d.y_train), seed, epoch).to(run.device)
        idx = order[pos * B:(pos + 1) * B]
        x, y = d.x_train[idx], d.y_train[idx]                         # (B, in), (B,)
        log_now = step == 1 or step % every == 0 or step == run.total_steps
        if log_now:
            logits, hs = run.model(x, capture=True)
            for h in hs:
                h.retain_grad()
        else:
            logits, hs = run.forward(x), None
        loss = nn.functional.cross_entropy(logits, y)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        first_bad.masked_fill_(_nonfinite(loss, run.probe.params) & (first_bad == 0), step)
        elapsed = run.elapsed + time.perf_counter() - started
        if log_now:
            row = _record(run, step, epoch, loss, logits, y, hs, elapsed)
            if not (math.isfinite(row["train_loss"]) and math.isfinite(row["grad_norm_total"])):
                first_bad.masked_fill_(first_bad == 0, step)  # also a norm that overflowed: what the row shows
            reporter.on_log(row)
            run.meta.beat()
        last, epoch_end = step == run.total_steps, step % run.steps_per_epoch == 0
        stop = not last and should_stop()
        eval_now = (eval_every and step % eval_every == 0) or (not eval_every and epoch_end) or last
        if run.device.type == "cpu" or log_now or eval_now or epoch_end or stop:
            if bad_at := int(first_bad):  # before the update: the weights stay those of the last good step
                run.meta.update(diverged_at_step=bad_at)
                return "diverged"
        if cfg.train.grad_clip:  # after recording: the logged norms are the gradient's own, not the clip value
            nn.utils.clip_grad_norm_(run.model.parameters(), cfg.train.grad_clip)
        run.opt.step()
        run.sched.step()
        run.step = step
        if eval_now:
            reporter.on_eval(_evaluate(run, step, epoch))
        if epoch_end or last or stop:
            if not _save_checkpoint(run, run.elapsed + time.perf_counter() - started):
                run.meta.update(diverged_at_step=step)  # finite gradients, yet the update overflowed
                return "diverged"
        if stop:
            return "interrupted"
    return "completed"


def train(cfg: RunConfig, run_dir: Path, *, reporter: Reporter | None = None,
          should_stop: Callable[[], bool] = lambda: False, resume: bool = False,
          progress: data_mod.Progress | None = None, plots: bool = True) -> RunResult:
    """Train ``cfg`` into ``run_dir`` (made by :func:`create_run`), or continue it with ``resume``."""
    reporter = reporter or Reporter()
    try:
        lock = runio.RunLock(run_dir)
    except SkipexpError:
        if not resume:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    log = open(run_dir / "train.log", "a")
    log.write(f"[{datetime.now():%Y-%m-%d %H:%M:%S}] {'resume' if resume else 'train'} {' '.join(sys.argv)}\n")
    log.flush()
    run = None
    try:
        run = _setup(cfg, run_dir, resume, progress)
        log.write(f"device {run.device}, {count_parameters(run.model)} parameters, "
                  f"{run.total_steps} steps from step {run.step}\n")
        log.flush()
        status = _loop(run, reporter, should_stop)
    except SkipexpError:
        log.close()
        if run is not None:  # it got going, then stopped: resumable from its checkpoint
            _finish_meta(run_dir, run, "interrupted")
        elif not resume:  # bad input found while setting up (data files, device): leave no folder behind
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except BaseException as e:
        log.write(traceback.format_exc())
        log.flush()
        _finish_meta(run_dir, run, "interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
        raise
    finally:
        if run is not None:
            for csv_log in run.logs.values():
                csv_log.close()
        lock.release()
    _finish_meta(run_dir, run, status)
    summary = write_summary(run_dir)
    log.write(f"status {status}: {summary}\n")
    log.close()
    write_views(cfg, run_dir, plots)
    reporter.on_end(status, summary)
    return RunResult(run_dir, status, summary)


def resume(run_dir: Path, *, reporter: Reporter | None = None, should_stop: Callable[[], bool] = lambda: False,
           progress: data_mod.Progress | None = None) -> RunResult:
    """Continue an interrupted, failed or crashed run from checkpoints/last.pt (see runio.check_resumable)."""
    cfg = runio.check_resumable(run_dir)
    return train(cfg, run_dir, reporter=reporter, should_stop=should_stop, resume=True, progress=progress)
