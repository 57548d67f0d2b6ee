"""The optimizers and learning-rate schedules behind ``train.optimizer`` and ``train.schedule``.

Each optimizer is one call of torch's fused kernel (``torch._fused_sgd_``, ``_fused_adam_``,
``_fused_adamw_``): one kernel over all parameters instead of a Python loop over them, which on the
CPU with ~80 small tensors halves the optimizer's share of a width-64 step (benchmarks/bench.py).
They are the kernels ``torch.optim.SGD/Adam/AdamW(fused=True)`` call, with the same arguments, so the
numbers are the same to the bit, and their ``state_dict`` is torch.optim's (checkpoints written
before load into them and back). They are not ``torch.optim.Optimizer`` subclasses because building
or stepping one of those imports ``torch._dynamo``: seconds of start-up for every training process.

Stacked models (a leading K dimension on every parameter, K >= 1) may each have their own
hyperparameters (``models``). The kernel is called once per distinct set, always on the views ``p[k]``
of the models that share it, never on whole stacked tensors: the CPU kernels round a tensor's last few
elements (past its last full vector) differently from the rest, so a model's update would otherwise
depend on where its slice falls in the stack, that is on how many models train beside it. On views,
model k's update is its K = 1 update to the bit, given the same gradient.

On CUDA the kernels read the learning rate from a device tensor (:meth:`FusedOptimizer.lr_on_device`), so
that a step captured as a CUDA graph follows the schedule when replayed. Every CUDA step does so, captured
or not, so a run's numbers do not depend on which of its steps were replayed. The kernels read that lr as a
float32 (a Python float reaches them as a double), so on CUDA the "same to the bit" above holds against
torch.optim given the lr as such a tensor; against a float lr, an lr float32 cannot hold (0.05, a cosine
value) moves the weights in their last bits.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from skipexp.core.config import TrainConfig
from skipexp.core.registry import OPTIMIZERS, SCHEDULES


class FusedOptimizer:
    """One parameter group, its per-parameter state, and torch.optim's state_dict layout."""

    def __init__(self, params: Iterable[nn.Parameter], **group: Any):
        self.params = list(params)
        self.param_groups = [{**group, "params": self.params}]
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}
        # stacked models' own hyperparameters (group keys), one dict per model; None: not stacked
        self.models: list[dict] | None = None
        # lr_on_device: each kernel call's lr (one for all, or one per model), and the values last put there
        self.lr_tensor: torch.Tensor | None = None
        self._loaded: list[float | None] = []
        self.held: list[tuple[nn.Parameter, torch.Tensor]] = []   # hold_grads: each parameter's gradient tensor
        self._kept_views: dict[tuple, tuple] = {}   # views: per-model views of parameters and state

    @property
    def group(self) -> dict:
        return self.param_groups[0]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def hold_grads(self) -> None:
        """Keep the gradients in the tensors they are in now: after each backward, :meth:`gather_grads` copies
        the fresh ones there. Captured steps need that (the update reads the tensors it was captured with,
        whichever captured backward ran); one copy over all of them costs less than zeroing them and
        accumulating into them, a kernel per parameter."""
        self.held = [(p, p.grad) for p in self.params if p.grad is not None]

    def gather_grads(self) -> None:
        if self.held:
            torch._foreach_copy_([g for _, g in self.held], [p.grad for p, _ in self.held])
            for p, g in self.held:
                p.grad = g

    def views(self, ks: list[int], params: list[torch.Tensor], grads: list[torch.Tensor],
              *states: list[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
        """:func:`_views` of parameters, gradients and state tensors. Views of parameters and state are made
        once and kept (those tensors live as long as the optimizer); a gradient is a new tensor each step."""
        key = (tuple(ks), tuple(map(id, params)), tuple(id(t) for ts in states for t in ts))
        if self._kept_views.get(key, (None,))[0] is None:
            # the tuple holds the tensors themselves, so no id in the key can be reused while it is kept
            self._kept_views[key] = ((params, states), _views(ks, params, *states))
        kept = self._kept_views[key][1]
        return (kept[0], *_views(ks, grads), *kept[1:])

    def _with_grads(self) -> tuple[list[nn.Parameter], list[torch.Tensor]]:
        params = [p for p in self.params if p.grad is not None]
        return params, [p.grad for p in params]

    def calls(self) -> list[tuple[dict, list[int] | None]]:
        """(hyperparameters, models) of each kernel call: None for whole tensors (not stacked), else the models
        sharing them, whose views the call takes."""
        if self.models is None or len(self.models) == 1:   # one model's whole tensors are its one view
            return [(self.group if self.models is None else self.models[0], None)]
        by_values: dict[tuple, list[int]] = {}
        for k, m in enumerate(self.models):
            by_values.setdefault(tuple(sorted(m.items())), []).append(k)
        return [(self.models[ks[0]], ks) for ks in by_values.values()]

    def lr_on_device(self, device: torch.device) -> None:
        """Have the kernels read lr from a float32 tensor on ``device``, filled by :meth:`load_lr` before each
        step: one call over whole tensors, or one per stacked model (the calls are then fixed, as a captured
        graph needs, whatever the lrs do)."""
        n = 1 if self.models is None else len(self.models)
        self.lr_tensor = torch.zeros(n, dtype=torch.float32, device=device)
        self._loaded = [None] * n

    def load_lr(self) -> None:
        """Put the schedule's current lr(s) where the kernels read them (outside a capture: a fill is baked in)."""
        if self.lr_tensor is None:
            return
        for i, g in enumerate([self.group] if self.models is None else self.models):
            if g["lr"] != self._loaded[i]:
                self.lr_tensor[i].fill_(g["lr"])
                self._loaded[i] = g["lr"]

    def kernel_calls(self) -> list[tuple[dict, list[int] | None, float | torch.Tensor]]:
        """:meth:`calls` with the lr each call passes: the group's float, or its device tensor."""
        if self.lr_tensor is None:
            return [(g, ks, g["lr"]) for g, ks in self.calls()]
        if self.models is None:
            return [(self.group, None, self.lr_tensor[0])]
        return [(m, [k], self.lr_tensor[k]) for k, m in enumerate(self.models)]

    def uses(self, key: str, group: dict) -> bool:
        """Whether a parameter's state ``key`` exists under hyperparameters ``group``."""
        return True

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
        calls = self.kernel_calls()
        momentum = any(g["momentum"] != 0 for g, _, _ in calls)
        bufs = [self.state.get(p, {}).get("momentum_buffer") for p in params]
        first = momentum and all(b is None for b in bufs)
        if first:  # the kernel's first step copies the gradient in; zeros where a model has no momentum
            bufs = [(torch.empty_like if len(calls) == 1 else torch.zeros_like)(grad) for grad in grads]
        for g, ks, lr in calls:
            ps, gs, bs = (params, grads, bufs) if ks is None else self.views(ks, params, grads, bufs)
            torch._fused_sgd_(ps, gs, [] if g["momentum"] == 0 else bs, weight_decay=g["weight_decay"],
                              momentum=g["momentum"], lr=lr, dampening=g["dampening"], nesterov=g["nesterov"],
                              maximize=g["maximize"], is_first_step=first, grad_scale=None, found_inf=None)
        if first:   # later steps update the stored buffers in place
            for p, buf in zip(params, bufs):
                self.state.setdefault(p, {})["momentum_buffer"] = buf

    def uses(self, key: str, group: dict) -> bool:
        return group["momentum"] != 0


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
        for p in params:
            if p not in self.state:
                self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        avgs, sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        for g, ks, lr in self.kernel_calls():
            ps, gs, a, sq, st = ((params, grads, avgs, sqs, steps) if ks is None
                                 else self.views(ks, params, grads, avgs, sqs) + ([t for _ in ks for t in steps],))
            kernel = torch._fused_adamw_ if g["decoupled_weight_decay"] else torch._fused_adam_
            kernel(ps, gs, a, sq, [], st, amsgrad=False, lr=lr, beta1=g["betas"][0], beta2=g["betas"][1],
                   weight_decay=g["weight_decay"], eps=g["eps"], maximize=False, grad_scale=None, found_inf=None)


def _views(ks: list[int], *tensor_lists: list[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
    """Models ``ks``'s slices ``t[k]`` of stacked tensors (contiguous views), in one order for every list."""
    out = []
    for ts in tensor_lists:
        per_tensor = [t.unbind(0) for t in ts]   # one call per tensor for all its models' views
        out.append([views[k] for k in ks for views in per_tensor])
    return tuple(out)


class Schedule:
    """torch.optim.lr_scheduler.LambdaLR over one group: lr = initial lr * factor(step), same state_dict.

    Over stacked models with their own hyperparameters (``opt.models``), each model's lr is its own
    initial lr times its own factor; ``get_last_lr`` then lists one lr per model.
    """

    def __init__(self, opt: FusedOptimizer, factor: Any, factors: list[Any] | None = None):
        self.opt = opt
        self.groups = opt.models if opt.models is not None else [opt.group]
        self.factors = factors or [factor] * len(self.groups)
        self.base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in self.groups]
        self.last_epoch = -1
        self.step()

    def step(self) -> None:
        self.last_epoch += 1
        for g, base, factor in zip(self.groups, self.base_lrs, self.factors):
            g["lr"] = base * factor(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.groups]

    def state_dict(self, k: int | None = None) -> dict:
        """The state (of model ``k`` alone, as its lone run's schedule holds it)."""
        base, last = ((list(self.base_lrs), self.get_last_lr()) if k is None
                      else ([self.base_lrs[k]], [self.groups[k]["lr"]]))
        return {"base_lrs": base, "last_epoch": self.last_epoch, "_step_count": self.last_epoch + 1,
                "_is_initial": False, "_get_lr_called_within_step": False, "_last_lr": last,
                "lr_lambdas": [None] * len(base)}

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs, self.last_epoch = list(state["base_lrs"]), int(state["last_epoch"])
        for g, lr in zip(self.groups, state["_last_lr"]):
            g["lr"] = lr


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


def hyperparameters(t: TrainConfig) -> dict:
    """The optimizer group ``t`` gives (lr, momentum, ...): what a model of a stack may have its own of."""
    return {k: v for k, v in build_optimizer([], t).group.items() if k != "params"}


def build_stacked_optimizer(params: Iterable[nn.Parameter], ts: list[TrainConfig]) -> FusedOptimizer:
    """One optimizer over stacked parameters for models with train configs ``ts`` (equal optimizer kind)."""
    opt = build_optimizer(params, ts[0])
    opt.models = [hyperparameters(t) for t in ts]
    return opt


def _factor(t: TrainConfig, total: int) -> Any:
    factor = SCHEDULES.get(t.schedule)
    return lambda s: factor(s, total)


def build_schedule(opt: FusedOptimizer, t: TrainConfig, total: int,
                   ts: list[TrainConfig] | None = None) -> Schedule:
    """The learning rate as lr times the schedule's factor of the step, over ``total`` steps (each stacked
    model's own schedule, given their configs ``ts``, where the optimizer has per-model values)."""
    factors = [_factor(m, total) for m in ts] if ts and opt.models is not None else None
    return Schedule(opt, _factor(t, total), factors)
