"""Singular values of the input-output Jacobian, per depth (dynamical isometry; Pennington et al. 2017).

For an example x, ``J_i = d h_i / d h_0`` maps a small change of the first boundary h_0 (the input layer's
output) to the change it makes at boundary h_i, through i blocks. Its singular values say how the blocks
stretch each direction: all near 1 is *dynamical isometry*, in which signals and gradients pass through
unchanged in every direction. Per boundary the numbers are, over the examples and every singular value s:

- ``mean_s2``: the mean of s^2, i.e. tr(J J^T) / (number of singular values): the mean-field gain that
  ``validate --theory`` predicts (the product of the blocks' chi);
- ``spread``: var(s^2) / mean(s^2)^2, the spread of the spectrum of J J^T with its scale taken out (0: every
  direction stretched alike; Pennington et al.'s variance when mean_s2 = 1);
- ``s_max``, ``s_min``: the largest and smallest singular value, averaged over the examples.

The Jacobians are built by forward-mode differentiation, one tangent per coordinate of h_0, in
float64 (a plain net's singular values reach 1e-13 at depth 20), in eval mode.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.autograd.forward_ad as fwAD

from skipexp.core import data as data_mod
from skipexp.core.errors import SkipexpError
from skipexp.core.models import SkipNet
from skipexp.rundir import files
from skipexp.science import figures
from skipexp.science import members as members_mod

COLUMNS = ["state", "boundary", "mean_s2", "spread", "s_max", "s_min", "examples"]


def boundaries_from(model: SkipNet, h0: torch.Tensor) -> list[torch.Tensor]:
    """h_1 .. h_depth from h_0, as ``SkipNet.forward`` computes them."""
    return model.boundaries(h0)[1:]


# A conv net's h_0 has C*H*W coordinates, each a forward pass of every example: beyond this many, refused.
MAX_COORDINATES = 4096


def h0_size(model: SkipNet) -> int:
    """Coordinates of h_0: the MLP's width, a conv net's channels x pixels."""
    image = getattr(model.input, "image", None)
    return model.boundary_widths[0] * (image[1] * image[2] if image else 1)


def check(model: SkipNet) -> None:
    if h0_size(model) > MAX_COORDINATES:
        raise SkipexpError(f"h_0 has {h0_size(model)} coordinates (a conv net's channels x pixels), more than the "
                           f"{MAX_COORDINATES} whose full Jacobian is measured here; use smaller images "
                           f"(data.image_size) or fewer channels (model.width)", key="model")


def jacobians(model: SkipNet, x: torch.Tensor) -> list[torch.Tensor]:
    """``d h_i / d h_0`` for i = 1..depth at every example: a list of (examples, width_i, width_0), float64 (a conv
    net's boundaries flattened: width = C*H*W)."""
    check(model)
    m = copy.deepcopy(model).double().eval().requires_grad_(False)
    with torch.no_grad():
        h0 = m.input(x.double())                                                 # (S, w0) or (S, C, H, W)
    n, shape = h0.shape[0], h0.shape[1:]
    w0 = shape.numel()
    # every example w0 times, each copy with one coordinate of h_0 as its tangent: one forward-mode pass
    # gives every column of every example's Jacobian (eval mode: examples do not interact)
    rows = h0.repeat_interleave(w0, dim=0)                                       # (S * w0, *shape)
    tangents = torch.eye(w0, dtype=torch.float64).repeat(n, 1).view(n * w0, *shape)
    with warnings.catch_warnings(), fwAD.dual_level():
        # torch scripts its forward-mode decompositions on first use, through a deprecated torch.jit.script
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=DeprecationWarning)
        # every parameter a dual number with tangent 0: an op on a dual and a plain tensor takes a Python
        # decomposition whose first use imports sympy (~3 s); between duals the rules are native
        for module in m.modules():
            for name, p in list(module._parameters.items()):
                if p is not None:
                    del module._parameters[name]
                    setattr(module, name, fwAD.make_dual(p.detach(), torch.zeros_like(p)))
        outs = boundaries_from(m, fwAD.make_dual(rows, tangents))
        cols = [fwAD.unpack_dual(o).tangent for o in outs]
    return [c.reshape(n, w0, -1).transpose(1, 2) for c in cols]                  # each (S, w_i, w0)


def spectrum_rows(js: list[torch.Tensor], state: str) -> tuple[list[dict], torch.Tensor]:
    """Rows of jacobian.csv for one model, and every singular value of its last boundary (examples, k)."""
    rows, last = [], None
    for i, j in enumerate(js, start=1):
        s = torch.linalg.svdvals(j)                                              # (S, k), descending
        s2 = s.square()
        mean = float(s2.mean())
        spread = float(s2.var(correction=0) / mean ** 2) if mean > 0 else float("nan")
        rows.append({"state": state, "boundary": i, "mean_s2": mean, "spread": spread,
                     "s_max": float(s[:, 0].mean()), "s_min": float(s[:, -1].mean()), "examples": len(s)})
        last = s
    return rows, last


def measure(run: members_mod.Loaded, samples: int) -> tuple[list[dict], list[dict]]:
    """Rows of jacobian.csv (init and trained, per boundary) and of jacobian-spectrum.csv (the last boundary's
    singular values, each example's)."""
    x, _ = run.sample(samples)
    rows, spectrum = [], []
    for state, model in (("init", run.initial()), ("trained", run.trained)):
        got, last = spectrum_rows(jacobians(model, x), state)
        rows += got
        spectrum += [{"state": state, "example": e, "index": k, "s": float(v)}
                     for e, sv in enumerate(last) for k, v in enumerate(sv)]
    return rows, spectrum


def numbers(rows: list[dict]) -> dict:
    """The last boundary's numbers, at init and trained."""
    depth = max(r["boundary"] for r in rows)
    last = {r["state"]: r for r in rows if r["boundary"] == depth}
    return {f"{k}_{state}": last[state][k] for state in ("init", "trained") for k in ("mean_s2", "spread")}


def study(path: Path, samples: int = 32, progress: data_mod.Progress | None = None,
          on_member: Callable[[members_mod.Member, dict], None] | None = None) -> members_mod.Result:
    """Measure every run of a run, comparison or sweep folder; each gets jacobian.csv, jacobian-spectrum.csv and
    jacobian.json; the folder its tables and the figures."""
    f = members_mod.folder(path)
    cache: dict = {}
    per_run = []
    for m in f.members:
        run = members_mod.load(m.run_dir, cache, progress)
        try:
            check(run.trained)
        except SkipexpError as e:
            raise e.with_file(str(m.run_dir)) from None
        members_mod.set_threads(run.cfg, samples * h0_size(run.trained))
        rows, spectrum = measure(run, samples)
        files.write_csv(m.run_dir / files.JACOBIAN_CSV, COLUMNS, rows)
        files.write_csv(m.run_dir / files.JACOBIAN_SPECTRUM_CSV, ["state", "example", "index", "s"], spectrum)
        nums = numbers(rows)
        files.write_json(m.run_dir / files.JACOBIAN_JSON, {
            "settings": {"samples": rows[0]["examples"], "of": "d h_i / d h_0, float64, eval mode"},
            "numbers": nums})
        per_run.append(nums)
        if on_member is not None:
            on_member(m, nums)
    rows = members_mod.member_rows(f, per_run)
    tables, plots = figures.write_tables_and_plots(f, figures.MEASURES["jacobian"], rows)
    return members_mod.Result(f, rows, tables, plots)
