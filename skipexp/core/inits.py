"""Weight inits: one function per registered name, each drawing one Linear from where it sits in the net.

Where a Linear sits is a :class:`Site`: the activation's gain (``kaiming`` and ``orthogonal`` put it on every
Linear, as they always have), the *critical* gain of what the Linear's output goes into next (1 where that
is no activation: a block's last Linear in the tutorial's order, the input layer, the head, a projection),
and whether its rows or columns face an activation (for looks-linear's mirrored pairs).

Critical gains make chi = sigma_w1^2 E[phi'(z)^2] sigma_w2^2 = 1 per block (see :mod:`skipexp.science.theory`):
for ReLU E[phi'^2] = 1/2 at every scale, so sqrt 2 on the Linear before the ReLU and 1 after it gives chi = 1
exactly; for tanh the edge of chaos with zero biases is sigma_w = 1 (Schoenholz et al. 2017, Pennington et al.
2017), where chi tends to 1 as the signal shrinks; GELU behaves like ReLU for large inputs (sqrt 2) and like
x/2 near 0 (chi 1/2 there). Sigmoid has no critical point with zero biases (its mean is not 0), so the
critical inits refuse it (:data:`skipexp.core.registry.INIT_ACTIVATIONS`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from skipexp.core.registry import INITS

# The variance-preserving gain of each activation (PyTorch's calculate_gain, plus GELU's ~ReLU).
GAINS = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0, "gelu": math.sqrt(2.0), "sigmoid": 1.0, "identity": 1.0}
# The gain that puts a Linear feeding this activation at chi = 1 (see the module doc); sigmoid has none.
CRITICAL_GAINS = {"relu": math.sqrt(2.0), "tanh": 1.0, "gelu": math.sqrt(2.0), "identity": 1.0}


@dataclass(frozen=True)
class Site:
    """Where a Linear sits: what an init may read."""
    gain: float          # the activation's variance-preserving gain (GAINS)
    feeds: float = 1.0   # the critical gain of the activation this Linear's output goes into (1: none)
    mirror: str = ""     # "rows": its outputs go into a ReLU (a block's fc1); "cols": it reads one (fc2)


@INITS.implements("default")
def init_default(linear: nn.Linear, site: Site) -> None:
    """Keep what nn.Linear drew when it was built."""


@INITS.implements("kaiming")
def init_kaiming(linear: nn.Linear, site: Site) -> None:
    nn.init.normal_(linear.weight, std=site.gain / math.sqrt(linear.in_features))
    _zero_bias(linear)


@INITS.implements("xavier")
def init_xavier(linear: nn.Linear, site: Site) -> None:
    nn.init.normal_(linear.weight, std=math.sqrt(2.0 / (linear.in_features + linear.out_features)))
    _zero_bias(linear)


@INITS.implements("orthogonal")
def init_orthogonal(linear: nn.Linear, site: Site) -> None:
    nn.init.orthogonal_(linear.weight, gain=site.gain)
    _zero_bias(linear)


@INITS.implements("critical")
def init_critical(linear: nn.Linear, site: Site) -> None:
    """Normal, std = (critical gain of what it feeds) / sqrt(fan_in): chi = 1 per plain block."""
    nn.init.normal_(linear.weight, std=site.feeds / math.sqrt(linear.in_features))
    _zero_bias(linear)


@INITS.implements("orthogonal-critical")
def init_orthogonal_critical(linear: nn.Linear, site: Site) -> None:
    """Orthogonal with the critical gain of what it feeds (dynamical isometry for tanh, Pennington et al. 2017)."""
    nn.init.orthogonal_(linear.weight, gain=site.feeds)
    _zero_bias(linear)


@INITS.implements("looks-linear")
def init_looks_linear(linear: nn.Linear, site: Site) -> None:
    """Mirrored orthogonal pairs (Balduzzi et al. 2017): fc1 = [W; -W], fc2 = [V, -V], so that
    V relu(Wx) - V relu(-Wx) = V W x and every ReLU block is a linear map at init."""
    w = linear.weight
    with torch.no_grad():
        if site.mirror == "rows":
            half = torch.empty(w.shape[0] // 2, w.shape[1], dtype=w.dtype, device=w.device)
            nn.init.orthogonal_(half, gain=site.feeds)
            w.copy_(torch.cat([half, -half], dim=0))
        elif site.mirror == "cols":
            half = torch.empty(w.shape[0], w.shape[1] // 2, dtype=w.dtype, device=w.device)
            nn.init.orthogonal_(half, gain=site.feeds)
            w.copy_(torch.cat([half, -half], dim=1))
        else:
            nn.init.orthogonal_(w, gain=site.feeds)
    _zero_bias(linear)


def _zero_bias(linear: nn.Linear) -> None:
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
