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

from skipexp.core import stats  # noqa: E402
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
    _positive,
    block_of,
    num_classes,
    set_loss_axis,
)
from skipexp.views.plots_compare import style_handle  # noqa: E402
from skipexp.views.style import axis_label, look, save, words  # noqa: E402


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _f(v: Any) -> float:
    return float(v) if _is_number(v) else float("nan")


def plot_sweep(rows: list[dict], grid: dict[str, list], out: Path, title: str = "sweep",
               chance: float | None = None, variants: dict | None = None,
               formats: list[str] | tuple[str, ...] = ("png",)) -> list[Path]:
    """Final train loss and test accuracy against each swept key, one line per value of the other keys.

    ``seed`` is never an axis: lines show the mean over seeds with its 95 % confidence interval, each seed a
    dot beside it. A diverged seed is a red cross at the top of both panels, never a value. ``chance``
    (1 / classes) draws the accuracy of a guess; by default it is read from the points' folders beside
    ``out`` when they all share one number of classes. ``variants`` (a named axis's labels -> settings) put
    the variants' settings into words in the legend.
    """
    out.mkdir(parents=True, exist_ok=True)

    points = [out.parent / str(r["point"]) for r in rows if r.get("point")]
    if chance is None:
        found = {num_classes(p) for p in points}
        chance = 1 / found.pop() if len(found) == 1 and None not in found else None
    blocks = {block_of(p) for p in points} - {None}
    block = blocks.pop() if len(blocks) == 1 else ("" if blocks else "mlp")
    keys = [k for k in grid if k != "seed"]
    axes_keys = [k for k in keys if all(_is_number(v) for v in grid[k]) and len(grid[k]) > 1]
    if not axes_keys and keys:  # nothing numeric: the first key's values become categories on the x axis
        axes_keys = [keys[0]]
    paths = []
    for xkey in axes_keys:
        path = out / f"{short_key(xkey)}.png"
        fig = sweep_figure(rows, grid, xkey, [k for k in keys if k != xkey], title, chance, variants, block)
        save(fig, path, formats)
        paths.append(path)
    return paths


DIVERGED = dict(marker="x", color="crimson", ms=9, mew=2, ls="none")


def settings_words(values: dict[str, Any], variants: dict | None = None) -> str:
    """A configuration's values in words: a named axis's label by its variant's settings (the label itself
    where the settings say nothing, ``{}``), every other key by :func:`skipexp.views.style.words`."""
    settings: dict[str, Any] = {}
    labels = []
    for k, v in values.items():
        if variants and k in variants:
            variant = variants[k].get(v, {})
            if variant:
                settings.update(variant)
            else:
                labels.append(str(v))
        else:
            settings[k] = v
    return ", ".join(labels + ([words(settings)] if settings else []))


def _category(v: Any, key: str, variants: dict | None) -> str:
    """A category's tick label: a named axis's variant in words (its label where it says nothing)."""
    if variants and key in variants:
        return settings_words({key: v}, variants) or str(v)
    return words({key: v}) if key.startswith(("model.", "train.")) else format_value(v)


def sweep_figure(rows: list[dict], grid: dict[str, list], xkey: str, line_keys: list[str], title: str,
                 chance: float | None = None, variants: dict | None = None, block: str = "mlp") -> Figure:
    numeric = all(_is_number(v) for v in grid[xkey])
    xs_all = grid[xkey]
    pos = {format_value(v): (float(v) if numeric else i) for i, v in enumerate(xs_all)}
    log_x = numeric and min(pos.values()) > 0 and max(pos.values()) / min(pos.values()) >= 8
    fig = new_figure(12, 5.0)
    ax_l, ax_a = fig.subplots(1, 2)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(format_value(r.get(k)) for k in line_keys), []).append(r)
    diverged: list[float] = []
    several_seeds, with_ci, healthy_losses = False, False, []
    seeds = "seed" in grid and len(grid["seed"]) > 1

    def shifted(x: float, by: float) -> float:
        """x moved sideways by ``by`` (a fraction of a category, or of a doubling on a log axis)."""
        return x * 2 ** by if log_x else x + by * (1 if not numeric else 0.15 * _step(xs_all))

    for gi, members in enumerate(groups.values()):
        lk = look(gi)
        values = {k: members[0].get(k) for k in line_keys}
        label = settings_words(values, variants) or ("mean over seeds" if seeds else "points")
        # groups side by side around each x, so that no group's markers or seeds hide another's
        shift = 0.14 * (gi - (len(groups) - 1) / 2) / max(1, len(groups) / 3)
        for ax, field, scale in ((ax_l, "final_train_loss", 1.0), (ax_a, "final_test_acc", 100.0)):
            xs, means, lo, hi = [], [], [], []
            for v in xs_all:
                at = [r for r in members if format_value(r.get(xkey)) == format_value(v)
                      and r.get("status") not in files.NOT_RUN]
                x = shifted(pos[format_value(v)], shift)
                if ax is ax_l:
                    diverged += [x for r in at if r.get("status") == "diverged"]
                vals = [y * scale for y in (_f(r.get(field)) for r in at if r.get("status") != "diverged")
                        if math.isfinite(y)]
                if not vals:
                    continue
                summary = stats.summarize(vals)
                if len(vals) > 1:  # each seed a dot beside its mean, in front of it: never hidden
                    several_seeds = True
                    ax.plot([shifted(x, 0.08)] * len(vals), vals, ".", color=lk["color"], alpha=0.7, ms=5,
                            zorder=4)
                xs.append(x)
                means.append(summary["mean"])
                lo.append(summary["ci_low"] if summary["ci_low"] is not None else summary["mean"])
                hi.append(summary["ci_high"] if summary["ci_high"] is not None else summary["mean"])
                with_ci |= summary["ci_low"] is not None
                if ax is ax_l:
                    healthy_losses += vals
            if not xs:
                continue
            m = np.asarray(means)
            ax.errorbar(xs, means, yerr=[m - np.asarray(lo), np.asarray(hi) - m], fmt=lk["marker"],
                        ls=lk["ls"] if numeric else "none", color=lk["color"], ms=6, mfc="white", mew=1.5,
                        capsize=3, lw=1.6, label=label, zorder=3)
    # the healthy points alone set the range (a diverged 5e4 would squash them into one line); a diverged seed
    # has no value: a cross at the top of both panels, in axes coordinates that autoscaling ignores
    set_loss_axis(ax_l, healthy_losses, "final train loss (cross-entropy)")
    for ax in (ax_l, ax_a):
        for x in diverged:
            ax.plot([x], [0.97], transform=ax.get_xaxis_transform(), clip_on=False, **DIVERGED)
    if chance is not None:
        ax_a.axhline(100 * chance, **CHANCE, label=f"chance ({chance:.0%})")
    ax_a.set_ylabel("final test accuracy (%)")
    for ax in (ax_l, ax_a):
        ax.set_xlabel(axis_label(xkey, block))
        ax.grid(alpha=0.3, which="both")
        if numeric:
            vals = [float(v) for v in xs_all]
            if log_x:
                ax.set_xscale("log", base=2)
            ax.set_xticks(vals)
            ax.set_xticklabels([format_value(v) for v in xs_all])
            ax.xaxis.set_minor_locator(NullLocator())
        else:
            ax.set_xticks(range(len(xs_all)))
            ax.set_xticklabels([_category(v, xkey, variants) for v in xs_all], rotation=20, ha="right")
            ax.set_xlim(-0.5, len(xs_all) - 0.5)
    ax_a.set_ylim(0, 102)
    extra = []
    if diverged:
        extra.append(Line2D([], [], **{**DIVERGED, "ms": 8}, label="a diverged seed (no value; at the top)"))
    if several_seeds:
        extra.append(Line2D([], [], marker=".", color="grey", ls="none", label="one seed"))
    legend = figure_legend(fig, [ax_l, ax_a], extra, ncol=4)
    what = ": mean over seeds" + (", bars = 95% CI" if with_ci else "") if several_seeds else ""
    set_title(ax_l, "final train loss" + what, fontsize=10)
    set_title(ax_a, "final test accuracy" + what, fontsize=10)
    suptitle(fig, f"{title}: against {axis_label(xkey, block).split(' (')[0]}")
    set_margins(fig, 2, left=EDGE + label_room(ax_l.yaxis), right=EDGE + 0.1, top=TITLES,
                bottom=EDGE + label_room(ax_l.xaxis, 10, 0 if numeric else 20) + legend_height(legend, 4),
                gap=0.3 + label_room(ax_a.yaxis))
    return fig


def _step(values: list) -> float:
    """The smallest gap between sorted numeric values (1 where there is none): a sideways shift's unit."""
    v = sorted(float(x) for x in values)
    gaps = [b - a for a, b in zip(v, v[1:]) if b > a]
    return min(gaps) if gaps else 1.0


# --- a sweep's training curves -------------------------------------------------------------------

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


def plot_sweep_curves(configs: list[tuple[dict, list[dict]]], grid: dict[str, list], root: Path, out: Path,
                      title: str, dataset: str | None = None, variants: dict | None = None,
                      formats: list[str] | tuple[str, ...] = ("png",)) -> Path:
    """``curves.png``: :func:`curves_figure` of a sweep folder's configurations (values, point rows)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    save(curves_figure(configs, grid, root, title, dataset, variants), out, formats)
    return out


def curves_figure(configs: list[tuple[dict, list[dict]]], grid: dict[str, list], root: Path, title: str,
                  dataset: str | None = None, variants: dict | None = None) -> Figure:
    """Smoothed train loss (log axis) and test accuracy (%) against step, a line per configuration, each with
    its own colour, marker and line style: the mean over its seeds that did not diverge (as in
    summary-seeds.csv), the min-max band shaded where there are several. A diverged seed is a thin line of its
    own that stops where the seed stopped, with a red cross at the top of the loss axis at its step; the
    healthy seeds alone set the loss range."""
    fig = new_figure(12, 5.2)
    ax_l, ax_a = fig.subplots(1, 2)
    healthy, crosses, classes, several, thin = [], [], set(), False, False
    for i, (values, points) in enumerate(configs):
        lk = look(i)
        c, ls = lk["color"], lk["ls"]
        label = settings_words(values, variants) or "all points"
        seeds = []  # (diverged, train curve, test curve) of every seed with rows
        for p in points:
            run_dir = root / str(p.get("point"))
            m, e = runio.read_csv(run_dir / files.METRICS), runio.read_csv(run_dir / files.EVAL)
            if not (m or e):
                continue
            bad = p.get("status") == "diverged"
            seeds.append((bad, ([r["step"] for r in m], smooth([r["train_loss"] for r in m])) if m else None,
                          ([r["step"] for r in e], [100 * r["test_acc"] for r in e]) if e else None))
            if bad and p.get("diverged_at_step") is not None:
                crosses.append(p["diverged_at_step"])
            classes.add(num_classes(run_dir))
        ok = [s for s in seeds if not s[0]]
        healthy += [v for s in ok if s[1] for v in s[1][1]]
        for ax, k, kw in ((ax_l, 1, dict(lw=1.8)), (ax_a, 2, dict(lw=1.4, ms=4))):
            f = _positive if ax is ax_l else np.asarray
            curves = [s[k] for s in (ok or seeds) if s[k]]
            if curves:
                x, mean, lo, hi = _over_steps(curves)
                ax.plot(x, f(mean), color=c, ls=ls, marker=lk["marker"], markevery=max(1, len(x) // 8),
                        mfc="white", label=label, **kw)
                if len(curves) > 1:
                    several = True
                    ax.fill_between(x, f(lo), f(hi), color=c, alpha=0.12, lw=0)
            for _, *curve in (s for s in seeds if s[0] and ok):  # beside a mean that leaves them out
                if curve[k - 1]:
                    thin = True
                    ax.plot(curve[k - 1][0], f(curve[k - 1][1]), color=c, ls=ls, lw=0.8, alpha=0.8)
    # a diverged seed's last losses (1e4 and more) would squash every healthy curve into one line
    drawn = [float(y) for ln in ax_l.get_lines() for y in ln.get_ydata()]
    v = _positive(healthy or drawn)
    lo, hi = (float(np.nanmin(v)), float(np.nanmax(v))) if np.isfinite(v).any() else (0.1, 10.0)
    span = max(hi / lo, 1.5)
    ax_l.set_yscale("log")
    ax_l.set_ylim(lo / span ** 0.05, hi * span ** 0.1)
    set_log_ticks(ax_l, "y", lo, hi)
    ax_l.set_ylabel("train loss, cross-entropy (smoothed, log scale)")
    for x in crosses:
        ax_l.plot([x], [0.97], transform=ax_l.get_xaxis_transform(), clip_on=False, **DIVERGED)
    if len(classes) == 1 and None not in classes:
        k = classes.pop()
        ax_a.axhline(100 / k, **CHANCE, label=f"chance accuracy ({1 / k:.0%})")
    ax_a.set_ylim(0, 102)
    ax_a.set_ylabel("test accuracy (%)")
    set_title(ax_l, "train loss (smoothed as in a run's loss.png)", fontsize=10)
    set_title(ax_a, "test accuracy at each evaluation", fontsize=10)
    # one step axis for both panels: evaluations (perhaps only the last step's) sit where the loss curve is
    (l0, l1), (a0, a1) = ax_l.get_xlim(), ax_a.get_xlim()
    for ax in (ax_l, ax_a):
        ax.set_xlim(min(l0, a0), max(l1, a1))
        ax.set_xlabel("step (optimizer updates)")
        ax.grid(alpha=0.3, which="both")
    extra = [Line2D([], [], **{**DIVERGED, "ms": 8}, label="a seed diverged (at its step)")] if crosses else []
    if thin:
        extra.append(style_handle("a diverged seed, left out of the mean", lw=0.8))
    if several:
        extra.append(style_handle("band: min-max over seeds", lw=6, alpha=0.25))
    legend = figure_legend(fig, [ax_l, ax_a], extra, ncol=3)
    n = len(grid.get("seed", [None]))
    what = f"mean of {n} seeds, band = min–max" if n > 1 else "one seed"
    suptitle(fig, f"{title}: training curves ({', '.join(x for x in (dataset, what) if x)})")
    set_margins(fig, 2, left=EDGE + label_room(ax_l.yaxis), right=EDGE + 0.1, top=TITLES,
                bottom=EDGE + label_room(ax_l.xaxis) + legend_height(legend, 3), gap=0.3 + label_room(ax_a.yaxis))
    return fig
