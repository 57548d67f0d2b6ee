"""Train one model into one run folder; resume one from its checkpoint.

The loop (:func:`_loop`) fits on a screen: evaluation, checkpoints, gradient recording and rows
are functions it calls. Nothing here prints: progress goes to a :class:`Reporter`, text to train.log.
"""
from __future__ import annotations

import math
import os
import platform
import random
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import skipexp
from skipexp.core import config as config_mod
from skipexp.core import data as data_mod
from skipexp.rundir import runio
from skipexp.core.config import RunConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.metrics import GradProbe, accuracy, evaluate
from skipexp.core.models import SkipNet, count_parameters
from skipexp.core.registry import OPTIMIZERS, SCHEDULES
from skipexp.rundir.summary import write_summary

# --- optimizers and schedules --------------------------------------------------------------------

# fused=True: one kernel over all parameters instead of a Python loop over them; on CPU with ~80 small
# tensors this halves the optimizer's share of a width-64 step (benchmarks/bench.py). CPU and CUDA have it.
OPTIMIZERS.implements("sgd")(lambda params, t: torch.optim.SGD(
    params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, fused=True))
OPTIMIZERS.implements("adam")(lambda params, t: torch.optim.Adam(
    params, lr=t.lr, betas=(t.momentum, 0.999), weight_decay=t.weight_decay, fused=True))
OPTIMIZERS.implements("adamw")(lambda params, t: torch.optim.AdamW(
    params, lr=t.lr, betas=(t.momentum, 0.999), weight_decay=t.weight_decay, fused=True))
SCHEDULES.implements("constant")(lambda step, total: 1.0)
SCHEDULES.implements("cosine")(lambda step, total: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))


class Reporter:
    """What a caller hears from a run. The CLI draws a progress bar; the default hears nothing."""

    def on_start(self, run_dir: Path, total_steps: int, start_step: int) -> None: ...
    def on_log(self, row: dict) -> None: ...
    def on_eval(self, row: dict) -> None: ...
    def on_end(self, status: str, summary: dict) -> None: ...


@dataclass
class RunResult:
    run_dir: Path
    status: str
    summary: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SkipexpError("CUDA was asked for but torch sees no CUDA device; use device: cpu or auto",
                               key="device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SkipexpError(f"there are {torch.cuda.device_count()} CUDA devices, no {name}", key="device")
    return dev


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# --- setting a run up ----------------------------------------------------------------------------

def create_run(cfg: RunConfig, out: Path, run_dir: Path | None = None) -> Path:
    """Make the run folder (exclusively) and write config.yaml and a first meta.json."""
    if run_dir is None:
        run_dir = runio.create_run_dir(out, cfg.name)
    else:
        runio.check_writable(run_dir.parent)
        try:
            run_dir.mkdir()
        except FileExistsError:
            raise SkipexpError("already exists; run folders are never reused", file=str(run_dir)) from None
    (run_dir / "config.yaml").write_text(config_mod.dump(cfg))
    # "running" with a heartbeat from the start: a process killed while loading data shows as crashed
    runio.Meta(run_dir / "meta.json", {
        "tool": "skipexp", "name": cfg.name, "seed": cfg.seed,
        "created": datetime.now().isoformat(timespec="seconds"),
    }).update(status="running")
    return run_dir


@dataclass
class _Run:
    cfg: RunConfig
    run_dir: Path
    device: torch.device
    data: data_mod.Splits
    model: SkipNet
    forward: Callable
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    probe: GradProbe
    logs: dict[str, runio.CsvLog]
    meta: runio.Meta
    total_steps: int
    steps_per_epoch: int
    step: int = 0
    elapsed: float = 0.0  # training seconds before this process (resumed runs)
    seconds: float = 0.0  # training seconds in all, set when the loop ends


def _setup(cfg: RunConfig, run_dir: Path, resume: bool, progress: data_mod.Progress | None,
           splits: data_mod.Splits | None = None) -> _Run:
    threads = cfg.train.threads or default_threads()
    torch.set_num_threads(threads)
    device = resolve_device(cfg.device)
    seed = cfg.seeds[0]
    # seeds trained together (skipexp.training.vectorized) share one copy of the data
    splits = (splits or data_mod.load(cfg.data, progress)).to(device)
    torch.manual_seed(seed)
    random.seed(seed)
    model = SkipNet(cfg.model, splits.input_dim, splits.num_classes).to(device)
    opt = OPTIMIZERS.get(cfg.train.optimizer)(model.parameters(), cfg.train)
    per_epoch = max(1, len(splits.y_train) // cfg.train.batch_size)
    total = cfg.train.steps or cfg.train.epochs * per_epoch
    factor = SCHEDULES.get(cfg.train.schedule)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: factor(s, total))
    fwd = torch.compile(model) if cfg.train.compile else model
    probe = GradProbe(model.layers())
    boundaries = model.boundary_names()
    logs = {
        "metrics": runio.CsvLog(run_dir / "metrics.csv", runio.METRICS_COLUMNS),
        "eval": runio.CsvLog(run_dir / "eval.csv", runio.EVAL_COLUMNS),
        "grad": runio.CsvLog(run_dir / "grad_norms.csv", ["step"] + probe.layer_names),
        "act_grad": runio.CsvLog(run_dir / "act_grad_norms.csv", ["step"] + boundaries),
        "act": runio.CsvLog(run_dir / "act_norms.csv", ["step"] + boundaries),
    }
    meta = runio.Meta(run_dir / "meta.json", runio.read_json(run_dir / "meta.json"))
    run = _Run(cfg, run_dir, device, splits, model, fwd, opt, sched, probe, logs, meta, total, per_epoch)
    now = datetime.now().isoformat(timespec="seconds")
    if resume:
        # no checkpoint yet (killed in epoch 1): start over; training is deterministic, so the rows
        # already on disk are the ones it would write again, and CsvLog skips them
        if (run_dir / "checkpoints" / "last.pt").exists():
            _load_checkpoint(run)
        meta.data.setdefault("resumes", []).append({
            "time": now, "from_step": run.step, "previous_status": runio.effective_status(meta.data),
            "host": runio.host(), "pid": os.getpid()})
    else:
        meta.data.update({
            "skipexp_version": skipexp.__version__, "torch_version": torch.__version__,
            "python_version": platform.python_version(), "start_time": now,
            "params": count_parameters(model), "total_steps": total, "steps_per_epoch": per_epoch,
            "data_source": splits.source, "git_commit": _git_commit(),
        })
    meta.update(status="running", command=sys.argv, device=str(device), threads=threads, host=runio.host(),
                pid=os.getpid(), device_name=(torch.cuda.get_device_name(device) if device.type == "cuda"
                                              else platform.processor() or platform.machine()))
    return run


# --- checkpoints ---------------------------------------------------------------------------------

def _weights_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def _save_checkpoint(run: _Run, elapsed: float) -> bool:
    """Write checkpoints/last.pt (and epoch-N.pt) atomically; False, writing nothing, if a weight is not finite."""
    if not _weights_finite(run.model):
        return False  # the last checkpoint on disk stays the last finite one
    if run.cfg.log.checkpoint == "none":
        return True
    ckpt_dir = run.run_dir / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    state = {
        "step": run.step, "elapsed": elapsed,
        "model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    tmp = ckpt_dir / ".last.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, ckpt_dir / "last.pt")  # atomic: last.pt is always a whole checkpoint
    if run.cfg.log.checkpoint == "every_epoch" and run.step % run.steps_per_epoch == 0:
        epoch = run.step // run.steps_per_epoch
        torch.save(state, ckpt_dir / f".epoch-{epoch}.pt.tmp")
        os.replace(ckpt_dir / f".epoch-{epoch}.pt.tmp", ckpt_dir / f"epoch-{epoch}.pt")
    return True


def load_checkpoint_file(path: Path, map_location: torch.device | str = "cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise SkipexpError("no checkpoint to resume from (log.checkpoint was none, or the run died before "
                           "its first checkpoint)", file=str(path)) from None
    except Exception as e:
        raise SkipexpError(f"unreadable checkpoint ({e.__class__.__name__})", file=str(path)) from None


def _load_checkpoint(run: _Run) -> None:
    path = run.run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint_file(path, run.device)
    try:
        run.model.load_state_dict(state["model"])
        run.opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
    except (KeyError, ValueError, RuntimeError) as e:  # config.yaml edited since, or not our checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise SkipexpError(f"does not fit the run's config.yaml ({first})", file=str(path)) from None
    torch.set_rng_state(state["rng"]["torch"].cpu())
    random.setstate((3, tuple(state["rng"]["python"]), None))
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
    run.step, run.elapsed = int(state["step"]), float(state["elapsed"])


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


def write_views(cfg: RunConfig, run_dir: Path, plots: bool = True) -> None:
    """What a finished run draws from its CSVs: the plots and, with log.tensorboard, event files."""
    try:
        if plots:
            from skipexp.views import plots as plots_mod

            plots_mod.plot_run(run_dir)
        if cfg.log.tensorboard:
            from skipexp.views.tensorboard import export_run

            export_run(run_dir)
    except Exception:  # the results are on disk and `report` can redraw them; say where it broke
        with open(run_dir / "train.log", "a") as f:
            f.write(traceback.format_exc())
        raise


def _finish_meta(run_dir: Path, run: _Run | None, status: str) -> None:
    meta = run.meta if run else runio.Meta(run_dir / "meta.json", runio.read_json(run_dir / "meta.json"))
    meta.update(status=status, end_time=datetime.now().isoformat(timespec="seconds"))
    if run is not None:
        meta.update(train_seconds=round(run.seconds, 3), steps_done=run.step)


def resume(run_dir: Path, *, reporter: Reporter | None = None, should_stop: Callable[[], bool] = lambda: False,
           progress: data_mod.Progress | None = None) -> RunResult:
    """Continue an interrupted, failed or crashed run from checkpoints/last.pt (see runio.check_resumable)."""
    cfg = runio.check_resumable(run_dir)
    return train(cfg, run_dir, reporter=reporter, should_stop=should_stop, resume=True, progress=progress)
