"""Figures of sharpness, Jacobian spectra and effective paths, drawn from a run folder's CSVs on disk.

Each takes ``nets``: (label, the run folders of its seeds); several seeds are drawn as their mean with the
min-max band, as the comparison plots do.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import csv

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from skipexp.rundir import files, runio  # noqa: E402
from skipexp.views.layout import label_log_axis, new_figure, set_title, suptitle  # noqa: E402
from skipexp.views.plots import _save  # noqa: E402
from skipexp.views.plots_compare import COLORS, _draw  # noqa: E402


def _rows(run_dir: Path, name: str) -> list[dict]:
    """A CSV with a text column (state): rows with numbers as floats where they are numbers."""
    path = run_dir / name
    if not path.is_file():
        return []
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in r.items():
                try:
                    row[k] = float(v)
                except (TypeError, ValueError):
                    row[k] = v
            out.append(row)
    return out


def _legend_below(fig: Figure, handles: list, ncol: int = 3) -> None:
    fig.legend(handles=handles, loc="lower center", ncol=min(ncol, len(handles)), fontsize=8, frameon=False)


def _log_if_positive(ax: Any, values: list[float], axis: str = "y") -> None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if v and min(v) > 0 and max(v) / min(v) > 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        label_log_axis(ax.yaxis if axis == "y" else ax.xaxis)


def _with_seeds(label: str, dirs: list[Path]) -> str:
    return f"{label} (mean of {len(dirs)} seeds)" if len(dirs) > 1 else label


# --- sharpness -------------------------------------------------------------------------------------------

SHARPNESS_PANELS = (("top_eigenvalue", "top Hessian eigenvalue", "largest eigenvalue of the loss Hessian"),
                    ("trace", "Hessian trace", "tr(H), Hutchinson estimate"))


def sharpness_figure(nets: list[tuple[str, list[Path]]], title: str) -> Figure:
    """Top eigenvalue and trace against step: the measurements while training (lines, sharpness.csv) and
    those of ``skipexp sharpness`` at init and at the checkpoint (markers, hessian.csv)."""
    fig = new_figure(11, 4.6)
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.24, top=0.86, wspace=0.28)
    handles = []
    logged = False
    for i, (label, dirs) in enumerate(nets):
        c = COLORS[i % len(COLORS)]
        handles.append(Line2D([], [], color=c, lw=2, label=_with_seeds(label, dirs)))
        for ax, (key, _, _) in zip(axes, SHARPNESS_PANELS):
            during = [(np.array([r["step"] for r in rows]), np.array([r[key] for r in rows]))
                      for rows in (runio.read_csv(d / files.SHARPNESS_CSV) for d in dirs) if rows]
            if during:
                logged = True
                _draw(ax, during, "-", c, lw=1.6)
            at = [_rows(d, files.HESSIAN_CSV) for d in dirs]
            for state, marker in (("init", "o"), ("trained", "s")):
                pts = [(r["step"], r[key]) for rows in at for r in rows if r.get("state") == state]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, color=c, ms=7,
                            mfc="white" if state == "init" else c, mew=1.5, ls="none")
    for ax, (_, name, ylabel) in zip(axes, SHARPNESS_PANELS):
        values = [v for line in ax.get_lines() for v in line.get_ydata()]
        _log_if_positive(ax, values)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        set_title(ax, name, fontsize=10)
    handles += [Line2D([], [], marker="o", color="dimgrey", mfc="white", ls="none",
                       label="at init (skipexp sharpness)"),
                Line2D([], [], marker="s", color="dimgrey", ls="none", label="at the checkpoint (skipexp sharpness)")]
    if logged:
        handles.append(Line2D([], [], color="dimgrey", label="while training (log.sharpness_every)"))
    _legend_below(fig, handles)
    suptitle(fig, title)
    return fig


def plot_sharpness_log(run_dir: Path) -> Path:
    """plots/sharpness.png of one run from what it logged while training (and hessian.csv, where it has one)."""
    name = files.meta_or_empty(run_dir).get("name", run_dir.name)
    out = run_dir / files.PLOTS / files.SHARPNESS_PNG
    return plot(sharpness_figure([(name, [run_dir])], f"{name}: sharpness"), out)


def plot(figure: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(out) as tmp:
        _save(figure, tmp)
    return out


# --- Jacobian spectra ------------------------------------------------------------------------------------

def jacobian_figure(nets: list[tuple[str, list[Path]]], title: str) -> Figure:
    """Mean s^2 and spread of d h_i / d h_0 against the boundary i (init dashed, trained solid), and the
    distribution of the last boundary's singular values."""
    fig = new_figure(15, 4.7)
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.22, top=0.86, wspace=0.3)
    handles = []
    values: dict[int, list[float]] = {0: [], 1: []}
    depth = 0
    for i, (label, dirs) in enumerate(nets):
        c = COLORS[i % len(COLORS)]
        handles.append(Line2D([], [], color=c, lw=2, label=_with_seeds(label, dirs)))
        per_seed = [_rows(d, files.JACOBIAN_CSV) for d in dirs]
        for state, ls in (("init", "--"), ("trained", "-")):
            for ax_i, key in ((0, "mean_s2"), (1, "spread")):
                curves = [(np.array([r["boundary"] for r in rows if r["state"] == state]),
                           np.array([r[key] for r in rows if r["state"] == state])) for rows in per_seed if rows]
                drawn = _draw(axes[ax_i], curves, ls, c, positive=True, lw=1.6)
                if drawn is not None:
                    values[ax_i] += list(drawn[1])
                    depth = max(depth, int(drawn[0].max()))
            s = [r["s"] for d in dirs for r in _rows(d, files.JACOBIAN_SPECTRUM_CSV)
                 if r["state"] == state and r["s"] > 0]
            if s:
                logs = np.log10(s)
                axes[2].hist(logs, bins=40, histtype="step", density=True, color=c, ls=ls, lw=1.6)
    for ax_i, (name, ylabel) in enumerate((("mean squared singular value", "mean s² of dh_i/dh_0 (log scale)"),
                                           ("spread of the spectrum", "var(s²) / mean(s²)² (log scale)"))):
        ax = axes[ax_i]
        if ax_i == 0:
            ax.axhline(1, color="grey", ls=":", lw=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_yscale("log")
        label_log_axis(ax.yaxis)
        ax.set_xlabel("boundary h_i (blocks from h_0)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        set_title(ax, name + (" (dotted: isometry)" if ax_i == 0 else ""), fontsize=10)
    axes[2].axvline(0, color="grey", ls=":", lw=1)
    axes[2].set_xlabel(f"log10 singular value of dh_{depth}/dh_0 (0: s = 1)")
    axes[2].set_ylabel("density")
    axes[2].grid(alpha=0.3)
    set_title(axes[2], f"singular values at the last boundary, h_{depth}", fontsize=10)
    handles += [Line2D([], [], color="dimgrey", ls="--", label="at init"),
                Line2D([], [], color="dimgrey", ls="-", label="trained")]
    _legend_below(fig, handles, ncol=4)
    suptitle(fig, title)
    return fig


# --- effective paths -------------------------------------------------------------------------------------

PATH_PANELS = (("share", "(a) distribution of path lengths", "share of all paths, C(n, k) / 2^n", False),
               ("grad_per_path", "(b) gradient per path", "mean ||dloss/dh_0|| through one path (log scale)", True),
               ("total", "(c) total gradient per length", "C(n, k) × (b), as a share of its sum", False))


def paths_figure(nets: list[tuple[str, list[Path]]], title: str) -> Figure:
    """Veit et al.'s Fig. 6 for each net: against the path length, (a) how many paths have it, (b) the gradient
    magnitude through one such path, (c) their product; trained solid, as initialised dashed."""
    fig = new_figure(15, 4.7)
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.22, top=0.86, wspace=0.28)
    handles = []
    for i, (label, dirs) in enumerate(nets):
        c = COLORS[i % len(COLORS)]
        handles.append(Line2D([], [], color=c, lw=2, label=_with_seeds(label, dirs)))
        per_seed = [_rows(d, files.PATHS_CSV) for d in dirs]
        for state, ls in (("trained", "-"), ("init", "--")):
            for ax, (key, _, _, log) in zip(axes, PATH_PANELS):
                if key == "share" and state == "init":
                    continue   # the same counts
                curves = [(np.array([r["length"] for r in rows if r["state"] == state]),
                           np.array([r[key] for r in rows if r["state"] == state])) for rows in per_seed if rows]
                if key == "total":   # trained and initial gradients differ in scale; where they come from is the point
                    curves = [(x, y / y.sum()) for x, y in curves if y.sum() > 0]
                _draw(ax, [cv for cv in curves if len(cv[0])], ls, c, positive=log, lw=1.6, marker=".", ms=5)
    for ax, (_, name, ylabel, log) in zip(axes, PATH_PANELS):
        if log:
            _log_if_positive(ax, [v for line in ax.get_lines() for v in line.get_ydata()])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("path length (units passed through their branch)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        set_title(ax, name, fontsize=10)
    handles += [Line2D([], [], color="dimgrey", ls="-", label="trained"),
                Line2D([], [], color="dimgrey", ls="--", label="at init")]
    _legend_below(fig, handles, ncol=4)
    suptitle(fig, title)
    return fig
