"""Effective paths (Veit et al. 2016, Fig. 6): how much of the gradient flows through paths of each length.

A net of n residual units ``out = s(x) + F(x)`` unrolls into 2^n paths: each unit is passed either through
its branch F or through its shortcut s, so C(n, k) paths pass through k branches. Given the forward pass,
the backward pass is linear in the gradient, and the gradient at h_0 is exactly the sum over all 2^n
paths of the gradient through each one alone. The paper's measurement: keep the branch of k sampled units
and the shortcut of all others in the backward pass (the forward pass stays whole), and take the size of
the gradient that arrives at the input. Here, for every k, ``sets`` random sets of k units (all of them
where there are fewer), each on the same ``samples`` training examples:

- ``share``: C(n, k) / 2^n, the distribution of path lengths (Fig. 6a);
- ``grad_per_path``: the mean over the sampled paths of the mean over examples of ``||d loss_x / d h_0||``
  through that path alone (Fig. 6b);
- ``total``: C(n, k) * grad_per_path, the gradient that paths of length k carry together (Fig. 6c).

A path's length counts the units passed through their branch; units without a skip have no shortcut and
are always passed through (a plain net has one path, through everything). Only units whose output is a
sum of shortcut and branch have paths: identity, projection and ReZero (whose branch is alpha * F); gated
and dense units mix them and are refused.
"""
from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from skipexp.core import data as data_mod
from skipexp.core.conv import ConvReZeroSkip
from skipexp.core.errors import SkipexpError
from skipexp.core.models import ReZeroSkip, SkipNet
from skipexp.rundir import files
from skipexp.science import figures
from skipexp.science import members as members_mod

ADDITIVE = ("none", "identity", "projection", "rezero")
COLUMNS = ["state", "length", "paths", "share", "grad_per_path", "grad_per_path_sd", "sampled", "total"]
CHUNK = 64   # paths pushed back together (rows: CHUNK * examples)


def check(model: SkipNet) -> None:
    if getattr(model.blocks[0], "finish", None) is not None and model.cfg.order == "post":
        raise SkipexpError("a post-order conv block applies its act after the sum, act(s(x) + F(x)), which does not "
                           "split into paths; paths need model.order: pre (He et al. 2016b's blocks)",
                           key="model.order")
    kind = model.cfg.skip.kind
    if kind not in ADDITIVE:
        raise SkipexpError(f"paths need units whose output is shortcut + branch (skip kinds identity, projection, "
                           f"rezero); kind {kind} mixes them", key="model.skip.kind")


def residual_units(model: SkipNet) -> list[int]:
    """Indices of the units with a skip: those a path may pass by."""
    return [u for u, unit in enumerate(model.units) if unit.skip is not None]


def _branch(model: SkipNet, u: int, x: torch.Tensor) -> torch.Tensor:
    unit = model.units[u]
    for i in unit.blocks:
        x = model.blocks[i](x)
    skip = model.skips[unit.skip] if unit.skip is not None else None
    return skip.alpha * x if isinstance(skip, (ReZeroSkip, ConvReZeroSkip)) else x


def _shortcut(model: SkipNet, u: int, x: torch.Tensor) -> torch.Tensor:
    return model.skips[model.units[u].skip].shortcut(x)


def _vjp(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g (P, B, w_out) pulled back through ``fn`` at x (B, w_in), for each of the P cotangents: fn runs on x
    repeated P times (every example is its own row in eval mode), and one backward pass does them all."""
    p, b = g.shape[:2]
    rows = x.detach().repeat(p, *[1] * (x.dim() - 1)).requires_grad_(True)    # (P * B, w_in) or (P * B, C, H, W)
    with torch.enable_grad():
        (out,) = torch.autograd.grad(fn(rows), rows, grad_outputs=g.reshape(p * b, *g.shape[2:]))
    return out.reshape(p, b, *x.shape[1:])


def path_gradients(model: SkipNet, x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The gradient of the summed loss with respect to h_0 through one path each: ``keep`` (P, n) says, for
    each of the P paths, which of the n residual units pass through their branch. Returns (P, examples, w0)."""
    check(model)
    model.eval()
    with torch.no_grad():
        _, hs = model(x, capture=True)
    h_last = hs[-1].detach().requires_grad_(True)
    with torch.enable_grad():
        loss = nn.functional.cross_entropy(model.head(h_last), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, h_last)                               # (B, w)
    units = residual_units(model)
    column = {u: j for j, u in enumerate(units)}
    out = []
    for start in range(0, len(keep), CHUNK):
        k = keep[start:start + CHUNK]
        grad = g.expand(len(k), *g.shape)                                       # (P, B, w)
        for u in reversed(range(len(model.units))):
            x_u = hs[model.units[u].blocks[0]]

            def branch(r: torch.Tensor, u: int = u) -> torch.Tensor:
                return _branch(model, u, r)

            if u not in column:
                grad = _vjp(branch, x_u, grad)
                continue
            through = k[:, column[u]]
            new = torch.empty(len(k), *x_u.shape, dtype=g.dtype)
            if through.any():
                new[through] = _vjp(branch, x_u, grad[through])
            if (~through).any():
                new[~through] = _vjp(lambda r, u=u: _shortcut(model, u, r), x_u, grad[~through])
            grad = new
        out.append(grad)
    return torch.cat(out)


def sample_sets(n: int, sets: int, seed: int) -> list[tuple[int, ...]]:
    """For every k in 0..n, ``sets`` random k-subsets of range(n), or all of them where there are fewer."""
    rng = random.Random(seed)
    out = []
    for k in range(n + 1):
        if math.comb(n, k) <= sets:
            out += list(itertools.combinations(range(n), k))
            continue
        chosen: set[tuple[int, ...]] = set()
        while len(chosen) < sets:
            chosen.add(tuple(sorted(rng.sample(range(n), k))))
        out += sorted(chosen)
    return out


def measure_model(model: SkipNet, x: torch.Tensor, y: torch.Tensor, sets: int, seed: int, state: str) -> list[dict]:
    """Rows of paths.csv for one model."""
    check(model)
    n = len(residual_units(model))
    fixed = len(model.units) - n
    chosen = sample_sets(n, sets, seed)
    keep = torch.zeros(len(chosen), n, dtype=torch.bool)
    for i, s in enumerate(chosen):
        keep[i, list(s)] = True
    grads = path_gradients(model, x, y, keep)                                   # (P, B, w0)
    size = grads.flatten(2).norm(dim=2).mean(dim=1).double()                    # (P,): mean over examples
    rows = []
    for k in range(n + 1):
        mine = size[keep.sum(1) == k]
        mean = float(mine.mean())
        sd = float(mine.std()) if len(mine) > 1 else 0.0
        rows.append({"state": state, "length": fixed + k, "paths": math.comb(n, k), "share": math.comb(n, k) / 2 ** n,
                     "grad_per_path": mean, "grad_per_path_sd": sd, "sampled": len(mine),
                     "total": math.comb(n, k) * mean})
    return rows


def effective(rows: list[dict]) -> tuple[float, float, float]:
    """(mean length weighted by the total gradient, and the lengths where its cumulative share passes 5 % and
    95 %): where the gradient comes from."""
    total = sum(r["total"] for r in rows)
    if not total > 0:
        return math.nan, math.nan, math.nan
    mean = sum(r["length"] * r["total"] for r in rows) / total
    acc, lo, hi = 0.0, None, None
    for r in rows:
        acc += r["total"] / total
        if lo is None and acc >= 0.05:
            lo = r["length"]
        if hi is None and acc >= 0.95:
            hi = r["length"]
    return mean, float(lo), float(hi)


def numbers(rows: list[dict]) -> dict:
    out = {}
    for state in ("trained", "init"):
        mean, lo, hi = effective([r for r in rows if r["state"] == state])
        out.update({f"effective_mean_{state}": mean, f"effective_lo_{state}": lo, f"effective_hi_{state}": hi})
    return out


@dataclass
class Settings:
    samples: int = 256   # training examples each path's gradient is averaged over
    sets: int = 32       # paths sampled per length
    seed: int = 0        # of the sampled paths


def study(path: Path, s: Settings, progress: data_mod.Progress | None = None,
          on_member: Callable[[members_mod.Member, dict], None] | None = None) -> members_mod.Result:
    """Measure every run of a run, comparison or sweep folder, trained and as initialised; write paths.csv and
    paths.json into each, the folder's tables and the figures."""
    f = members_mod.folder(path)
    cache: dict = {}
    per_run = []
    loaded = []
    for m in f.members:   # every run is checked before any is measured: a refused kind loses nothing
        run = members_mod.load(m.run_dir, cache, progress)
        try:
            check(run.trained)
        except SkipexpError as e:
            raise e.with_file(str(m.run_dir)) from None
        loaded.append(run)
    for m, run in zip(f.members, loaded):
        x, y = run.sample(s.samples)
        members_mod.set_threads(run.cfg, CHUNK * len(y))
        rows = (measure_model(run.trained, x, y, s.sets, s.seed, "trained")
                + measure_model(run.initial(), x, y, s.sets, s.seed, "init"))
        files.write_csv(m.run_dir / files.PATHS_CSV, COLUMNS, rows)
        nums = numbers(rows)
        files.write_json(m.run_dir / files.PATHS_JSON, {"settings": {**vars(s), "samples": len(y)}, "numbers": nums})
        per_run.append(nums)
        if on_member is not None:
            on_member(m, nums)
    rows = members_mod.member_rows(f, per_run)
    tables, plots = figures.write_tables_and_plots(f, figures.MEASURES["paths"], rows)
    return members_mod.Result(f, rows, tables, plots)
