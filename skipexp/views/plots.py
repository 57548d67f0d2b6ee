"""Plots of a run, drawn from its folder on disk (never from a live model), so anything can be re-plotted."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # for whoever imports pyplot after this; these plots never need it
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import ListedColormap, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from skipexp.rundir import files, runio  # noqa: E402
from skipexp.rundir.summary import smooth  # noqa: E402
from skipexp.views.layout import (  # noqa: E402
    BAR_PAD,
    BAR_WIDTH,
    EDGE,
    TITLES,
    figure_legend,
    label_log_axis,
    label_room,
    legend_height,
    new_figure,
    set_log_ticks,
    set_margins,
    set_title,
    side_legend,
    suptitle,
)
from skipexp.views.style import formats_of, save  # noqa: E402
from skipexp.views.ticks import layer_keys  # noqa: E402,F401  (plots.layer_keys: its name before ticks.py)

# Lines coloured by step run dark (early) to light (late); viridis's yellow end is invisible on white.
STEP_CMAP = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.8, 256)))
# One absolute scale (log10 L2 norm) for every gradient heatmap, a single run's and a comparison's, so the
# same colour means the same norm in every figure; the colour bar's arrows cover what lies beyond.
GRAD_LOG10_RANGE = (-8.0, 1.0)
HEAT_CMAP = colormaps["magma"].with_extremes(bad="#c8c8c8")  # bad: a norm that is not finite (diverged)
ZERO_COLOR = "#19b5d8"  # an exact 0 lies off every log scale: it gets its own colour, and a ▼ on line plots
ZERO_GID = "exact-zero"  # marks the artists that draw exact zeros (tests find them by it)
ZERO_LABEL = "gradient exactly 0"
NONFINITE_LABEL = "not finite"
CHANCE = dict(color="grey", ls=":", lw=1.2)
PANELS = [(files.GRAD_NORMS, "weight-gradient norm per layer", "layer (input → head)"),
          (files.ACT_GRAD_NORMS, "activation-gradient norm per block boundary", "boundary h_i (input → output)")]


def _matrix(rows: list[dict]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(steps,), column names, (steps, columns) from a per-step CSV."""
    cols = [c for c in rows[0] if c != "step"]
    steps = np.array([r["step"] for r in rows])
    return steps, cols, np.array([[r[c] for c in cols] for r in rows], dtype=float)


def _mark_divergence(ax: Any, meta: dict) -> None:
    step = meta.get("diverged_at_step")
    if step is not None:
        ax.axvline(step, color="crimson", ls="--", lw=1.2, label=f"diverged at step {step}")


def _pick_steps(n: int, k: int = 6) -> list[int]:
    """Row indices of k steps spread over the run, always the first and the last."""
    return sorted(set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist()))


def _positive(a: Any) -> np.ndarray:
    """Values a log axis can draw: zeros and non-finite values become gaps (zeros are marked apart)."""
    a = np.array(a, dtype=float)
    a[~np.isfinite(a) | (a <= 0)] = np.nan
    return a


def mark_zeros(ax: Any, x: Any, y: Any, color: Any) -> bool:
    """Draw the exact zeros of ``y`` (which a log axis cannot show) as ▼ on the axis floor; True if any."""
    zero = np.asarray(y, dtype=float) == 0
    if zero.any():
        ax.plot(np.asarray(x, dtype=float)[zero], np.full(int(zero.sum()), 0.0), "v", color=color, ms=6,
                clip_on=False, transform=ax.get_xaxis_transform(), gid=ZERO_GID, zorder=5)
    return bool(zero.any())


def zero_handle() -> Line2D:
    return Line2D([], [], marker="v", color="k", ls="none", ms=6, label=f"{ZERO_LABEL} (▼ on the floor)")


def set_loss_axis(ax: Any, values: list[float], label: str = "cross-entropy loss") -> None:
    """A log axis (with readable ticks) where the loss spans more than a decade, else a linear one from 0:
    over a narrow range a log axis only magnifies the noise around one value."""
    v = _positive(values)
    lo, hi = (float(np.nanmin(v)), float(np.nanmax(v))) if np.isfinite(v).any() else (1.0, 1.0)
    # with a tenth of the axis left free above the highest value (room for markers drawn at the top)
    if hi / lo > 10:
        ax.set_yscale("log")
        ax.set_ylim(lo / (hi / lo) ** 0.05, hi * (hi / lo) ** 0.1)
        set_log_ticks(ax, "y", lo, hi)
        ax.set_ylabel(f"{label} (log scale)")
    else:
        ax.set_ylim(0, hi * 1.1)
        ax.set_ylabel(label)


def num_classes(run_dir: Path) -> int | None:
    """Classes of the run's dataset, from its config.yaml (None if it cannot be read)."""
    import yaml

    try:
        data = files.read_config_dict(run_dir)["data"]
        return int(data.get("num_classes", 10)) if data["dataset"] == "synthetic" else 10
    except (OSError, KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError):
        return None


def block_of(run_dir: Path) -> str | None:
    """The run's model.block (mlp / conv) from its config.yaml (None if it cannot be read)."""
    import yaml

    try:
        return str((files.read_config_dict(run_dir).get("model") or {}).get("block", "mlp"))
    except (OSError, AttributeError, yaml.YAMLError):
        return None


def draw_chance(ax_loss: Any, ax_acc: Any, k: int) -> None:
    """A uniform guess over k classes: loss ln k, accuracy 1/k (drawn in %). A run stuck there has learned
    nothing."""
    if ax_loss is not None:
        ax_loss.axhline(math.log(k), **CHANCE, label=f"chance loss (ln {k} = {math.log(k):.2f})")
    if ax_acc is not None:
        ax_acc.axhline(100 / k, **CHANCE, label=f"chance accuracy ({1 / k:.0%})")


def _percent(a: Any) -> np.ndarray:
    """Accuracies (fractions) as percentages, the unit every accuracy axis shows."""
    return 100.0 * np.asarray(a, dtype=float)


def _save(fig: Figure, out: Path, formats: list[str] | tuple[str, ...] = ("png",)) -> None:
    save(fig, out, formats)


def loss_figure(run_dir: Path) -> Figure:
    """Loss and accuracy against step: every logged training batch faint, their smoothed curve over it,
    test evaluations as dots."""
    meta = files.meta_or_empty(run_dir)
    m, e = runio.read_csv(run_dir / files.METRICS), runio.read_csv(run_dir / files.EVAL)
    fig = new_figure(11, 4.8)
    ax_l, ax_a = fig.subplots(1, 2)
    if m:
        steps = [r["step"] for r in m]
        for ax, key, f in ((ax_l, "train_loss", _positive), (ax_a, "train_acc", _percent)):
            raw = [r[key] for r in m]
            ax.plot(steps, f(raw), color="tab:blue", alpha=0.3, lw=1.0, label="train, each logged batch")
            ax.plot(steps, f(smooth(raw)), color="tab:blue", lw=1.8, label="train, smoothed")
    if e:
        for ax, key, f in ((ax_l, "test_loss", _positive), (ax_a, "test_acc", _percent)):
            ax.plot([r["step"] for r in e], f([r[key] for r in e]), "o-", color="tab:orange", ms=3, lw=1.5,
                    label="test")
    k = num_classes(run_dir)
    if k:
        draw_chance(ax_l, ax_a, k)
    for ax in (ax_l, ax_a):
        _mark_divergence(ax, meta)
        ax.set_xlabel("step (optimizer updates)")
        ax.grid(alpha=0.3)
    set_loss_axis(ax_l, [r["train_loss"] for r in m] + [r["test_loss"] for r in e] + ([math.log(k)] if k else []),
                  "cross-entropy loss")
    set_title(ax_l, "loss")
    ax_a.set_ylabel("accuracy (%)")
    ax_a.set_ylim(0, 102)
    set_title(ax_a, "accuracy")
    legend = figure_legend(fig, [ax_l, ax_a], ncol=3)
    final = f", final test accuracy {e[-1]['test_acc']:.1%}" if e and math.isfinite(e[-1]["test_acc"]) else ""
    suptitle(fig, f"{meta.get('name', run_dir.name)}: {meta.get('status', '')}{final}")
    set_margins(fig, 2, left=EDGE + label_room(ax_l.yaxis), right=EDGE + 0.1, top=TITLES,
                bottom=EDGE + label_room(ax_l.xaxis) + legend_height(legend, 3), gap=0.3 + label_room(ax_a.yaxis))
    return fig


def plot_loss(run_dir: Path, out: Path) -> None:
    _save(loss_figure(run_dir), out)


def grad_norms_figure(run_dir: Path) -> Figure:
    """Gradient norm against depth at six steps spread over the run (dark = early)."""
    meta = files.meta_or_empty(run_dir)
    fig = new_figure(13, 4.6)
    axes = fig.subplots(1, 2)
    zeros = False
    for ax, (fname, title, xlabel) in zip(axes, PANELS):
        rows = runio.read_csv(run_dir / fname)
        if not rows:
            set_title(ax, f"{title}: no data")
            continue
        steps, cols, mat = _matrix(rows)
        picks = _pick_steps(len(steps))
        x = np.arange(len(cols))
        for j, i in enumerate(picks):
            c = STEP_CMAP(j / max(1, len(picks) - 1))
            ax.plot(x, _positive(mat[i]), "-", marker="." if len(cols) < 40 else None, color=c, lw=1.5,
                    label=f"step {int(steps[i])}")
            zeros |= mark_zeros(ax, x, mat[i], c)
        ax.set_yscale("log")
        label_log_axis(ax.yaxis)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("gradient L2 norm (log scale)")
        set_title(ax, title)
        ticks = _ticks(len(cols))
        ax.set_xticks(ticks)
        ax.set_xticklabels([_short(cols[t]) for t in ticks], rotation=45, ha="right", fontsize=7)
        ax.grid(alpha=0.3, which="both")
    # one legend for both panels (same steps, same colours), beside them so it hides no line
    handles = axes[0].get_legend_handles_labels()[0]
    if zeros:
        handles.append(zero_handle())
    right = side_legend(fig, handles, "step (dark = early)") if handles else EDGE
    suptitle(fig, f"{meta.get('name', run_dir.name)}: gradient norm against depth")
    set_margins(fig, 2, left=EDGE + label_room(axes[0].yaxis), right=right + 0.15, top=TITLES,
                bottom=EDGE + max(label_room(ax.xaxis, 7, 45) for ax in axes), gap=0.3 + label_room(axes[1].yaxis))
    return fig


def plot_grad_norms(run_dir: Path, out: Path) -> None:
    _save(grad_norms_figure(run_dir), out)


def _ticks(n: int, k: int = 12) -> list[int]:
    """Evenly spaced indices from 0 (the input): a step that divides n - 1 where one lies between (n - 1) / k
    and twice that, so the last row (the head) is labelled too; else every row where there are few, else
    the last rows stay unlabelled rather than break the spacing."""
    if n <= k + 1:
        return list(range(n))
    base = math.ceil((n - 1) / k)
    step = next((s for s in range(base, 2 * base + 1) if (n - 1) % s == 0), 1 if n <= 2 * k + 2 else base)
    return list(range(0, n, step))


def _short(col: str) -> str:
    return col.replace("blocks.", "b").replace("skips.", "s")


def heatmap(ax: Any, steps: np.ndarray, cols: list[str], mat: np.ndarray, extent: tuple) -> tuple[Any, bool, bool]:
    """Layer x step image of log10 norm on the absolute scale :data:`GRAD_LOG10_RANGE`; exact zeros in
    :data:`ZERO_COLOR`, non-finite norms grey. Returns (image, any zero, any non-finite)."""
    logm = np.log10(_positive(mat)).T                                      # (layers, steps)
    im = ax.imshow(np.ma.masked_invalid(logm), aspect="auto", origin="lower", cmap=HEAT_CMAP,
                   norm=Normalize(*GRAD_LOG10_RANGE), interpolation="nearest", extent=extent)
    zero = (mat == 0).T
    if zero.any():
        ax.imshow(np.ma.masked_where(~zero, np.ones(zero.shape)), aspect="auto", origin="lower",
                  cmap=ListedColormap([ZERO_COLOR]), vmin=0, vmax=1, interpolation="nearest", extent=extent,
                  gid=ZERO_GID)
    ticks = _ticks(len(cols), 10)
    ax.set_yticks(ticks)
    ax.set_yticklabels([_short(cols[t]) for t in ticks], fontsize=7)
    ax.set_xlabel("step (optimizer updates)")
    return im, bool(zero.any()), bool((~np.isfinite(mat)).any())


def heatmap_legend(fig: Figure, zeros: bool, nonfinite: bool) -> Any:
    """Say what the two colours off the scale mean, where they occur."""
    handles = ([Patch(color=ZERO_COLOR, label=ZERO_LABEL)] if zeros else []) + \
              ([Patch(color=HEAT_CMAP.get_bad(), label=f"{NONFINITE_LABEL} (inf or nan)")] if nonfinite else [])
    return fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8, frameon=False) if handles \
        else None


def heatmap_figure(run_dir: Path) -> Figure:
    meta = files.meta_or_empty(run_dir)
    fig = new_figure(12, 5.0)
    axes = fig.subplots(1, 2)
    zeros = nonfinite = False
    bars = []
    for ax, (fname, title, ylabel) in zip(axes, [
            (files.GRAD_NORMS, "weight gradients", "layer (bottom = input, top = head)"),
            (files.ACT_GRAD_NORMS, "activation gradients", "boundary h_i (bottom = h0)")]):
        rows = runio.read_csv(run_dir / fname)
        if not rows:
            set_title(ax, f"{title}: no data")
            continue
        steps, cols, mat = _matrix(rows)
        # ± half a step: a run of one logged step still gets a cell, not an image 0 wide
        im, z, nf = heatmap(ax, steps, cols, mat, (steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(cols) - 0.5))
        zeros, nonfinite = zeros or z, nonfinite or nf
        ax.set_ylabel(ylabel)
        set_title(ax, f"log10 norm of {title}")
        _mark_divergence(ax, meta)
        # placed beside its panel once the margins are known
        bars.append((ax, fig.colorbar(im, cax=fig.add_axes((0, 0, 1, 1)), label="log10 L2 norm (absolute scale)",
                                      extend="both")))
    legend = heatmap_legend(fig, zeros, nonfinite)
    suptitle(fig, f"{meta.get('name', run_dir.name)}: where the gradient lives (layer × step); dark = vanished")
    bar = BAR_PAD + BAR_WIDTH + max([label_room(b.ax.yaxis) for _, b in bars] + [0.0])
    set_margins(fig, 2, left=EDGE + label_room(axes[0].yaxis, 7), right=EDGE + bar, top=TITLES,
                bottom=EDGE + label_room(axes[0].xaxis) + legend_height(legend, 2),
                gap=0.3 + bar + label_room(axes[1].yaxis, 7))
    width = fig.get_size_inches()[0]
    for ax, b in bars:
        pos = ax.get_position()
        b.ax.set_position((pos.x1 + BAR_PAD / width, pos.y0, BAR_WIDTH / width, pos.height))
    return fig


def plot_heatmap(run_dir: Path, out: Path) -> None:
    _save(heatmap_figure(run_dir), out)


def plot_run(run_dir: Path) -> list[Path]:
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    paths = [out / "loss.png", out / "grad_norms.png", out / "grad_heatmap.png"]
    formats = formats_of(run_dir)
    for fn, path in zip((loss_figure, grad_norms_figure, heatmap_figure), paths):
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # the suffix tells savefig the format
        save(fn(run_dir), tmp, formats)
        os.replace(tmp, path)  # a process killed while drawing leaves the old plot, not half a PNG
    return paths
