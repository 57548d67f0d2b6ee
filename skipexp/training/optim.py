"""The optimizers and learning-rate schedules behind ``train.optimizer`` and ``train.schedule``.

Each optimizer is one call of torch's fused kernel (``torch._fused_sgd_``, ``_fused_adam_``,
``_fused_adamw_``): one kernel over all parameters instead of a Python loop over them, which on the
CPU with ~80 small tensors halves the optimizer's share of a width-64 step (benchmarks/bench.py).
They are the kernels ``torch.optim.SGD/Adam/AdamW(fused=True)`` call, with the same arguments, so the
numbers are the same to the bit, and their ``state_dict`` is torch.optim's (checkpoints written
before load into them and back). They are not ``torch.optim.Optimizer`` subclasses because building
or stepping one of those imports ``torch._dynamo``: seconds of start-up for every training process.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from skipexp.core.config import TrainConfig
from skipexp.core.registry import OPTIMIZERS, SCHEDULES


class FusedOptimizer:
    """One parameter group, its per-parameter state, and torch.optim's state_dict layout."""

    state_keys: tuple[str, ...] = ()

    def __init__(self, params: Iterable[nn.Parameter], **group: Any):
        self.params = list(params)
        self.param_groups = [{**group, "params": self.params}]
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}

    @property
    def group(self) -> dict:
        return self.param_groups[0]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def _with_grads(self) -> tuple[list[nn.Parameter], list[torch.Tensor]]:
        params = [p for p in self.params if p.grad is not None]
        return params, [p.grad for p in params]

    def state_dict(self) -> dict:
        index = {p: i for i, p in enumerate(self.params)}
        return {"state": {index[p]: dict(s) for p, s in self.state.items()},
                "param_groups": [{**{k: v for k, v in self.group.items() if k != "params"},
                                  "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("loaded state dict has a different number of parameters or groups")
        self.group.update({k: v for k, v in groups[0].items() if k != "params"})
        self.state = {}
        for i, s in state_dict["state"].items():
            p = self.params[int(i)]
            self.state[p] = {k: (v.to(device=p.device, dtype=torch.float32) if k == "step"
                                 else v.to(device=p.device, dtype=p.dtype)) for k, v in s.items()}


class SGD(FusedOptimizer):
    """torch.optim.SGD(fused=True): momentum without dampening or Nesterov, L2 weight decay."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, momentum: float, weight_decay: float):
        super().__init__(params, lr=lr, momentum=momentum, dampening=0, weight_decay=weight_decay, nesterov=False,
                         maximize=False, foreach=None, differentiable=False, fused=True)

    @torch.no_grad()
    def step(self) -> None:
        params, grads = self._with_grads()
        if not params:
            return
        g = self.group
        bufs = [self.state.get(p, {}).get("momentum_buffer") for p in params]
        first = g["momentum"] != 0 and all(b is None for b in bufs)
        if first:
            bufs = [torch.empty_like(grad) for grad in grads]
        torch._fused_sgd_(params, grads, [] if g["momentum"] == 0 else bufs, weight_decay=g["weight_decay"],
                          momentum=g["momentum"], lr=g["lr"], dampening=g["dampening"], nesterov=g["nesterov"],
                          maximize=g["maximize"], is_first_step=first, grad_scale=None, found_inf=None)
        if g["momentum"] != 0:
            for p, buf in zip(params, bufs):
                self.state.setdefault(p, {})["momentum_buffer"] = buf


class Adam(FusedOptimizer):
    """torch.optim.Adam / AdamW(fused=True); ``decoupled_weight_decay`` makes it AdamW."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], weight_decay: float,
                 decoupled_weight_decay: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay, amsgrad=False,
                         maximize=False, foreach=None, capturable=False, differentiable=False, fused=True,
                         decoupled_weight_decay=decoupled_weight_decay)

    @torch.no_grad()
    def step(self) -> None:
        params, grads = self._with_grads()
        if not params:
            return
        g = self.group
        for p in params:
            if p not in self.state:
                self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if g["decoupled_weight_decay"] else torch._fused_adam_
        kernel(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [], steps,
               amsgrad=False, lr=g["lr"], beta1=g["betas"][0], beta2=g["betas"][1], weight_decay=g["weight_decay"],
               eps=g["eps"], maximize=False, grad_scale=None, found_inf=None)


class Schedule:
    """torch.optim.lr_scheduler.LambdaLR over one group: lr = initial lr * factor(step), same state_dict."""

    def __init__(self, opt: FusedOptimizer, factor: Any):
        self.opt, self.factor = opt, factor
        opt.group.setdefault("initial_lr", opt.group["lr"])
        self.base_lr, self.last_epoch = opt.group["initial_lr"], -1
        self.step()

    def step(self) -> None:
        self.last_epoch += 1
        self.opt.group["lr"] = self.base_lr * self.factor(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        return [self.opt.group["lr"]]

    def state_dict(self) -> dict:
        return {"base_lrs": [self.base_lr], "last_epoch": self.last_epoch, "_step_count": self.last_epoch + 1,
                "_is_initial": False, "_get_lr_called_within_step": False, "_last_lr": self.get_last_lr(),
                "lr_lambdas": [None]}

    def load_state_dict(self, state: dict) -> None:
        self.base_lr, self.last_epoch = state["base_lrs"][0], int(state["last_epoch"])
        self.opt.group["lr"] = state["_last_lr"][0]


OPTIMIZERS.implements("sgd")(lambda params, t: SGD(params, lr=t.lr, momentum=t.momentum,
                                                  weight_decay=t.weight_decay))
OPTIMIZERS.implements("adam")(lambda params, t: Adam(params, lr=t.lr, betas=(t.momentum, 0.999),
                                                    weight_decay=t.weight_decay))
OPTIMIZERS.implements("adamw")(lambda params, t: Adam(params, lr=t.lr, betas=(t.momentum, 0.999),
                                                     weight_decay=t.weight_decay, decoupled_weight_decay=True))
SCHEDULES.implements("constant")(lambda step, total: 1.0)
SCHEDULES.implements("cosine")(lambda step, total: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))


def build_optimizer(params: Iterable[nn.Parameter], t: TrainConfig) -> FusedOptimizer:
    return OPTIMIZERS.get(t.optimizer)(params, t)


def build_schedule(opt: FusedOptimizer, t: TrainConfig, total: int) -> Schedule:
    """The learning rate as lr times the schedule's factor of the step, over ``total`` steps."""
    factor = SCHEDULES.get(t.schedule)
    return Schedule(opt, lambda s: factor(s, total))
