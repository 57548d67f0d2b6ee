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
from skipexp.core.models import SkipNet
from skipexp.rundir import files, runio
from skipexp.training.threads import choose_threads

COLUMNS = ["state", "kind", "depth", "seed", "pair", "correlation"]
POINTS = 256


def line_gradients(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, points: int = POINTS,
                   output: int = 0) -> torch.Tensor:
    """(points,) derivative of logit ``output`` along the line from a to b, at evenly spaced points."""
    t = torch.linspace(0, 1, points, dtype=a.dtype).unsqueeze(1)            # (points, 1)
    x = (a + t * (b - a)).requires_grad_(True)                               # (points, input_dim)
    (grad,) = torch.autograd.grad(model(x)[:, output].sum(), x)               # rows are independent inputs
    return grad @ (b - a)


def neighbour_correlation(g: torch.Tensor) -> float:
    """Lag-1 autocorrelation: Pearson correlation of g[:-1] with g[1:] (nan for a constant sequence)."""
    u, v = g[:-1] - g[:-1].mean(), g[1:] - g[1:].mean()
    denom = (u.square().sum() * v.square().sum()).sqrt()
    return float((u * v).sum() / denom) if denom > 0 else math.nan


def pairs(x_test: torch.Tensor, n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n seeded pairs of distinct test inputs, the ends of the lines."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x_test), generator=g)[:2 * n].view(n, 2)
    return [(x_test[i].double(), x_test[j].double()) for i, j in idx.tolist()]


def correlations(model: SkipNet, ends: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    model = model.double().train()  # batch norm normalises over the line's points, as in the paper
    return [neighbour_correlation(line_gradients(model, a, b)) for a, b in ends]


def probe(cfg: config_mod.RunConfig, depths: list[int], kinds: list[str], seeds: int, n_pairs: int,
          splits: data_mod.Splits, on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Rows of shatter.csv at initialisation: every kind x depth x seed x pair."""
    rows = []
    for kind in kinds:
        for depth in depths:
            model_cfg = dataclasses.replace(cfg.model, depth=depth, width=_width(cfg.model),
                                            skip=dataclasses.replace(cfg.model.skip, kind=kind))
            for seed in range(seeds):
                torch.manual_seed(seed)
                model = SkipNet(model_cfg, splits.input_dim, splits.num_classes)
                for p, c in enumerate(correlations(model, pairs(splits.x_test, n_pairs, seed))):
                    row = {"state": "init", "kind": kind, "depth": depth, "seed": seed, "pair": p, "correlation": c}
                    rows.append(row)
                    if on_row is not None:
                        on_row(row)
    return rows


def probe_trained(model: SkipNet, cfg: config_mod.RunConfig, splits: data_mod.Splits, n_pairs: int) -> list[dict]:
    """Rows for a trained checkpoint (state 'trained'), on the same kind of lines."""
    return [{"state": "trained", "kind": cfg.model.skip.kind, "depth": cfg.model.depth, "seed": cfg.seeds[0],
             "pair": p, "correlation": c}
            for p, c in enumerate(correlations(model, pairs(splits.x_test, n_pairs, 0)))]


def _width(model_cfg: config_mod.ModelConfig) -> int | list[int]:
    # a list of widths is tied to the config's depth; other depths use its first entry throughout
    return model_cfg.width[0] if isinstance(model_cfg.width, list) else model_cfg.width


def summarise(rows: list[dict]) -> dict[tuple[str, str], list[tuple[int, float, float, int]]]:
    """(state, kind) -> [(depth, mean, standard error, n)] over seeds and pairs, nan rows left out."""
    groups: dict[tuple[str, str], dict[int, list[float]]] = {}
    for r in rows:
        if math.isfinite(r["correlation"]):
            groups.setdefault((r["state"], r["kind"]), {}).setdefault(int(r["depth"]), []).append(r["correlation"])
    out = {}
    for key, by_depth in groups.items():
        line = []
        for d in sorted(by_depth):
            v = by_depth[d]
            mean = sum(v) / len(v)
            sd = math.sqrt(sum((x - mean) ** 2 for x in v) / max(1, len(v) - 1))
            line.append((d, mean, sd / math.sqrt(len(v)), len(v)))
        out[key] = line
    return out


def plot(rows: list[dict], out: Path, title: str) -> Path:
    """Correlation against depth (log y), one line per kind, with 2^-L for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-3  # a log axis cannot show correlations at or below zero; they sit on the floor, hollow
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    summary = summarise(rows)
    depths = sorted({int(r["depth"]) for r in rows})
    for i, ((state, kind), line) in enumerate(sorted(summary.items(), key=lambda kv: kv[0][0] != "init")):
        d = [x[0] for x in line]
        m = [max(x[1], floor) for x in line]
        err = [x[2] for x in line]
        if state == "init":
            ax.errorbar(d, m, yerr=err, fmt="o-", capsize=3, label=f"{kind} (init)")
            low = [x[0] for x in line if x[1] <= floor]
            if low:
                ax.plot(low, [floor] * len(low), "o", mfc="white", color=f"C{i}", ms=9,
                        label=f"{kind}: mean <= {floor:g}, drawn at {floor:g}")
        else:
            ax.plot(d, m, "*", ms=14, label=f"{kind} (trained)")
    ref = [d for d in range(1, max(depths) + 1)]
    ax.plot(ref, [2.0 ** -d for d in ref], "--", color="grey", label="2^-L (Balduzzi et al.)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_ylim(floor / 1.5, 1.5)
    ax.set_xlabel("depth L (blocks, one ReLU each)")
    ax.set_ylabel("lag-1 correlation of gradients along a line")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
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
        """One row per depth: (depth, (mean, standard error) per column, None where not measured)."""
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
    rows = probe(cfg, depths, kinds, seeds, n_pairs, splits)
    if trained is not None:
        rows += probe_trained(trained.model, trained.cfg, trained.splits, n_pairs)
    write_csv(rows, folder / files.SHATTER_CSV, COLUMNS)
    path = plot(rows, folder / files.PLOTS / files.SHATTER_PNG, f"{cfg.name}: {cfg.model.activation}, norm "
                f"{cfg.model.norm}, init {cfg.model.init}, width {cfg.model.width}")
    return ShatterStudy(folder, rows, path, summarise(rows))
