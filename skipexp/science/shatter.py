"""Gradient shattering probe (Balduzzi et al. 2017, "The shattered gradients problem").

Balduzzi et al. feed a network a 1-D input, take the gradient of its scalar output at 256 evenly
spaced inputs, and look at how correlated neighbouring gradients are: shallow nets give a smooth,
strongly correlated gradient ("brown noise"); deep plain ReLU nets a shattered one ("white noise"),
their correlation decaying like 2^-L with depth L; skips slow the decay down a great deal.

skipexp keeps the network's real input and makes the input 1-D by walking a line through it:

- pick two test inputs a and b; ``x_i = a + t_i (b - a)`` for 256 evenly spaced t_i in [0, 1];
- the scalar output is the first logit, ``s(x) = f(x)[0]``; the 256 points go through the network as
  one batch in training mode, as in Balduzzi et al., whose networks use batch normalisation; the gradient
  along the line is ``g_i = d/dt_i sum_j s(x_j) = grad_{x_i} (sum_j s(x_j)) . (b - a)``. Without batch
  norm the rows are independent and this is simply ``d s(x(t_i)) / dt``, the gradient of a network whose
  one input is t; with ``norm: batchnorm`` it includes what point i does to the batch statistics;
- the **correlation** is the lag-1 autocorrelation of that sequence: the Pearson correlation of
  ``(g_0 .. g_254)`` with ``(g_1 .. g_255)``. 1 means a smooth gradient, 0 white noise.

Each (kind, depth, seed) averages several (a, b) pairs; the network is built with the config's init
and evaluated in float64, since identity skips with variance-preserving inits grow activations
geometrically with depth.

What to expect: with ``norm: batchnorm`` (Balduzzi's setting) plain ReLU nets reach a correlation near 0
within ~16 blocks while identity skips keep it near 0.5 at 64 blocks. Without a norm, on lines between
two data points, plain nets decay far more slowly (MNIST-1D, kaiming, width 128: ~0.9 at 16 blocks,
~0.6 at 64), so the 2^-L of Balduzzi et al. is a reference here, not a fit.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from skipexp.core import config as config_mod
from skipexp.core import data as data_mod
from skipexp.core import nets, stats
from skipexp.core.models import SkipNet
from skipexp.rundir import files, runio
from skipexp.training.threads import choose_threads

COLUMNS = ["state", "kind", "depth", "seed", "pair", "correlation"]
LAG_COLUMNS = ["state", "kind", "depth", "seed", "pair", "lag", "correlation"]
POINTS = 256


def line_gradients(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, points: int = POINTS,
                   output: int = 0) -> torch.Tensor:
    """(points,) derivative of logit ``output`` along the line from a to b, at evenly spaced points."""
    t = torch.linspace(0, 1, points, dtype=a.dtype).unsqueeze(1)            # (points, 1)
    x = (a + t * (b - a)).requires_grad_(True)                               # (points, input_dim)
    (grad,) = torch.autograd.grad(model(x)[:, output].sum(), x)               # rows are independent inputs
    return grad @ (b - a)


def neighbour_correlation(g: torch.Tensor, lag: int = 1) -> float:
    """Lag-``lag`` autocorrelation: the Pearson correlation of g[:-lag] with g[lag:] (nan for a constant one)."""
    u, v = g[:-lag] - g[:-lag].mean(), g[lag:] - g[lag:].mean()
    denom = (u.square().sum() * v.square().sum()).sqrt()
    return float((u * v).sum() / denom) if denom > 0 else math.nan


LAGS = (1, 2, 4, 8, 16, 32, 64)   # the lags of shatter-lags.csv: how fast the correlation falls along the line


def pairs(x_test: torch.Tensor, n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n seeded pairs of distinct test inputs, the ends of the lines."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x_test), generator=g)[:2 * n].view(n, 2)
    return [(x_test[i].double(), x_test[j].double()) for i, j in idx.tolist()]


def gradients(model: SkipNet, ends: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    model = model.double().train()  # batch norm normalises over the line's points, as in the paper
    return [line_gradients(model, a, b) for a, b in ends]


def correlations(model: SkipNet, ends: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    return [neighbour_correlation(g) for g in gradients(model, ends)]


def _rows(gs: list[torch.Tensor], key: dict, lags: list[dict] | None) -> list[dict]:
    """shatter.csv's rows of one network's lines (lag 1), and its lines' rows of shatter-lags.csv into ``lags``."""
    out = []
    for p, g in enumerate(gs):
        out.append({**key, "pair": p, "correlation": neighbour_correlation(g)})
        if lags is not None:
            lags += [{**key, "pair": p, "lag": k, "correlation": neighbour_correlation(g, k)} for k in LAGS
                     if k < len(g) - 2]
    return out


def probe(cfg: config_mod.RunConfig, depths: list[int], kinds: list[str], seeds: int, n_pairs: int,
          splits: data_mod.Splits, on_row: Callable[[dict], None] | None = None,
          lags: list[dict] | None = None) -> list[dict]:
    """Rows of shatter.csv at initialisation: every kind x depth x seed x pair (and, into ``lags``, the
    rows of shatter-lags.csv: each line's autocorrelation at every lag of :data:`LAGS`)."""
    rows = []
    for kind in kinds:
        for depth in depths:
            model_cfg = dataclasses.replace(cfg.model, depth=depth, width=_width(cfg.model),
                                            skip=dataclasses.replace(cfg.model.skip, kind=kind))
            for seed in range(seeds):
                torch.manual_seed(seed)
                model = nets.build(cfg.replace(model=model_cfg), splits.input_dim, splits.num_classes)
                key = {"state": "init", "kind": kind, "depth": depth, "seed": seed}
                for row in _rows(gradients(model, pairs(splits.x_test, n_pairs, seed)), key, lags):
                    rows.append(row)
                    if on_row is not None:
                        on_row(row)
    return rows


def probe_trained(model: SkipNet, cfg: config_mod.RunConfig, splits: data_mod.Splits, n_pairs: int,
                  lags: list[dict] | None = None) -> list[dict]:
    """Rows for a trained checkpoint (state 'trained'), on the same kind of lines."""
    key = {"state": "trained", "kind": cfg.model.skip.kind, "depth": cfg.model.depth, "seed": cfg.seeds[0]}
    return _rows(gradients(model, pairs(splits.x_test, n_pairs, 0)), key, lags)


def _width(model_cfg: config_mod.ModelConfig) -> int | list[int]:
    # a list of widths is tied to the config's depth; other depths use its first entry throughout
    return model_cfg.width[0] if isinstance(model_cfg.width, list) else model_cfg.width


def summarise(rows: list[dict]) -> dict[tuple[str, str], list[tuple[int, float, float, int]]]:
    """(state, kind) -> [(depth, mean, half-width of the 95 % CI of the mean, n)] over seeds and pairs (every
    line one value, Student t), nan rows left out; the half-width is nan with one value."""
    groups: dict[tuple[str, str], dict[int, list[float]]] = {}
    for r in rows:
        if math.isfinite(r["correlation"]):
            groups.setdefault((r["state"], r["kind"]), {}).setdefault(int(r["depth"]), []).append(r["correlation"])
    out = {}
    for key, by_depth in groups.items():
        line = []
        for d in sorted(by_depth):
            got = stats.summarize(by_depth[d])
            half = got["ci_high"] - got["mean"] if got["ci_high"] is not None else math.nan
            line.append((d, got["mean"], half, got["n"]))
        out[key] = line
    return out


# --- the study ``skipexp shatter`` runs: a folder with its config, shatter.csv and the plot ---------

@dataclass
class ShatterStudy:
    folder: Path
    rows: list[dict]     # shatter.csv
    plot: Path
    summary: dict[tuple[str, str], list[tuple[int, float, float, int]]]  # see summarise

    def columns(self) -> list[tuple[str, str]]:
        """(state, kind) of each line: those at init first, then the trained checkpoint's."""
        return sorted(self.summary, key=lambda k: k[0] != "init")

    def grid(self) -> list[tuple[int, list[tuple[float, float] | None]]]:
        """One row per depth: (depth, (mean, 95 % CI half-width) per column, None where not measured)."""
        depths = sorted({d for line in self.summary.values() for d, *_ in line})
        out = []
        for d in depths:
            cells = []
            for key in self.columns():
                hit = [x for x in self.summary[key] if x[0] == d]
                cells.append((hit[0][1], hit[0][2]) if hit else None)
            out.append((d, cells))
        return out


def study(cfg: config_mod.RunConfig, depths: list[int], kinds: list[str], seeds: int, n_pairs: int, out: Path,
          checkpoint: Path | None = None, progress: data_mod.Progress | None = None) -> ShatterStudy:
    """Probe every kind x depth at init (and a trained run's model, if given) into ``out/<time>-shatter-<name>/``:
    its config.yaml, shatter.csv and plots/shatter.png."""
    from skipexp.science.lesion import load_run, write_csv

    trained = load_run(checkpoint) if checkpoint is not None else None
    torch.set_num_threads(choose_threads(cfg))
    splits = data_mod.load(cfg.data, progress)
    folder = runio.create_run_dir(out, f"shatter-{cfg.name}")
    files.write_config_text(folder, config_mod.dump(cfg))
    lags: list[dict] = []
    rows = probe(cfg, depths, kinds, seeds, n_pairs, splits, lags=lags)
    if trained is not None:
        rows += probe_trained(trained.model, trained.cfg, trained.splits, n_pairs, lags)
    write_csv(rows, folder / files.SHATTER_CSV, COLUMNS)
    write_csv(lags, folder / files.SHATTER_LAGS_CSV, LAG_COLUMNS)
    from skipexp.views.plots_science import plot_shatter
    from skipexp.views.style import NORM_WORDS, formats_of

    m = cfg.model
    title = (f"shattered gradients at init: {m.activation}, {NORM_WORDS.get(m.norm, m.norm)}, {m.init} init, width "
             f"{m.width}; {seeds} networks × {n_pairs} lines ({cfg.data.dataset})")
    path = plot_shatter(rows, lags, folder / files.PLOTS / files.SHATTER_PNG, title, formats_of(folder))
    return ShatterStudy(folder, rows, path, summarise(rows))
