"""A measurement's numbers against a swept key: one panel per number, one line per configuration of the other
keys, the mean over seeds with its 95 % confidence interval shaded and each seed a dot.

The statistics arrive computed (this layer draws; it does not decide what a confidence interval is).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from skipexp.rundir import files  # noqa: E402
from skipexp.views.layout import label_log_axis, new_figure, set_title, suptitle  # noqa: E402
from skipexp.views.plots import _save  # noqa: E402
from skipexp.views.plots_compare import COLORS  # noqa: E402


@dataclass
class Line:
    label: str
    xs: list[float]                   # positions on the x axis (category index for a non-numeric key)
    mean: list[float]
    lo: list[float | None]            # the 95 % interval (None with one seed)
    hi: list[float | None]
    dots: list[tuple[float, float]] = field(default_factory=list)   # every seed's value


@dataclass
class Panel:
    title: str
    ylabel: str
    lines: list[Line]
    log: bool = False


def numbers_figure(panels: list[Panel], xlabel: str, title: str, categories: list[str] | None = None,
                   log_x: bool = False) -> Figure:
    width = 4.6 * len(panels)
    fig = new_figure(width, 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.15 / width, bottom=0.24, top=0.84, wspace=0.35)
    for ax, panel in zip(axes, panels):
        for i, line in enumerate(panel.lines):
            c = COLORS[i % len(COLORS)]
            fmt = "o-" if categories is None else "o"
            ax.plot(line.xs, line.mean, fmt, color=c, lw=1.8, ms=5, label=line.label)
            have = [(x, lo, hi) for x, lo, hi in zip(line.xs, line.lo, line.hi) if lo is not None and hi is not None]
            if have and categories is None:
                xs, lo, hi = zip(*have)
                ax.fill_between(xs, lo, hi, color=c, alpha=0.15, lw=0)
            elif have:
                for x, lo, hi in have:
                    ax.plot([x, x], [lo, hi], color=c, lw=1.5)
            if line.dots:
                ax.plot(*zip(*line.dots), ".", color=c, alpha=0.45, ms=5)
        values = [v for line in panel.lines for v in line.mean + [d[1] for d in line.dots]]
        if panel.log and values and min(values) > 0 and max(values) / min(values) > 10:   # else a log axis
            ax.set_yscale("log")                                                          # has no labels
            label_log_axis(ax.yaxis)
        if log_x:   # ticks at the swept values themselves
            xs = sorted({x for line in panel.lines for x in line.xs})
            ax.set_xscale("log")
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.xaxis.set_minor_locator(NullLocator())
        if categories is not None:
            ax.set_xticks(range(len(categories)), categories)
            ax.set_xlim(-0.5, len(categories) - 0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        set_title(ax, panel.title, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    suptitle(fig, title)
    return fig


def plot_numbers(panels: list[Panel], xlabel: str, title: str, out: Path, categories: list[str] | None = None,
                 log_x: bool = False) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(out) as tmp:
        _save(numbers_figure(panels, xlabel, title, categories, log_x), tmp)
    return out


def finite(values: list) -> list[float]:
    return [float(v) for v in values if v is not None and np.isfinite(float(v))]
