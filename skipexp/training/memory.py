"""What training a config needs in memory, told before anything is built, and a refusal where it cannot fit.

``model.depth=100000`` is 832 M parameters: its weights alone take 3.3 GB, and training it holds its
gradients, its optimizer's state and a batch's activations too. :func:`estimate` adds these up from the
config (the parameters counted without building the model, :func:`skipexp.core.models.parameter_count`);
:func:`check_fits` refuses, with one line stating the parameters and both sizes, a run whose estimate is
more than the memory available on its device (RAM not in use, or the GPU's free memory).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from skipexp.core import nets
from skipexp.core.config import RunConfig, TrainConfig
from skipexp.core.data import input_shape
from skipexp.core.errors import SkipexpError
from skipexp.core.machine import available_ram
from skipexp.core.models import block_shapes, parameter_count, plan

FLOAT = 4  # bytes: every parameter, gradient, state and activation is float32

# optimizer -> tensors of state it keeps per parameter (tests/test_memory.py checks these against the
# optimizers' own state after a step)
STATE_PER_PARAMETER: dict[str, Callable[[TrainConfig], int]] = {
    "sgd": lambda t: 1 if t.momentum else 0,   # the momentum buffer
    "adam": lambda t: 2,                       # first and second moments
    "adamw": lambda t: 2,
}


@dataclass(frozen=True)
class Estimate:
    parameters: int   # of one model
    models: int       # trained together
    bytes: int        # all of it: weights, gradients, optimizer state, activations

    def __str__(self) -> str:
        k = f"{self.models} models of " if self.models > 1 else ""
        return f"{k}{self.parameters:,} parameters, about {size(self.bytes)} to train"


def size(n: float) -> str:
    """Bytes for people: ``5.3 MB``, ``26.4 GB``; past a thousand TB, ``6.4e+08 TB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB" if n < 1000 else f"{n:.2g} TB"


def estimate(cfgs: list[RunConfig]) -> Estimate:
    """Memory to train ``cfgs`` (one model each, one shape) together.

    Per model: the weights twice (a stack of K > 1 models keeps each model's own copy beside the stack; a
    single model's gathered gradients take about as much), the gradients, the optimizer's state, and for a
    batch the activations that backward keeps (a block's input, its hidden values before and after the
    activation or norm) and the boundary gradients a log step retains. On the CPU it errs high: configs/skip.yaml
    at depth 3000 (25 M parameters, SGD with momentum) is estimated at 793 MB and peaked 642 MB above the
    process's size at depth 20 (maxrss, 20 steps)."""
    cfg = cfgs[0]
    inputs, classes = input_shape(cfg.data)
    own = nets.FOOTPRINTS.get(cfg.model.block)
    if own is not None:
        params, per_example = own(cfg)
    else:
        units = plan(cfg.model)
        params = parameter_count(cfg.model, inputs, classes, units)
        per_example = inputs + classes + sum(d_in + 2 * hidden + d_out for d_in, hidden, d_out in
                                             block_shapes(cfg.model, units))
    state = STATE_PER_PARAMETER[cfg.train.optimizer](cfg.train)
    one = FLOAT * (params * (2 + 1 + state) + cfg.train.batch_size * per_example)
    return Estimate(params, len(cfgs), one * len(cfgs))


def available(device: torch.device) -> int | None:
    """Bytes free for a run on ``device``: the GPU's free memory, or the RAM not in use; None where unknown."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:   # noqa: BLE001 - a device that cannot say: nothing to hold the estimate against
            return None
    return available_ram()


def check_fits(cfgs: list[RunConfig], device: torch.device) -> Estimate:
    """The estimate for ``cfgs`` on ``device``, or a SkipexpError (key ``model``) stating parameters and memory
    where it is more than is available."""
    need = estimate(cfgs)
    have = available(device)
    if have is not None and need.bytes > have:
        where = "free on " + str(device) if device.type == "cuda" else "of RAM available"
        raise SkipexpError(f"the model has {need.parameters:,} parameters"
                           + (f" ({need.models} models together)" if need.models > 1 else "")
                           + f"; training needs about {size(need.bytes)} (weights, gradients, optimizer state, "
                           f"activations at batch {cfgs[0].train.batch_size}) but this machine has "
                           f"{size(have)} {where}; make it smaller (model.depth, model.width)", key="model")
    return need

