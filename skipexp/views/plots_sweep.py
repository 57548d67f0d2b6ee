"""Plots of a sweep, drawn from its folders on disk only: final loss and accuracy against each swept key,
and every configuration's training curves."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # for whoever imports pyplot after this; these plots never need it
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from skipexp.core.fmt import short_key  # noqa: E402
from skipexp.core.fmt import value as format_value  # noqa: E402
from skipexp.rundir import files, runio  # noqa: E402
from skipexp.rundir.summary import smooth  # noqa: E402
from skipexp.views.layout import (  # noqa: E402
    EDGE,
    TITLES,
    figure_legend,
    label_room,
    legend_height,
    new_figure,
    set_log_ticks,
    set_margins,
    set_title,
    suptitle,
)
from skipexp.views.plots import (  # noqa: E402
    CHANCE,
    STEP_CMAP,
    _positive,
    _save,
    draw_chance,
    num_classes,
    set_loss_axis,
)
from skipexp.views.plots_compare import COLORS, style_handle  # noqa: E402


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _f(v: Any) -> float:
    return float(v) if _is_number(v) else float("nan")


def plot_sweep(rows: list[dict], grid: dict[str, list], out: Path, title: str = "sweep",
               chance: float | None = None) -> list[Path]:
    """Final train loss and test accuracy against each swept key, one line per value of the other keys.

    ``seed`` is never an axis: lines show the mean over seeds with the min-max band, each seed a dot.
    A diverged point is a red cross, kept out of the lines and the axis range (at the top of the loss
    axis). ``chance`` (1 / classes) draws the accuracy of a guess; by default it is read from the points'
    folders beside ``out`` when they all share one number of classes.
    """
    out.mkdir(parents=True, exist_ok=True)

    if chance is None:
        found = {num_classes(out.parent / str(r["point"])) for r in rows if r.get("point")}
        chance = 1 / found.pop() if len(found) == 1 and None not in found else None
    keys = [k for k in grid if k != "seed"]
    axes_keys = [k for k in keys if all(_is_number(v) for v in grid[k]) and len(grid[k]) > 1]
    if not axes_keys and keys:  # nothing numeric: the first key's values become categories on the x axis
        axes_keys = [keys[0]]
    paths = []
    for xkey in axes_keys:
        path = out / f"{short_key(xkey)}.png"
        _save(sweep_figure(rows, grid, xkey, [k for k in keys if k != xkey], title, chance), path)
        paths.append(path)
    return paths


DIVERGED = dict(marker="x", color="crimson", ms=9, mew=2, ls="none")


def sweep_figure(rows: list[dict], grid: dict[str, list], xkey: str, line_keys: list[str], title: str,
                 chance: float | None = None) -> Figure:
    numeric = all(_is_number(v) for v in grid[xkey])
    xs_all = grid[xkey]
    pos = {format_value(v): (float(v) if numeric else i) for i, v in enumerate(xs_all)}
    fig = new_figure(12, 5.0)
    ax_l, ax_a = fig.subplots(1, 2)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(format_value(r.get(k)) for k in line_keys), []).append(r)
    diverged: dict[Any, list[tuple[float, float]]] = {ax_l: [], ax_a: []}
    several_seeds, healthy_losses = False, []
    seeds = "seed" in grid and len(grid["seed"]) > 1
    for gi, (gkey, members) in enumerate(groups.items()):
        c = COLORS[gi % len(COLORS)]
        label = (", ".join(f"{short_key(k)}={v}" for k, v in zip(line_keys, gkey))
                 or ("mean over seeds" if seeds else "points"))
        # categories have no order, so nothing joins them: each is its mean with a min-max bar, the
        # groups side by side around the category's tick
        shift = 0.0 if numeric else 0.12 * (gi - (len(groups) - 1) / 2)
        for ax, field in ((ax_l, "final_train_loss"), (ax_a, "final_test_acc")):
            xs, means, lo, hi = [], [], [], []
            for v in xs_all:
                at = [r for r in members if format_value(r.get(xkey)) == format_value(v)
                      and r.get("status") not in ("missing", "not started")]
                x = pos[format_value(v)] + shift
                diverged[ax] += [(x, _f(r.get(field))) for r in at if r.get("status") == "diverged"]
                vals = [y for y in (_f(r.get(field)) for r in at if r.get("status") != "diverged")
                        if math.isfinite(y)]
                if not vals:
                    continue
                if len(vals) > 1:  # each seed a dot; with one seed the dot would only repeat the line's
                    several_seeds = True
                    # beside a category's mean marker, which would hide them; on a numeric axis, on the line
                    ax.plot([x + (0 if numeric else 0.07)] * len(vals), vals, ".", color=c, alpha=0.45, ms=5)
                xs.append(x)
                means.append(sum(vals) / len(vals))
                lo.append(min(vals))
                hi.append(max(vals))
                if ax is ax_l:
                    healthy_losses += vals
            if xs and numeric:
                ax.plot(xs, means, "o-", color=c, lw=2, ms=5, label=label)
                ax.fill_between(xs, lo, hi, color=c, alpha=0.15)
            elif xs:
                m = np.asarray(means)
                ax.errorbar(xs, means, yerr=[m - np.asarray(lo), np.asarray(hi) - m], fmt="o", color=c, ms=6,
                            capsize=4, lw=1.5, label=label)
    # the healthy points alone set the range (a diverged 5e4 would squash them into one line): diverged
    # points go at the top of the loss axis, in axes coordinates that autoscaling ignores; the accuracy
    # of a diverged point is drawn at its own value (it cannot stretch 0-1), or at 0
    set_loss_axis(ax_l, healthy_losses, "final train loss")
    for x, _ in diverged[ax_l]:
        ax_l.plot([x], [0.97], transform=ax_l.get_xaxis_transform(), clip_on=False, **DIVERGED)
    for x, y in diverged[ax_a]:
        ax_a.plot([x], [y if math.isfinite(y) else 0.0], clip_on=False, **DIVERGED)
    if chance is not None:
        ax_a.axhline(chance, **CHANCE, label=f"chance ({chance:.0%})")
    ax_a.set_ylabel("final test accuracy")
    for ax in (ax_l, ax_a):
        ax.set_xlabel(short_key(xkey))
        ax.grid(alpha=0.3, which="both")
        if numeric:
            vals = [float(v) for v in xs_all]
            if min(vals) > 0 and max(vals) / min(vals) >= 8:
                ax.set_xscale("log", base=2)
            ax.set_xticks(vals)
            ax.set_xticklabels([format_value(v) for v in xs_all])
            ax.xaxis.set_minor_locator(NullLocator())
        else:
            ax.set_xticks(range(len(xs_all)))
            ax.set_xticklabels([format_value(v) for v in xs_all], rotation=20)
    ax_a.set_ylim(0, 1.02)
    extra = []
    if any(diverged.values()):
        extra.append(Line2D([], [], **{**DIVERGED, "ms": 8}, label="diverged (loss: at the top)"))
    if several_seeds:
        extra.append(Line2D([], [], marker=".", color="grey", ls="none", label="one seed"))
    legend = figure_legend(fig, [ax_l, ax_a], extra, ncol=5)
    spread = ("band" if numeric else "bar") + " = min-max"
    set_title(ax_l, "final train loss" + (f": mean over seeds, {spread}" if several_seeds else ""), fontsize=10)
    set_title(ax_a, "final test accuracy", fontsize=10)
    suptitle(fig, f"{title}: against {short_key(xkey)}")
    set_margins(fig, 2, left=EDGE + label_room(ax_l.yaxis), right=EDGE + 0.1, top=TITLES,
                bottom=EDGE + label_room(ax_l.xaxis, 10, 0 if numeric else 20) + legend_height(legend, 5),
                gap=0.3 + label_room(ax_a.yaxis))
    return fig


# --- a sweep's training curves -------------------------------------------------------------------

STYLES = ("-", "--", ":", "-.")


def _over_steps(curves: list[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, min, max) over seeds at every step any seed logged: a seed that stopped early (diverged,
    interrupted) leaves the others to carry on, where :func:`_band` would cut them all to its length."""
    steps = sorted({float(s) for x, _ in curves for s in x})
    at = {s: i for i, s in enumerate(steps)}
    mat = np.full((len(curves), len(steps)), np.nan)
    for j, (x, y) in enumerate(curves):
        mat[j, [at[float(s)] for s in x]] = np.asarray(y, dtype=float)
    mat[~np.isfinite(mat)] = np.nan
    with warnings.catch_warnings():  # a step where every seed is nan stays nan, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.array(steps), np.nanmean(mat, 0), np.nanmin(mat, 0), np.nanmax(mat, 0)


def _curve_looks(configs: list[tuple[dict, list[dict]]], grid: dict[str, list]) -> list[tuple[Any, str]]:
    """(colour, line style) per configuration: colour by the first numeric swept key (dark = small), style
    by the other keys; with no numeric key, a colour per configuration."""
    keys = [k for k in grid if k != "seed"]
    numeric = [k for k in keys if len(grid[k]) > 1 and all(_is_number(v) for v in grid[k])]
    if not numeric:
        return [(COLORS[i % len(COLORS)], "-") for i in range(len(configs))]
    ckey, rest = numeric[0], [k for k in keys if k != numeric[0]]
    order = [format_value(v) for v in grid[ckey]]
    combos: dict[tuple, int] = {}
    out = []
    for values, _ in configs:
        i = order.index(format_value(values[ckey]))
        combo = combos.setdefault(tuple(format_value(values[k]) for k in rest), len(combos))
        out.append((STEP_CMAP(i / max(1, len(order) - 1)), STYLES[combo % len(STYLES)]))
    return out


def plot_sweep_curves(configs: list[tuple[dict, list[dict]]], grid: dict[str, list], root: Path, out: Path,
                      title: str, dataset: str | None = None) -> Path:
    """``curves.png``: :func:`curves_figure` of a sweep folder's configurations (values, point rows)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _save(curves_figure(configs, grid, root, title, dataset), out)
    return out


def curves_figure(configs: list[tuple[dict, list[dict]]], grid: dict[str, list], root: Path, title: str,
                  dataset: str | None = None) -> Figure:
    """Smoothed train loss (log axis) and test accuracy against step, a line per configuration: the mean over
    its seeds that did not diverge (as in summary-seeds.csv), the min-max band shaded where there are several.
    A diverged seed is a thin line of its own that stops where the seed stopped, with a red cross at the top
    of the loss axis at its step; the healthy seeds alone set the loss range."""
    fig = new_figure(12, 5.2)
    ax_l, ax_a = fig.subplots(1, 2)
    healthy, crosses, classes, several, thin = [], [], set(), False, False
    for (values, points), (c, ls) in zip(configs, _curve_looks(configs, grid)):
        label = ", ".join(f"{short_key(k)}={format_value(v)}" for k, v in values.items()) or "all points"
        seeds = []  # (diverged, train curve, test curve) of every seed with rows
        for p in points:
            run_dir = root / str(p.get("point"))
            m, e = runio.read_csv(run_dir / files.METRICS), runio.read_csv(run_dir / files.EVAL)
            if not (m or e):
                continue
            bad = p.get("status") == "diverged"
            seeds.append((bad, ([r["step"] for r in m], smooth([r["train_loss"] for r in m])) if m else None,
                          ([r["step"] for r in e], [r["test_acc"] for r in e]) if e else None))
            if bad and p.get("diverged_at_step") is not None:
                crosses.append(p["diverged_at_step"])
            classes.add(num_classes(run_dir))
        ok = [s for s in seeds if not s[0]]
        healthy += [v for s in ok if s[1] for v in s[1][1]]
        for ax, i, kw in ((ax_l, 1, dict(lw=1.8)), (ax_a, 2, dict(lw=1.4, marker="o", ms=3))):
            f = _positive if ax is ax_l else np.asarray
            curves = [s[i] for s in (ok or seeds) if s[i]]
            if curves:
                x, mean, lo, hi = _over_steps(curves)
                ax.plot(x, f(mean), color=c, ls=ls, label=label, **kw)
                if len(curves) > 1:
                    several = True
                    ax.fill_between(x, f(lo), f(hi), color=c, alpha=0.15, lw=0)
            for _, *curve in (s for s in seeds if s[0] and ok):  # beside a mean that leaves them out
                if curve[i - 1]:
                    thin = True
                    ax.plot(curve[i - 1][0], f(curve[i - 1][1]), color=c, ls=ls, lw=0.8, alpha=0.8)
    # a diverged seed's last losses (1e4 and more) would squash every healthy curve into one line
    drawn = [float(y) for ln in ax_l.get_lines() for y in ln.get_ydata()]
    v = _positive(healthy or drawn)
    lo, hi = (float(np.nanmin(v)), float(np.nanmax(v))) if np.isfinite(v).any() else (0.1, 10.0)
    span = max(hi / lo, 1.5)
    ax_l.set_yscale("log")
    ax_l.set_ylim(lo / span ** 0.05, hi * span ** 0.1)
    set_log_ticks(ax_l, "y", lo, hi)
    ax_l.set_ylabel("train loss, smoothed (log scale)")
    for x in crosses:
        ax_l.plot([x], [0.97], transform=ax_l.get_xaxis_transform(), clip_on=False, **DIVERGED)
    if len(classes) == 1 and None not in classes:
        draw_chance(None, ax_a, classes.pop())
    ax_a.set_ylim(0, 1.02)
    ax_a.set_ylabel("test accuracy")
    set_title(ax_l, "train loss (smoothed as in a run's loss.png)", fontsize=10)
    set_title(ax_a, "test accuracy at each evaluation", fontsize=10)
    for ax in (ax_l, ax_a):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
    extra = [Line2D([], [], **{**DIVERGED, "ms": 8}, label="a seed diverged (at its step)")] if crosses else []
    if thin:
        extra.append(style_handle("a diverged seed, left out of the mean", lw=0.8))
    if several:
        extra.append(style_handle("band: min-max over seeds", lw=6, alpha=0.25))
    legend = figure_legend(fig, [ax_l, ax_a], extra, ncol=4)
    n = len(grid.get("seed", [None]))
    what = f"mean of {n} seeds, band = min–max" if n > 1 else "one seed"
    suptitle(fig, f"{title}: training curves ({', '.join(x for x in (dataset, what) if x)})")
    set_margins(fig, 2, left=EDGE + label_room(ax_l.yaxis), right=EDGE + 0.1, top=TITLES,
                bottom=EDGE + label_room(ax_l.xaxis) + legend_height(legend, 4), gap=0.3 + label_room(ax_a.yaxis))
    return fig
