"""Figures of the diagnostics, drawn from their rows (lesion.csv, shatter.csv and shatter-lags.csv)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # for whoever imports pyplot after this; these plots never need it
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

from skipexp.core import stats  # noqa: E402
from skipexp.views.layout import (  # noqa: E402
    EDGE,
    TITLES,
    figure_legend,
    label_room,
    legend_height,
    new_figure,
    set_margins,
    set_title,
    suptitle,
)
from skipexp.views.style import SKIP_WORDS, look, save  # noqa: E402

GREY = dict(color="grey", lw=1.0)


# --- lesion ---------------------------------------------------------------------------------------

def _pp(v: float, _: object = None) -> str:
    return "0" if v == 0 else f"{v:+g}"


def lesion_figure(curves: list[tuple[str, list[list[dict]]]], title: str, chance: float | None = None) -> Figure:
    """Change in test accuracy, in percentage points, when units are removed at test time: against the unit
    removed (left) and the number removed (right), one line per net (its seeds' mean, the min-max band
    where there are several). Each seed's change is from its own intact model. The y axis is linear within
    ±1 point and logarithmic beyond, so that a residual net's 0.1-point effects and a plain net's fall to
    chance (-70 points) both show."""
    fig = new_figure(12, 5.0)
    ax1, ax2 = fig.subplots(1, 2)
    several = any(len(seeds) > 1 for _, seeds in curves)
    floors = []
    for i, (label, seeds) in enumerate(curves):
        lk = look(i)
        n = f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""
        intact = [next(r["test_acc"] for r in rows if r["k"] == 0) for rows in seeds]
        units = sorted({int(r["removed"]) for rows in seeds for r in rows if r["k"] == 1})
        per_unit = [[100 * (r["test_acc"] - base) for rows, base in zip(seeds, intact) for r in rows
                     if r["k"] == 1 and int(r["removed"]) == u and math.isfinite(r["test_acc"])] for u in units]
        units, per_unit = [u for u, v in zip(units, per_unit) if v], [v for v in per_unit if v]
        if units:
            _band(ax1, units, per_unit, lk, label + n)
        ks = sorted({r["k"] for rows in seeds for r in rows})
        per_k = [[100 * (r["test_acc"] - base) for rows, base in zip(seeds, intact) for r in rows
                  if r["k"] == k and math.isfinite(r["test_acc"])] for k in ks]
        ks, per_k = [k for k, v in zip(ks, per_k) if v], [v for v in per_k if v]
        _band(ax2, ks, per_k, lk, f"{label}{n}")
        if chance is not None:   # a guess, as a change from this net's intact accuracy
            floor = 100 * (chance - sum(intact) / len(intact))
            floors.append(floor)
            for ax in (ax1, ax2):
                ax.axhline(floor, color=lk["color"], ls=":", lw=1.0)
    for ax in (ax1, ax2):
        ax.axhline(0, **GREY)
        ax.set_yscale("symlog", linthresh=1.0, linscale=1.0)
        lo = min([min(ln.get_ydata()) for ln in ax.get_lines() if len(ln.get_ydata())] + floors + [-1.0])
        hi = max([max(ln.get_ydata()) for ln in ax.get_lines() if len(ln.get_ydata())] + [1.0])
        ax.set_ylim(min(lo * 1.5, -1.5), max(hi * 1.5, 1.5))
        ticks = [t for t in (-100, -30, -10, -3, -1, 0, 1, 3, 10, 30) if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FuncFormatter(_pp))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_ylabel("change in test accuracy (percentage points)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax1.set_xlabel("unit removed (one at a time; 0 = nearest the input)")
    ax2.set_xlabel("units removed at once (0 = intact)")
    spread = "; band: min-max over seeds" if several else ""
    set_title(ax1, f"remove one unit{spread}", fontsize=10)
    set_title(ax2, "remove k random units (band: min-max over sets" + (" and seeds)" if several else ")"),
              fontsize=10)
    extra = [Line2D([], [], **GREY, label="intact (0)")]
    if floors:
        extra.append(Line2D([], [], color="dimgrey", ls=":", lw=1.0, label="chance, from each net's intact accuracy"))
    legend = figure_legend(fig, [ax1, ax2], extra, ncol=2)
    suptitle(fig, title)
    set_margins(fig, 2, left=EDGE + label_room(ax1.yaxis), right=EDGE + 0.1, top=TITLES,
                bottom=EDGE + label_room(ax1.xaxis) + legend_height(legend, 2), gap=0.3 + label_room(ax2.yaxis))
    return fig


def _band(ax, xs: list, per_x: list[list[float]], lk: dict, label: str) -> None:
    """The mean at each x with the min-max band where there are several values."""
    ax.plot(xs, [sum(v) / len(v) for v in per_x], color=lk["color"], ls=lk["ls"], marker=lk["marker"], ms=4,
            mfc="white", lw=1.6, label=label)
    if any(len(v) > 1 for v in per_x):
        ax.fill_between(xs, [min(v) for v in per_x], [max(v) for v in per_x], color=lk["color"], alpha=0.15, lw=0)


def plot_lesion(curves: list[tuple[str, list[list[dict]]]], out: Path, title: str, chance: float | None = None,
                formats: list[str] | tuple[str, ...] = ("png",)) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    save(lesion_figure(curves, title, chance), out, formats)
    return out


# --- shattered gradients -----------------------------------------------------------------------------

def _kind(kind: str, state: str) -> str:
    return SKIP_WORDS.get(kind, kind) + ("" if state == "init" else " (trained)")


def shatter_figure(rows: list[dict], lags: list[dict], title: str) -> Figure:
    """Left: the lag-1 correlation of gradients along a line against depth (linear axis: it goes negative),
    per kind the mean over networks and lines with its 95 % confidence interval, and 2^-L and 1/sqrt(L)
    anchored at the first depth. Right: the autocorrelation against lag at the deepest depth (solid) and the
    shallowest (dashed)."""
    fig = new_figure(12, 5.0)
    ax, ax_lag = fig.subplots(1, 2)
    kinds = sorted({(r["state"], r["kind"]) for r in rows}, key=lambda k: (k[0] != "init", k[1] != "none", k[1]))
    depths = sorted({int(r["depth"]) for r in rows})
    first: dict[str, tuple[int, float]] = {}
    for i, (state, kind) in enumerate(kinds):
        lk = look(i)
        ds, means, lo, hi = [], [], [], []
        for d in depths:
            vals = [r["correlation"] for r in rows if (r["state"], r["kind"]) == (state, kind) and int(r["depth"]) == d
                    and math.isfinite(r["correlation"])]
            if not vals:
                continue
            s = stats.summarize(vals)
            ds.append(d)
            means.append(s["mean"])
            lo.append(s["mean"] - (s["ci_low"] if s["ci_low"] is not None else s["mean"]))
            hi.append((s["ci_high"] if s["ci_high"] is not None else s["mean"]) - s["mean"])
        if not ds:
            continue
        if state == "init":
            ax.errorbar(ds, means, yerr=[lo, hi], color=lk["color"], ls=lk["ls"], marker=lk["marker"], mfc="white",
                        ms=6, capsize=3, lw=1.6, label=_kind(kind, state))
            first.setdefault(kind, (ds[0], means[0]))
        else:
            ax.plot(ds, means, ls="none", marker="*", ms=14, color=lk["color"], label=_kind(kind, state))
    ref = np.geomspace(depths[0], depths[-1], 200) if depths else np.array([])
    if "none" in first and len(ref):
        d0, c0 = first["none"]
        ax.plot(ref, c0 * 2.0 ** -(ref - d0), color="dimgrey", ls="--", lw=1.2,
                label=f"2^-L, anchored at plain's L = {d0}")
    skipped = next((k for k in first if k != "none"), None)
    if skipped is not None and len(ref):
        d0, c0 = first[skipped]
        ax.plot(ref, c0 * np.sqrt(d0 / ref), color="dimgrey", ls=":", lw=1.4,
                label=f"1/√L, anchored at {SKIP_WORDS.get(skipped, skipped)}'s L = {d0}")
    ax.axhline(0, **GREY)
    ax.set_xscale("log", base=2)
    ax.set_xticks(depths)
    ax.set_xticklabels([str(d) for d in depths])
    ax.xaxis.set_minor_locator(NullLocator())
    low = min([0.0] + [_lowest(ln) for ln in ax.get_lines()])
    ax.set_ylim(min(-0.1, low - 0.05), 1.05)
    ax.set_xlabel("depth L (blocks, one ReLU each)")
    ax.set_ylabel("lag-1 correlation of gradients along a line")
    set_title(ax, "correlation against depth (mean, bars = 95% CI)", fontsize=10)
    # right: autocorrelation against lag, the deepest and the shallowest depth
    for i, (state, kind) in enumerate(kinds):
        if state != "init":
            continue
        lk = look(i)
        for d, ls in ((depths[-1], "-"), (depths[0], "--")):
            mine = [r for r in lags if r["kind"] == kind and int(r["depth"]) == d and r["state"] == state]
            ks = sorted({int(r["lag"]) for r in mine})
            if not ks:
                continue
            m = [np.mean([r["correlation"] for r in mine if int(r["lag"]) == k and math.isfinite(r["correlation"])])
                 for k in ks]
            ax_lag.plot(ks, m, color=lk["color"], ls=ls, marker=lk["marker"], ms=3, mfc="white", lw=1.4)
    ax_lag.axhline(0, **GREY)
    ax_lag.set_xscale("log", base=2)
    shown = sorted({int(r["lag"]) for r in lags})
    if shown:
        ax_lag.set_xticks(shown)
        ax_lag.set_xticklabels([str(k) for k in shown])
        ax_lag.xaxis.set_minor_locator(NullLocator())
    ax_lag.set_xlabel("lag (points along the line, of 256)")
    ax_lag.set_ylabel("autocorrelation of the gradient")
    ax_lag.set_ylim(min(-0.1, min([0.0] + [_lowest(ln) for ln in ax_lag.get_lines()]) - 0.05), 1.05)
    set_title(ax_lag, f"autocorrelation against lag (solid: L = {depths[-1] if depths else '-'}, "
                      f"dashed: L = {depths[0] if depths else '-'})", fontsize=10)
    for a in (ax, ax_lag):
        a.grid(alpha=0.3, which="both")
    legend = figure_legend(fig, [ax, ax_lag], ncol=3)
    suptitle(fig, title)
    set_margins(fig, 2, left=EDGE + label_room(ax.yaxis), right=EDGE + 0.1, top=TITLES,
                bottom=EDGE + label_room(ax.xaxis) + legend_height(legend, 3), gap=0.3 + label_room(ax_lag.yaxis))
    return fig


def _lowest(line: Line2D) -> float:
    y = np.asarray(line.get_ydata(), dtype=float)
    return float(np.nanmin(y)) if y.size and np.isfinite(y).any() else 0.0


def plot_shatter(rows: list[dict], lags: list[dict], out: Path, title: str,
                 formats: list[str] | tuple[str, ...] = ("png",)) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    save(shatter_figure(rows, lags, title), out, formats)
    return out
