"""Figures of loss landscapes, drawn from landscape.csv and interpolation.csv on disk.

One figure for one net or several side by side: per net, the loss over the plane of the two directions
(filled contours of log10 loss on one shared colour scale, so equal colours mean equal loss across nets)
and the same as a surface; below them the 1D slice through the checkpoint along the first direction and
the line from the initial to the trained weights, every net on one axes.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from skipexp.rundir import files, runio  # noqa: E402
from skipexp.views.layout import log_label, log_ticks, new_figure, set_title, suptitle  # noqa: E402
from skipexp.views.plots import _save, set_loss_axis  # noqa: E402
from skipexp.views.plots_compare import COLORS, _draw  # noqa: E402

CMAP = colormaps["viridis"]
MOST_NETS = 4   # nets drawn as contours and surfaces; the line panels take any number


def _grid(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(a, b, loss[a, b]) of a run's landscape.csv; None where it has none."""
    rows = runio.read_csv(run_dir / files.LANDSCAPE_CSV)
    if not rows:
        return None
    a, b = sorted({r["a"] for r in rows}), sorted({r["b"] for r in rows})
    ia, ib = {v: i for i, v in enumerate(a)}, {v: i for i, v in enumerate(b)}
    f = np.full((len(a), len(b)), np.nan)
    for r in rows:
        f[ia[r["a"]], ib[r["b"]]] = r["loss"]
    return np.array(a), np.array(b), f


def _slice(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The loss along the first direction through the checkpoint (b = 0)."""
    g = _grid(run_dir)
    if g is None:
        return None
    a, b, f = g
    return a, f[:, int(np.argmin(np.abs(b)))]


def _seed(dirs: list[Path]) -> int | None:
    """The seed of the first of several runs of a net (the one its contour shows), None for a lone run."""
    if len(dirs) < 2:
        return None
    try:
        s = files.read_config_dict(dirs[0]).get("seed", 0)
        return int(s[0] if isinstance(s, list) else s)
    except (OSError, ValueError, TypeError):
        return None


def _line(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    rows = runio.read_csv(run_dir / files.INTERPOLATION_CSV)
    return (np.array([r["alpha"] for r in rows]), np.array([r["loss"] for r in rows])) if rows else None


def landscape_figure(nets: list[tuple[str, list[Path]]], title: str) -> Figure:
    """``nets``: (label, the run folders of its seeds). Contours and surfaces show each net's first seed."""
    shown = [(label, dirs) for label, dirs in nets[:MOST_NETS] if _grid(dirs[0]) is not None]
    planes = [(label, _grid(dirs[0]), _seed(dirs)) for label, dirs in shown]
    planes = [p for p in planes if len(p[1][1]) > 1]
    two_d = [(label, g) for label, g, _ in planes]
    cols = max(2, len(two_d))
    rows = 3 if two_d else 1
    legend_rows = math.ceil(len(nets) / 2)
    bottom = 0.75 + 0.17 * legend_rows   # the x label, and the legends below the line panels
    height = 3.3 * rows + bottom
    fig = new_figure(4.4 * cols, height)
    gs = fig.add_gridspec(rows, 2 * cols, left=0.08, right=0.95, bottom=bottom / height, top=1 - 0.55 / height,
                          hspace=0.38 * 3.3 * rows / (height - bottom), wspace=0.9)
    if two_d:
        _planes(fig, gs, two_d, [seed for _, _, seed in planes])
    ax_s = fig.add_subplot(gs[rows - 1, :cols])
    ax_i = fig.add_subplot(gs[rows - 1, cols:])
    slices, lines = [], []
    for i, (label, dirs) in enumerate(nets):
        c = COLORS[i % len(COLORS)]
        n = f" (mean of {len(dirs)} seeds)" if len(dirs) > 1 else ""
        s = [x for x in (_slice(d) for d in dirs) if x is not None]
        if _draw(ax_s, s, "-", c, positive=True, lw=1.8, label=label + n):
            slices += [v for _, y in s for v in y]
        li = [x for x in (_line(d) for d in dirs) if x is not None]
        if _draw(ax_i, li, "-", c, positive=True, lw=1.8, label=label + n):
            lines += [v for _, y in li for v in y]
    set_loss_axis(ax_s, slices, "training loss")
    ax_s.set_xlabel("step along direction 1 (0: the trained weights)")
    set_title(ax_s, "1D slice through the trained weights", fontsize=10)
    set_loss_axis(ax_i, lines, "training loss")
    for x, what in ((0, "initial"), (1, "trained")):
        ax_i.axvline(x, color="grey", ls=":", lw=1)
        ax_i.text(x, 1.0, f" {what}", transform=ax_i.get_xaxis_transform(), fontsize=8, va="top", color="grey")
    ax_i.set_xlabel("alpha, weights = (1 - alpha) initial + alpha trained")
    set_title(ax_i, "from the initial to the trained weights", fontsize=10)
    for ax in (ax_s, ax_i):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.5 / 3.3 - 0.02), ncol=2, frameon=False)
    suptitle(fig, title)
    return fig


def _levels(grids: list[np.ndarray]) -> np.ndarray:
    """21 levels of log10 loss shared by every grid: from the lowest loss to 10x the highest loss at a
    checkpoint (at least 5 above it), or the highest loss where that is lower: beyond, a diverging corner
    would squash the basins into one colour."""
    finite = np.concatenate([f[np.isfinite(f)].ravel() for f in grids])
    lo = float(np.log10(max(finite.min(), 1e-8)))
    at_origin = max(float(f[f.shape[0] // 2, f.shape[1] // 2]) for f in grids)
    top = min(max(10 * at_origin, at_origin + 5), float(finite.max()))
    return np.linspace(lo, max(math.log10(top), lo + 1e-3), 21)


def _contour(ax: Any, a: np.ndarray, b: np.ndarray, f: np.ndarray, levels: np.ndarray, title: str) -> Any:
    logf = np.log10(np.clip(f, 10 ** levels[0], 10 ** levels[-1])).T                 # (b, a): rows are y
    cs = ax.contourf(a, b, logf, levels=levels, cmap=CMAP)
    ax.contour(a, b, logf, levels=levels[::2], colors="k", linewidths=0.4, alpha=0.5)
    ax.plot([0], [0], "*", color="white", ms=11, mec="k", mew=0.6)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_aspect("equal")
    set_title(ax, title, fontsize=10)
    return cs


def _colorbar(fig: Figure, cs: Any, axes: list, levels: np.ndarray) -> None:
    bar = fig.colorbar(cs, ax=axes, fraction=0.03, pad=0.02)
    values = log_ticks(10 ** levels[0], 10 ** levels[-1])
    bar.set_ticks([math.log10(v) for v in values])
    bar.set_ticklabels([log_label(v) for v in values])
    bar.set_label("training loss (log colour scale)", fontsize=8)


def _planes(fig: Figure, gs: Any, planes: list, seeds: list) -> None:
    """Row 1: filled contours of log10 loss, one colour scale for all; row 2: the surfaces, one z range."""
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the 3d projection)

    levels = _levels([f for _, (_, _, f) in planes])
    top = 10 ** levels[-1]
    contour_axes = []
    for i, (label, (a, b, f)) in enumerate(planes):
        ax = fig.add_subplot(gs[0, 2 * i:2 * i + 2])
        contour_axes.append(ax)
        cs = _contour(ax, a, b, f, levels, label + (f" (seed {seeds[i]})" if seeds[i] is not None else ""))
        surf = fig.add_subplot(gs[1, 2 * i:2 * i + 2], projection="3d")
        A, B = np.meshgrid(a, b, indexing="ij")
        surf.plot_surface(A, B, np.clip(f, None, top), cmap=CMAP, norm=LogNorm(10 ** levels[0], top),
                          linewidth=0, antialiased=False, rcount=len(a), ccount=len(b))
        surf.set_zlim(0, top)
        surf.set_xlabel("direction 1", fontsize=8, labelpad=-2)
        surf.set_ylabel("direction 2", fontsize=8, labelpad=-2)
        clipped = f"; clipped at {top:.3g}" if np.nanmax(f) > top else ""
        surf.set_zlabel("training loss" + clipped, fontsize=8, labelpad=-2)
        surf.tick_params(labelsize=7, pad=0)
        surf.view_init(elev=35, azim=-60)
    _colorbar(fig, cs, contour_axes, levels)


def contour_grid_figure(cells: dict[tuple[str, str], Path], rows: list[str], cols: list[str], title: str) -> Figure:
    """Li et al.'s layout: a contour plot per net, one row per value of one key (the kind of shortcut),
    one column per value of another (depth), all on one colour scale. ``cells`` maps (row, column) to the
    run folder drawn there; a missing cell stays empty."""
    grids = {k: _grid(d) for k, d in cells.items()}
    grids = {k: g for k, g in grids.items() if g is not None and len(g[1]) > 1}
    levels = _levels([g[2] for g in grids.values()])
    fig = new_figure(3.3 * len(cols) + 1.0, 3.2 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    fig.subplots_adjust(left=0.9 / (3.3 * len(cols) + 1.0), right=0.88, bottom=0.5 / (3.2 * len(rows) + 0.6),
                        top=1 - 0.65 / (3.2 * len(rows) + 0.6), wspace=0.35, hspace=0.4)
    cs = None
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i][j]
            if (r, c) not in grids:
                ax.set_axis_off()
                continue
            a, b, f = grids[(r, c)]
            cs = _contour(ax, a, b, f, levels, f"{r}, {c}")
    if cs is not None:
        _colorbar(fig, cs, list(axes.ravel()), levels)
    suptitle(fig, title)
    return fig


def plot_contour_grid(cells: dict[tuple[str, str], Path], rows: list[str], cols: list[str], title: str,
                      out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(out) as tmp:
        _save(contour_grid_figure(cells, rows, cols, title), tmp)
    return out


def plot_landscape(nets: list[tuple[str, list[Path]]], out: Path, title: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(out) as tmp:
        _save(landscape_figure(nets, title), tmp)
    return out
