"""Signal propagation at initialisation (Schoenholz et al. 2017; Yang & Schoenholz 2017), per block.

Mean-field theory for one block ``h -> z = W1 h + b1 -> a = phi(z) -> F = W2 a + b2``, with per-entry
weight second moments v1, v2 (sigma_w^2 = fan_in * v), bias second moments vb1, vb2, width d_in into the
block and ``hidden`` inside it. With q = the mean square of one coordinate of h:

    forward:   q_z = d_in v1 q + vb1          q_F = hidden v2 E[phi(z)^2] + vb2,   z ~ N(0, q_z)
    backward:  chi_F = E||dL/dh||^2 / E||dL/dF||^2 = (d_in v1) * E[phi'(z)^2] * (hidden v2)

because ``W^T u`` for a weight matrix with d_in columns and i.i.d. entries has E||W^T u||^2 = d_in v ||u||^2,
and the activation's derivative multiplies coordinate-wise. A unit adds its shortcut to the branch:
identity gives ``chi = 1 + chi_F`` and ``q_out = q + q_F`` (the cross term has mean zero), a projection
P gives ``d_in v_P + chi_F``, ReZero ``1 + alpha^2 chi_F`` (alpha = 0 at init: exactly 1), a plain unit
``chi_F``. Chained over blocks, the predicted ratio of activation-gradient norms is

    ||dL/dh_0|| / ||dL/dh_depth|| = sqrt(prod over units of chi_unit).

A pre-activation block (``model.order: pre``: act -> fc1 -> act -> fc2) has an activation at its input
too, so its chi_F gains a factor E[phi'(x)^2] at the block input's q. With ``init: looks-linear`` a ReLU block
is the linear map M = W2 W1 / 2 at init (mirrored pairs), and chi_F = ||M||_F^2 / d_out exactly for an
isotropic signal.

Examples (ReLU, E[phi'^2] = 1/2 whatever q is): PyTorch's default init draws U(-1/sqrt(fan_in), ...) so
sigma_w^2 = 1/3 and chi_F = 1/3 * 1/2 * 1/3 = 1/18 (gradients vanish ~4.2x per block); ``kaiming`` puts the
ReLU gain on both Linears, sigma_w^2 = 2, so chi_F = 2 * 1/2 * 2 = 2 (they grow sqrt 2 per block); ``xavier``
on square layers gives sigma_w^2 = 1 and chi_F = 1/2; ``critical`` puts sqrt 2 on fc1 (it feeds the ReLU) and 1
on fc2 (it feeds none), so chi_F = 2 * 1/2 * 1 = 1. Identity skips with kaiming: sqrt(3) per block.

The weight moments are read from the model as drawn, so every registered init is covered; the theory
assumes wide layers, Gaussian pre-activations and weights independent of the backward signal. It says
nothing here for norms (layernorm / batchnorm), gated (the gate's own derivative adds terms) or dense units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from skipexp.core.metrics import GradProbe
from skipexp.core.models import IdentitySkip, ProjectionSkip, ReZeroSkip, SkipNet
from skipexp.science import jacobian as jacobian_mod
from skipexp.training.threads import choose_threads

if TYPE_CHECKING:
    from skipexp.core.config import RunConfig

QUADRATURE_NODES = 100  # even: no node at 0, where ReLU's derivative is undefined
JACOBIAN_EXAMPLES = 32  # examples whose Jacobians dh_i/dh_0 validate --theory takes


def gaussian_moments(activation: nn.Module, q: float) -> tuple[float, float]:
    """(E[phi(z)^2], E[phi'(z)^2]) for z ~ N(0, q), by Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
    z = torch.tensor(x * math.sqrt(max(q, 0.0)), dtype=torch.float64, requires_grad=True)
    phi = activation(z)
    (dphi,) = torch.autograd.grad(phi.sum(), z)
    weights = torch.tensor(w / math.sqrt(2 * math.pi), dtype=torch.float64)
    return float((weights * phi.detach().square()).sum()), float((weights * dphi.square()).sum())


def _moments(linear: nn.Linear) -> tuple[float, float]:
    """(fan_in * mean W^2, mean b^2): sigma_w^2 and sigma_b^2 of a layer as drawn."""
    w = linear.weight.detach().double()
    b = linear.bias.detach().double() if linear.bias is not None else torch.zeros(1, dtype=torch.float64)
    return float(w.square().mean()) * linear.in_features, float(b.square().mean())


def _shortcut_gain(skip: nn.Module) -> float:
    """scale^2 * d_in * v_P of the shortcut ``scale * P(x)``; d_in * v_P is 1 where P is x itself."""
    proj = getattr(skip, "proj", None)
    return getattr(skip, "scale", 1.0) ** 2 * (_moments(proj)[0] if isinstance(proj, nn.Linear) else 1.0)


@dataclass
class BlockTheory:
    sigma_w2: float       # fan_in * mean W^2 of fc1
    sigma_b2: float       # mean b^2 of fc1
    q_in: float           # mean square of fc1's output coordinate (the pre-activation)
    dphi2: float          # E[phi'(z)^2] at fc1's output (times that at the block's input, pre-activation order)
    chi_branch: float     # chi_F
    chi_unit: float       # chi of the unit this block ends (1 for blocks inside a unit)
    q_out: float = 0.0    # mean square of the block's output coordinate


# Inits under which a ReLU block is the linear map x -> (W2 W1 / 2) x at init (mirrored pairs).
LINEAR_AT_INIT = ("looks-linear",)


def block_theory(blk: nn.Module, q: float, linear: bool = False) -> BlockTheory:
    """One block at input mean square ``q``: the mean-field recursion of the module doc, in the block's order.

    Post order (fc1 -> act -> fc2): chi_F = sigma_w1^2 E[phi'(z1)^2] sigma_w2^2. Pre-activation order
    (act -> fc1 -> act -> fc2) has an activation at the input too: chi_F = E[phi'(x)^2] sigma_w1^2 E[phi'(z1)^2]
    sigma_w2^2, and fc1 reads phi(x). ``linear`` (looks-linear): the block is M = W2 W1 / 2 exactly, so
    chi_F = ||M||_F^2 / d_out and q_out = ||M||_F^2 q / d_out for an isotropic signal.
    """
    s_w1, s_b1 = _moments(blk.fc1)
    s_w2, s_b2 = _moments(blk.fc2)
    if linear:
        m = (blk.fc2.weight.detach().double() @ blk.fc1.weight.detach().double()) / 2
        fro = float(m.square().sum())
        return BlockTheory(s_w1, s_b1, s_w1 * q + s_b1, 0.5, fro / m.shape[0], 1.0, fro / m.shape[0] * q)
    phi_in, dphi_in = gaussian_moments(blk.act, q) if getattr(blk, "reads_act", False) else (q, 1.0)
    q_z = s_w1 * phi_in + s_b1
    phi2, dphi2 = gaussian_moments(blk.act, q_z)
    chi_f = dphi_in * s_w1 * dphi2 * s_w2
    return BlockTheory(s_w1, s_b1, q_z, dphi_in * dphi2, chi_f, 1.0, s_w2 * phi2 + s_b2)


def why_not(model: SkipNet) -> str | None:
    """Why there is no prediction for this model, or None where the theory applies."""
    cfg = model.cfg
    if cfg.block != "mlp":
        return (f"the mean-field theory here is for blocks of Linear layers; a {cfg.block} block's chi depends on "
                f"its convolutions' spatial structure, so only the measurement is shown")
    if cfg.norm != "none":
        return f"norm {cfg.norm} rescales every block; this theory covers norm: none"
    if any(u.bypassed for u in model.units) and cfg.skip.kind not in ("none", "identity", "projection", "rezero"):
        return f"no closed form here for skip kind {cfg.skip.kind} (gates and concatenations add terms)"
    return None


def predict(model: SkipNet, q0: float) -> tuple[list[float], list[BlockTheory]]:
    """Predicted ||dL/dh_i|| / ||dL/dh_depth|| for every boundary i, from the mean square q0 of h0.

    Boundaries inside a unit of span > 1 get the branch's product up to there (the skip joins at the end).
    """
    reason = why_not(model)
    if reason is not None:
        raise ValueError(reason)
    chis: list[float] = []       # chi of the step from boundary i to i+1, as seen from the end of the unit
    blocks: list[BlockTheory] = []
    q = q0
    for unit in model.units:
        q_start, chi_branch = q, 1.0
        for i in unit.blocks:
            blk = model.blocks[i]
            theory = block_theory(blk, q, model.cfg.init in LINEAR_AT_INIT)
            chi_branch *= theory.chi_branch
            q = theory.q_out
            blocks.append(theory)
            chis.append(theory.chi_branch)
        skip = model.skips[unit.skip] if unit.skip is not None else None
        if isinstance(skip, (IdentitySkip, ProjectionSkip, ReZeroSkip)):
            scale = float(skip.alpha.detach()) ** 2 if isinstance(skip, ReZeroSkip) else 1.0
            gain = _shortcut_gain(skip)
            chi_unit = gain + scale * chi_branch
            q = gain * q_start + scale * q
            # spread the unit's chi evenly over its blocks, so that products over whole units are exact
            per = chi_unit ** (1.0 / len(unit.blocks))
            chis[-len(unit.blocks):] = [per] * len(unit.blocks)
        else:
            chi_unit = chi_branch
        blocks[-1].chi_unit = chi_unit
    ratios = [1.0]
    for chi in reversed(chis):
        ratios.append(ratios[-1] * math.sqrt(chi))
    return ratios[::-1], blocks


def measure(model: SkipNet, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Measured ||dL/dh_i|| / ||dL/dh_depth|| on one batch, with metrics.GradProbe."""
    model.zero_grad(set_to_none=True)
    logits, hs = model(x, capture=True)
    for h in hs:
        h.retain_grad()
    nn.functional.cross_entropy(logits, y).backward()
    norms = GradProbe.act_grad_norms(hs).tolist()
    model.zero_grad(set_to_none=True)
    return [n / norms[-1] for n in norms]


def input_mean_square(model: SkipNet, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model.input(x).double().square().mean())


# --- what ``skipexp validate --theory`` shows ---------------------------------------------------------

@dataclass
class TheoryReport:
    depth: int
    examples: int                    # training examples the ratios were measured on
    measured: list[float]            # ||dL/dh_i|| / ||dL/dh_depth|| at init, i = 0..depth
    predicted: list[float] | None    # the same, predicted; None where the theory says nothing
    blocks: list[BlockTheory]        # per block; empty without a prediction
    reason: str | None               # why there is no prediction
    activation: str = ""             # the config's activation, init and block order, named in the report
    init: str = ""
    order: str = "post"
    jacobian: list[dict] = field(default_factory=list)   # per boundary i >= 1: singular values of dh_i/dh_0
    jacobian_examples: int = 0

    def predicted_s2(self, i: int) -> float | None:
        """Mean-field mean s^2 of dh_i/dh_0: the product of the blocks' chi below boundary i."""
        return (self.predicted[0] / self.predicted[i]) ** 2 if self.predicted is not None else None

    def shown(self) -> list[int]:
        """The boundaries worth a row: the ends and about eight between."""
        return sorted({0, self.depth, *range(0, self.depth + 1, max(1, self.depth // 8))})


def report(cfg: RunConfig, batch: int = 512, progress: object = None) -> TheoryReport:
    """Predicted against measured activation-gradient ratios at init, on ``batch`` training examples of the
    config's data, for the model its first seed draws."""
    from skipexp.core import data as data_mod
    from skipexp.core import nets

    torch.set_num_threads(choose_threads(cfg))
    splits = data_mod.load(cfg.data, progress)
    torch.manual_seed(cfg.seeds[0])
    model = nets.build(cfg, splits.input_dim, splits.num_classes)
    x, y = splits.x_train[:batch], splits.y_train[:batch]
    measured = measure(model, x, y)
    jac = []   # none where h_0 is too big for a full Jacobian (a conv net on large images)
    if jacobian_mod.h0_size(model) <= jacobian_mod.MAX_COORDINATES:
        jac, _ = jacobian_mod.spectrum_rows(jacobian_mod.jacobians(model, x[:JACOBIAN_EXAMPLES]), "init")
    extra = {"jacobian": jac, "jacobian_examples": min(JACOBIAN_EXAMPLES, len(y)) if jac else 0}
    reason = why_not(model)
    if reason is not None:
        return TheoryReport(cfg.model.depth, len(y), measured, None, [], reason, **extra)
    predicted, blocks = predict(model, input_mean_square(model, x))
    return TheoryReport(cfg.model.depth, len(y), measured, predicted, blocks, None, cfg.model.activation,
                        cfg.model.init, cfg.model.order, **extra)
