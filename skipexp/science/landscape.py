"""Loss landscapes (Li et al. 2018) and the line from the initial to the trained weights (Goodfellow et al. 2015).

Around the trained weights theta the loss is evaluated at ``theta + a d1 (+ b d2)`` on a grid of (a, b), for
random directions d1, d2 that are *filter-normalised* as in the paper: every row of a weight matrix (the
incoming weights of one unit, a fully connected layer's "filter") of a Gaussian direction is rescaled to
the norm of the same row of theta, so a step of 1 moves every unit by its own size, and plots of nets
with different weight scales can be compared. Biases and the parameters of norms (and ReZero's scalar
alpha) get a direction of 0: the paper's ``biasbn`` setting, which leaves them at their trained values.

Directions are drawn from ``seed`` in parameter order: members of a comparison or sweep with the same
parameter shapes (plain and identity skips) get the same Gaussian draws, each scaled to its own weights.
The loss is the mean cross-entropy on a fixed training sample, in eval mode.

Grid points are evaluated together: a chunk of points is one stacked model
(:func:`skipexp.training.stacked.stack_models`, a batched matmul per layer; batch norm with each point's
copy of the checkpoint's running statistics); a model without a stacked form is evaluated one point at a time.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skipexp.core import data as data_mod
from skipexp.core.models import SkipNet
from skipexp.rundir import files
from skipexp.science import figures
from skipexp.science import members as members_mod
from skipexp.training.stacked import StackedLinear, stack_models, unstackable_reason

Params = dict[str, torch.Tensor]
CHUNK = 8   # grid points per stacked forward: measured fastest on 2 cores (8-32 within 20 %)
INTERPOLATION = (-0.5, 1.5, 20)   # alpha from, to, points per unit: the init (0), the trained weights (1) and beyond


def parameters(model: nn.Module) -> Params:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def random_direction(theta: Params, generator: torch.Generator) -> Params:
    """A Gaussian direction, filter-normalised to ``theta``: each row of a weight matrix scaled to the norm
    of theta's row; parameters of one dimension or none (biases, norms, alpha) are 0."""
    out = {}
    for name, w in theta.items():
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
        if w.dim() <= 1:
            out[name] = torch.zeros_like(w)
            continue
        rows_d = d.reshape(d.shape[0], -1)
        rows_w = w.double().reshape(w.shape[0], -1)
        scale = rows_w.norm(dim=1, keepdim=True) / rows_d.norm(dim=1, keepdim=True)
        out[name] = (rows_d * scale).reshape(w.shape).to(w.dtype)
    return out


def directions(theta: Params, count: int, seed: int) -> list[Params]:
    g = torch.Generator().manual_seed(seed)
    return [random_direction(theta, g) for _ in range(count)]


def point(origin: Params, dirs: list[Params], coords: list[float]) -> Params:
    return {k: origin[k] + sum(c * d[k] for c, d in zip(coords, dirs)) for k in origin}


def _loss_acc(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per model: mean cross-entropy and accuracy of logits (..., N, classes) against y (N,)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, y.expand(*logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)       # (..., N)
    return nll.mean(-1), (logits.argmax(-1) == y).float().mean(-1)


class Evaluator:
    """The loss and accuracy of ``model``'s architecture at many parameter points, on (x, y)."""

    def __init__(self, model: SkipNet, x: torch.Tensor, y: torch.Tensor, chunk: int = CHUNK):
        self.model, self.x, self.y, self.chunk = model.eval(), x, y, chunk
        self.stacked = None if unstackable_reason(model) else stack_models([model] * chunk).eval()

    @torch.no_grad()
    def one(self, params: Params) -> tuple[float, float]:
        """One point through the model's own forward: what the batched evaluation must agree with."""
        logits = torch.func.functional_call(self.model, params, (self.x,))
        loss, acc = _loss_acc(logits, self.y)
        return float(loss), float(acc)

    @torch.no_grad()
    def grid(self, origin: Params, dirs: list[Params], coords: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(loss, acc) at ``origin + sum_i coords[p, i] dirs[i]`` for every row p of coords (P, len(dirs))."""
        coords = coords.to(torch.float32)
        if self.stacked is None:
            pairs = [self.one(point(origin, dirs, c.tolist())) for c in coords]
            return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        losses, accs = [], []
        x = self.x.expand(self.chunk, *self.x.shape)                                   # (C, N, in)
        for start in range(0, len(coords), self.chunk):
            c = coords[start:start + self.chunk]
            n = len(c)
            if n < self.chunk:   # the last chunk: pad with the origin and drop what the padding gives
                c = torch.cat([c, torch.zeros(self.chunk - n, c.shape[1])])
            self._load(origin, dirs, c)
            loss, acc = _loss_acc(self.stacked(x), self.y)
            losses.append(loss[:n])
            accs.append(acc[:n])
        return torch.cat(losses).double().numpy(), torch.cat(accs).double().numpy()

    def _load(self, origin: Params, dirs: list[Params], c: torch.Tensor) -> None:
        """Point k of the chunk into slice k of every stacked parameter."""
        for name, p in self.stacked.named_parameters():
            w = origin[name].unsqueeze(0) + sum(
                c[:, i].view(-1, *[1] * origin[name].dim()) * d[name].unsqueeze(0) for i, d in enumerate(dirs))
            owner = self.stacked.get_submodule(name.rpartition(".")[0]) if "." in name else self.stacked
            if isinstance(owner, StackedLinear) and name.endswith("weight"):
                w = w.transpose(1, 2)                       # StackedLinear keeps (C, in, out)
            p.copy_(w.reshape(p.shape))


# --- one run: the grid, the line from init, the numbers --------------------------------------------------

@dataclass
class Settings:
    dims: int = 2          # 1: a line through the checkpoint along d1; 2: the plane of d1 and d2
    points: int = 31       # grid points along each direction (odd: the checkpoint is the middle one)
    span: float = 1.0      # the grid runs from -span to span along each direction
    samples: int = 2048    # training examples the loss is evaluated on
    seed: int = 0          # of the directions

    def axis(self) -> torch.Tensor:
        half = (self.points - 1) // 2   # so that the middle point is exactly 0
        return torch.arange(-half, half + 1, dtype=torch.float64) * (self.span / half)


def measure(run: members_mod.Loaded, s: Settings, x: torch.Tensor, y: torch.Tensor) -> tuple[list[dict], list[dict]]:
    """Rows of landscape.csv (a, b, loss, acc) and of interpolation.csv (alpha, loss, acc)."""
    ev = Evaluator(run.trained, x, y)
    theta = parameters(run.trained)
    dirs = directions(theta, s.dims, s.seed)
    axis = s.axis()
    coords = torch.cartesian_prod(axis, axis) if s.dims == 2 else axis.unsqueeze(1)
    loss, acc = ev.grid(theta, dirs, coords)
    grid = [{"a": float(c[0]), "b": float(c[1]) if s.dims == 2 else 0.0, "loss": float(lo), "acc": float(ac)}
            for c, lo, ac in zip(coords, loss, acc)]
    init = parameters(run.initial())
    lo, hi, per = INTERPOLATION
    alphas = torch.arange(round(lo * per), round(hi * per) + 1, dtype=torch.float64) / per   # 0 and 1 exactly
    line = {k: theta[k] - init[k] for k in theta}
    iloss, iacc = ev.grid(init, [line], alphas.unsqueeze(1))
    interp = [{"alpha": float(a), "loss": float(lo_), "acc": float(ac)} for a, lo_, ac in zip(alphas, iloss, iacc)]
    return grid, interp


def nonconvexity(grid: list[dict]) -> float:
    """How far from convex the measured surface is, from 0 (convex everywhere) to 1.

    2D: at every interior grid point the surface's own 2x2 Hessian by central differences, eigenvalues
    l_min <= l_max, and ``max(0, -l_min) / max(|l_min|, |l_max|)``: 0 where the surface curves up in every
    direction, 1 where it curves only down: the ratio |l_min / l_max| that Li et al. map, on the slice; the
    number is its mean over the grid. 1D: the share of interior points where the second difference is < 0.
    """
    a = sorted({r["a"] for r in grid})
    b = sorted({r["b"] for r in grid})
    f = np.full((len(a), len(b)), np.nan)
    ia, ib = {v: i for i, v in enumerate(a)}, {v: i for i, v in enumerate(b)}
    for r in grid:
        f[ia[r["a"]], ib[r["b"]]] = r["loss"]
    if len(b) == 1:
        d2 = f[2:, 0] - 2 * f[1:-1, 0] + f[:-2, 0]
        d2 = d2[np.isfinite(d2)]
        return float(np.mean(d2 < 0)) if len(d2) else math.nan
    faa = f[2:, 1:-1] - 2 * f[1:-1, 1:-1] + f[:-2, 1:-1]       # times h^2: the ratio does not need it
    fbb = f[1:-1, 2:] - 2 * f[1:-1, 1:-1] + f[1:-1, :-2]
    fab = (f[2:, 2:] - f[2:, :-2] - f[:-2, 2:] + f[:-2, :-2]) / 4
    mean, half = (faa + fbb) / 2, np.sqrt(((faa - fbb) / 2) ** 2 + fab ** 2)
    lmin, lmax = mean - half, mean + half
    scale = np.maximum(np.abs(lmin), np.abs(lmax))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(scale > 0, np.maximum(0.0, -lmin) / scale, 0.0)
    r = r[np.isfinite(r)]
    return float(r.mean()) if len(r) else math.nan


def numbers(grid: list[dict], interp: list[dict], s: Settings) -> dict:
    """What a folder's table shows of a run: the loss at the checkpoint, the largest on the grid, the curvature
    of the slice at the checkpoint along d1, non-convexity, and the barrier on the line from init."""
    origin = min(grid, key=lambda r: abs(r["a"]) + abs(r["b"]))
    h = 2 * s.span / (s.points - 1)
    along = sorted((r for r in grid if r["b"] == origin["b"]), key=lambda r: r["a"])
    i = along.index(origin)
    curv = (along[i + 1]["loss"] - 2 * origin["loss"] + along[i - 1]["loss"]) / h ** 2 if 0 < i < len(along) - 1 \
        else math.nan
    inside = [r for r in interp if 0 <= r["alpha"] <= 1]
    l0, l1 = inside[0]["loss"], inside[-1]["loss"]
    barrier = max(r["loss"] - ((1 - r["alpha"]) * l0 + r["alpha"] * l1) for r in inside)
    losses = [r["loss"] for r in grid if math.isfinite(r["loss"])]
    return {"loss_at_checkpoint": origin["loss"], "acc_at_checkpoint": origin["acc"],
            "loss_max": max(losses) if losses else math.nan, "curvature_d1": curv,
            "nonconvexity": nonconvexity(grid), "interp_barrier": max(0.0, barrier),
            "interp_loss_init": l0}


# --- the study ``skipexp landscape`` runs --------------------------------------------------------------

def study(path: Path, s: Settings, progress: data_mod.Progress | None = None,
          on_member: Callable[[members_mod.Member, dict], None] | None = None) -> members_mod.Result:
    """Measure every run of a run, comparison or sweep folder with the same directions' seed and sample,
    write each run's files, the folder's tables and the figures."""
    f = members_mod.folder(path)
    cache: dict = {}
    numbers_per_run = []
    for m in f.members:
        run = members_mod.load(m.run_dir, cache, progress)
        x, y = run.sample(s.samples)
        members_mod.set_threads(run.cfg, CHUNK * len(y))
        grid, interp = measure(run, s, x, y)
        nums = numbers(grid, interp, s)
        files.write_csv(m.run_dir / files.LANDSCAPE_CSV, ["a", "b", "loss", "acc"], grid)
        files.write_csv(m.run_dir / files.INTERPOLATION_CSV, ["alpha", "loss", "acc"], interp)
        files.write_json(m.run_dir / files.LANDSCAPE_JSON, {
            "settings": {**vars(s), "samples": len(y), "normalisation": "filter", "ignored": "biases and norms"},
            "numbers": nums})
        numbers_per_run.append(nums)
        if on_member is not None:
            on_member(m, nums)
    rows = members_mod.member_rows(f, numbers_per_run)
    tables, plots = figures.write_tables_and_plots(f, figures.MEASURES["landscape"], rows)
    return members_mod.Result(f, rows, tables, plots)
