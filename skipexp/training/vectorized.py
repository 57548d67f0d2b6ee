"""Several seeds of one config trained together: one model with a leading seed dimension on every weight.

Each seed keeps everything a run of ``seed: N`` alone has: its init (its SkipNet is built under
``torch.manual_seed(N)`` exactly as :func:`skipexp.training.train.train` builds it, then the K SkipNets' weights are
stacked), its own batch order (``data.batch_order(n, N, epoch)``), its own optimizer state (optimizers
are elementwise, so a (K, ...) tensor holds K independent states) and its own ordinary run folder,
written by the same functions. Linear layers become ``torch.baddbmm`` over the seed dimension: one
batched matmul instead of K small ones, which is where the speed comes from for small widths.

Seeds are independent in every operation, so seed k's numbers equal a separate run's within float
rounding (a batched matmul may sum in another order). Models the stacked form cannot express exactly
fall back to sequential runs, with the reason in each meta.json (see :func:`unsupported`).
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
from skipexp.training import train as train_mod
from skipexp.core.config import RunConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.registry import OPTIMIZERS, SCHEDULES
from skipexp.rundir.summary import write_summary
from skipexp.training.stacked import (StackedLayerNorm, StackedLinear, stack_models, unsupported,  # noqa: F401
                                      unsupported_model)


class _Seeds:
    """The stacked model and optimizer, and how to copy seed k's slice back into its own run."""

    def __init__(self, runs: list[train_mod._Run]):
        self.runs = runs
        self.k = len(runs)
        self.model = stack_models([r.model for r in runs])
        cfg = runs[0].cfg
        self.opt = OPTIMIZERS.get(cfg.train.optimizer)(self.model.parameters(), cfg.train)
        factor, total = SCHEDULES.get(cfg.train.schedule), runs[0].total_steps
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: factor(s, total))
        self.params = list(self.model.parameters())
        self.shapes = [p.shape for p in runs[0].model.parameters()]
        assert [p.shape[1:].numel() for p in self.params] == [s.numel() for s in self.shapes]
        stacked_weights = {id(m.weight) for m in self.model.modules() if isinstance(m, StackedLinear)}
        self.transposed = [id(p) in stacked_weights for p in self.params]
        layers = self.model.layers()
        self.layer_names = [name for name, _ in layers]
        assert self.layer_names == runs[0].probe.layer_names
        self.probe_params = [p for _, ps in layers for p in ps]
        self.segment = torch.tensor([i for i, (_, ps) in enumerate(layers) for _ in ps])

    @torch.no_grad()
    def sync(self, k: int) -> None:
        """Copy seed k's weights, optimizer and schedule state into its own run (for eval and checkpoints)."""
        run = self.runs[k]
        for i, mine in enumerate(run.model.parameters()):
            mine.copy_(self.slice(i, self.params[i], k))
        state = self.opt.state_dict()
        mine = {i: {key: (self.slice(i, v, k).clone() if torch.is_tensor(v) and v.shape == self.params[i].shape
                          else v)
                    for key, v in s.items()}
                for i, s in state["state"].items()}
        run.opt.load_state_dict({"state": mine, "param_groups": state["param_groups"]})
        run.sched.load_state_dict(self.sched.state_dict())

    def slice(self, i: int, t: torch.Tensor, k: int) -> torch.Tensor:
        """Seed k's part of a tensor shaped like stacked parameter i, in the lone model's layout."""
        return t[k].t() if self.transposed[i] else t[k].view(self.shapes[i])

    @torch.no_grad()
    def retire(self, k: int) -> None:
        """Zero a finished seed's weights and optimizer state: it then stays at zero, finite and cheap."""
        for p in self.params:
            p[k].zero_()
            for v in self.opt.state.get(p, {}).values():
                if torch.is_tensor(v) and v.shape == p.shape:
                    v[k].zero_()

    def clip_(self, max_norm: float) -> None:
        """Per-seed clip_grad_norm_: each seed's gradient scaled by its own total norm."""
        grads = [p.grad for p in self.params if p.grad is not None]
        norms = torch.stack([g.reshape(self.k, -1).square().sum(1) for g in grads]).sum(0).sqrt()  # (K,)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

    def record(self, losses: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
               hs: list[torch.Tensor]) -> list[list[float]]:
        """Every seed's log-step values as train._record orders them; one device-to-host copy for all."""
        k, n = self.k, y.shape[1]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.probe_params]
        sq = torch.stack([g.reshape(k, -1).square().sum(1) for g in grads])                   # (params, K)
        w = torch.zeros(len(self.layer_names), k, dtype=sq.dtype, device=sq.device).index_add_(
            0, self.segment.to(sq.device), sq).sqrt()                                              # (layers, K)
        acc = (logits.argmax(2) == y).float().mean(1)                                               # (K,)
        act_grad = torch.stack([h.grad.norm(dim=2).mean(1) for h in hs]) * n                        # (bounds, K)
        act = torch.stack([h.detach().square().mean((1, 2)).sqrt() for h in hs])                  # (bounds, K)
        head = torch.stack([losses.detach(), acc, w.square().sum(0).sqrt()])
        return torch.cat([head, w, act_grad, act]).T.tolist()


def _write_rows(run: train_mod._Run, values: list[float], step: int, epoch: int, lr: float,
                elapsed: float, nb: int) -> dict:
    nl = len(run.probe.layer_names)
    row = {"step": step, "epoch": epoch, "train_loss": values[0], "train_acc": values[1],
           "lr": lr, "grad_norm_total": values[2], "elapsed_s": round(elapsed, 3)}
    run.logs["metrics"].write(row)
    run.logs["grad"].write([step] + values[3:3 + nl])
    run.logs["act_grad"].write([step] + values[3 + nl:3 + nl + nb])
    run.logs["act"].write([step] + values[3 + nl + nb:])
    return row


def _loop(seeds: _Seeds, reporter: train_mod.Reporter, should_stop: Callable[[], bool],
          finish: Callable[[int, str], None], started: float) -> None:
    """train._steps for K seeds at once; ``finish(k, status)`` closes seed k's folder when it ends."""
    runs, lead = seeds.runs, seeds.runs[0]
    cfg, d, B, device = lead.cfg, lead.data, lead.cfg.train.batch_size, lead.device
    every, eval_every, total, per_epoch = cfg.log.every, cfg.log.eval_every, lead.total_steps, lead.steps_per_epoch
    live = list(range(seeds.k))
    mask = torch.ones(seeds.k, device=device)   # 0 for seeds that have finished (diverged)
    fwd = torch.compile(seeds.model) if cfg.train.compile else seeds.model
    order, step = None, 0
    while step < total and live:
        step += 1
        epoch, pos = divmod(step - 1, per_epoch)
        if order is None or pos == 0:
            order = torch.stack([data_mod.batch_order(len(d.y_train), r.cfg.seeds[0], epoch)
                                 for r in runs]).to(device)                                    # (K, n)
        idx = order[:, pos * B:(pos + 1) * B]                                                    # (K, B)
        x, y = d.x_train[idx], d.y_train[idx]                                                    # (K, B, in), (K, B)
        log_now = step == 1 or step % every == 0 or step == total
        if log_now:
            logits, hs = seeds.model(x, capture=True)
            for h in hs:
                h.retain_grad()
        else:
            logits, hs = fwd(x), None
        losses = nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)   # (K,)
        seeds.opt.zero_grad(set_to_none=True)
        (losses * mask).sum().backward()   # seeds share no weights: each slice gets its own seed's gradient
        elapsed = time.perf_counter() - started
        if log_now:
            values, lr = seeds.record(losses, logits, y, hs), seeds.sched.get_last_lr()[0]
            for k in live:
                row = _write_rows(runs[k], values[k], step, epoch, lr, elapsed, len(hs))
                runs[k].meta.beat()
                if k == live[0]:
                    reporter.on_log(row)
            finite = [math.isfinite(v[0]) and math.isfinite(v[2]) for v in values]
        else:  # note: on CUDA this would be a host sync per step; there, divergence shows at the next log step
            finite = torch.isfinite(losses).tolist() if device.type == "cpu" else [True] * seeds.k
        for k in [k for k in live if not finite[k]]:
            runs[k].meta.update(diverged_at_step=step)
            runs[k].seconds = time.perf_counter() - started
            live.remove(k)
            mask[k] = 0.0
            seeds.retire(k)
            finish(k, "diverged")
        if cfg.train.grad_clip:  # after recording: the logged norms are the gradient's own, as in train.py
            seeds.clip_(cfg.train.grad_clip)
        seeds.opt.step()
        seeds.sched.step()
        for k in live:
            runs[k].step = step
        epoch_end = step % per_epoch == 0
        if live and ((eval_every and step % eval_every == 0) or (not eval_every and epoch_end) or step == total):
            for k in live:
                seeds.sync(k)
                row = train_mod._evaluate(runs[k], step, epoch)
                if k == live[0]:
                    reporter.on_eval(row)
        stop = should_stop() and step < total
        if epoch_end or step == total or stop:
            _checkpoint(seeds, live, time.perf_counter() - started)
        if stop:
            break
    seconds = time.perf_counter() - started   # the seeds shared this time; each folder reports all of it
    for k in list(live):
        runs[k].seconds = seconds
    for k in list(live):
        finish(k, "completed" if step >= total else "interrupted")


def _checkpoint(seeds: _Seeds, live: list[int], elapsed: float) -> None:
    rng = torch.get_rng_state()
    for k in live:
        seeds.sync(k)
        torch.set_rng_state(seeds.rng[k])   # each checkpoint holds its own seed's RNG state, as a lone run's does
        train_mod._save_checkpoint(seeds.runs[k], elapsed)
    torch.set_rng_state(rng)


def train_seeds(cfgs: list[RunConfig], run_dirs: list[Path], *, reporter: train_mod.Reporter | None = None,
                should_stop: Callable[[], bool] = lambda: False, progress: data_mod.Progress | None = None,
                plots: bool = True) -> list[train_mod.RunResult]:
    """Train one-seed configs (equal but for seed and name) into their run folders (from train.create_run).

    Vectorised where :func:`unsupported` allows; otherwise one after another, noting why in meta.json.
    """
    reporter = reporter or train_mod.Reporter()
    reason = unsupported(cfgs[0].replace(seed=[c.seeds[0] for c in cfgs])) if len(cfgs) > 1 else "a single seed"
    if reason is not None:
        results = []
        try:
            for cfg, run_dir in zip(cfgs, run_dirs):
                _note(run_dir, {"vectorized": False, "vectorized_reason": reason})
                results.append(train_mod.train(cfg, run_dir, reporter=reporter, should_stop=should_stop,
                                               progress=progress, plots=plots))
                if results[-1].status == "interrupted":
                    break
        finally:
            import shutil

            for run_dir in run_dirs[len(results) + 1:]:   # folders of seeds that never started
                shutil.rmtree(run_dir, ignore_errors=True)
        return results
    for run_dir in run_dirs:
        _note(run_dir, {"vectorized": True, "seeds_together": [c.seeds[0] for c in cfgs]})

    logs = [open(d / "train.log", "a") for d in run_dirs]
    for f in logs:
        f.write(f"[{datetime.now():%Y-%m-%d %H:%M:%S}] train {' '.join(sys.argv)} (seeds together)\n")
        f.flush()
    runs: list[train_mod._Run] = []
    done: dict[int, train_mod.RunResult] = {}

    def finish(k: int, status: str) -> None:
        run = runs[k]
        for csv_log in run.logs.values():
            csv_log.close()
        train_mod._finish_meta(run.run_dir, run, status)
        summary = write_summary(run.run_dir)
        logs[k].write(f"status {status}: {summary}\n")
        logs[k].close()
        train_mod.write_views(run.cfg, run.run_dir, plots)
        done[k] = train_mod.RunResult(run.run_dir, status, summary)

    try:
        splits = data_mod.load(cfgs[0].data, progress)
        rng = []
        for cfg, run_dir, log in zip(cfgs, run_dirs, logs):
            runs.append(train_mod._setup(cfg, run_dir, False, progress, splits=splits))
            rng.append(torch.get_rng_state())   # what a lone run of this seed holds after building its model
            log.write(f"device {runs[-1].device}, {sum(p.numel() for p in runs[-1].model.parameters())} "
                      f"parameters, {runs[-1].total_steps} steps, {len(cfgs)} seeds together\n")
            log.flush()
        seeds = _Seeds(runs)
        seeds.rng = rng
        reporter.on_start(run_dirs[0], runs[0].total_steps, 0)
        _loop(seeds, reporter, should_stop, finish, time.perf_counter())
    except SkipexpError:
        for f in logs:
            f.close()
        import shutil

        for d in run_dirs:   # bad input found while setting up: leave no folders behind
            shutil.rmtree(d, ignore_errors=True)
        raise
    except BaseException as e:
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        for k, (run_dir, f) in enumerate(zip(run_dirs, logs)):
            if k in done:
                continue
            f.write(traceback.format_exc())
            f.close()
            train_mod._finish_meta(run_dir, runs[k] if k < len(runs) else None, status)
        raise
    finally:
        for run in runs:
            for csv_log in run.logs.values():
                csv_log.close()
    results = [done[k] for k in sorted(done)]
    for r in results:
        reporter.on_end(r.status, r.summary)
    return results


def _note(run_dir: Path, fields: dict) -> None:
    meta = runio.read_json(run_dir / "meta.json")
    meta.update(fields)
    runio.write_json(run_dir / "meta.json", meta)
