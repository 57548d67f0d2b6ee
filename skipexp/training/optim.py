"""The optimizers and learning-rate schedules behind ``train.optimizer`` and ``train.schedule``."""
from __future__ import annotations

import math

import torch

from skipexp.core.config import TrainConfig
from skipexp.core.registry import OPTIMIZERS, SCHEDULES


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


def build_optimizer(params, t: "TrainConfig") -> torch.optim.Optimizer:
    return OPTIMIZERS.get(t.optimizer)(params, t)


def build_schedule(opt: torch.optim.Optimizer, t: "TrainConfig", total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate as lr times the schedule's factor of the step, over ``total`` steps."""
    factor = SCHEDULES.get(t.schedule)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: factor(s, total))
