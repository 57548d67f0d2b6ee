"""Figures drawn straight by Agg, laid out without a layout engine.

Figures here have fixed sizes, so their margins are set in inches from what they hold: the widest tick
label is measured from its text, without drawing. A layout engine would draw every figure twice and measure
every text on the way, which costs about as much again as drawing it.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from skipexp.views.ticks import SUPERSCRIPT, log_label, log_ticks  # noqa: F401  (their home before ticks.py)

DPI = 150   # print quality; skipexp.views.style saves every figure at it

EDGE = 0.08            # free border around a figure
TICK = 7 / 72          # a tick (3.5 pt) and the gap to its label (3.5 pt)
LABEL = 0.22           # an axis label in 10 pt with its pad
TITLES = 0.6           # a suptitle (11 pt) over axes titles (12 pt)
LEGEND_ROW = 0.17      # a row of a legend in 8 pt
BAR_PAD, BAR_WIDTH = 0.15, 0.2  # a colour bar beside its panel


def new_figure(width: float, height: float) -> Figure:
    """A figure drawn straight by Agg: no pyplot, which would keep it until closed."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


@lru_cache(maxsize=1024)
def text_size(text: str, size: float) -> tuple[float, float]:
    """(width, height) in inches of ``text`` in the default font at ``size`` points, measured without drawing."""
    w, h, _ = text_to_path.get_text_width_height_descent(text, FontProperties(size=size), ismath=text.count("$") >= 2)
    return w / 72, h / 72


def tick_labels(axis: Any) -> list[str]:
    """The major tick labels an axis will draw with its present limits, locator and formatter."""
    lo, hi = sorted(axis.get_view_interval())
    span = (hi - lo) * 1e-9
    locs = [v for v in axis.get_majorticklocs() if lo - span <= v <= hi + span]
    return [t for t in axis.get_major_formatter().format_ticks(locs) if t]


def label_room(axis: Any, size: float = 10, rotation: float = 0) -> float:
    """Inches beside the axes taken by an axis's ticks, tick labels and label (in the direction away from it)."""
    sizes = [text_size(t, size) for t in set(tick_labels(axis))] or [(0.0, 0.0)]
    if axis.axis_name == "y":
        extent = max(w for w, _ in sizes)
    else:
        r = math.radians(rotation)
        extent = max(w * math.sin(r) + h * math.cos(r) for w, h in sizes)
    return TICK + extent + (LABEL if axis.get_label_text() else 0.0)


def set_margins(fig: Figure, n: int, *, left: float, right: float, bottom: float, top: float, gap: float,
                rows: int = 1, row_gap: float = 0.0) -> None:
    """Place ``rows`` rows of ``n`` equal subplots by their margins and the gaps between them, in inches."""
    width, height = fig.get_size_inches()
    axes_width = (width - left - right - gap * (n - 1)) / n
    axes_height = (height - top - bottom - row_gap * (rows - 1)) / rows
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=gap / axes_width, hspace=row_gap / axes_height)


def set_title(ax: Any, text: str, **kw: Any) -> None:
    """An axes title right above it: these axes have nothing on top to dodge, and a title placed by
    matplotlib would measure all their tick labels to find that out."""
    ax.set_title(text, y=1.0, **kw)


def suptitle(fig: Figure, text: str, x: float = 0.5) -> None:
    """The figure's title, a fixed distance below its top edge, centred at ``x`` (a fraction of the width)."""
    fig.suptitle(text, fontsize=11, x=x, y=1 - EDGE / fig.get_size_inches()[1], va="top")


def figure_legend(fig: Figure, axes: list, extra: list | None = None, ncol: int = 4, extra_first: bool = False,
                  **kw: Any) -> Any:
    """One legend for the figure, below the axes so it covers no curve: the axes' labelled lines and
    ``extra`` handles, deduplicated by label."""
    seen: dict[str, Any] = {}
    found = [h for ax in axes for h, _ in zip(*ax.get_legend_handles_labels())]
    for h in (extra or []) + found if extra_first else found + (extra or []):
        seen.setdefault(h.get_label(), h)
    if not seen:
        return None
    # "outside": a layout engine makes room for it; without one it sits at the figure's lower edge
    return fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=min(ncol, len(seen)),
                      fontsize=8, frameon=False, **kw)


def side_legend(fig: Figure, handles: list, title: str | None = None) -> float:
    """A framed legend in 8 pt in the figure's top right corner, beside the axes so it hides no line; returns
    the inches it takes from the right edge, border included (the axes' right margin, less their own room)."""
    width, height = fig.get_size_inches()
    fig.legend(handles=handles, fontsize=8, title=title, title_fontsize=8, loc="upper right",
               bbox_to_anchor=(1 - EDGE / width, 1 - EDGE / height))
    # a legend's frame holds its title, or its handles (2 em) and gaps (0.8 em) beside their labels,
    # within pads (2 em in all)
    em = 8 / 72
    return EDGE + max([text_size(title, 8)[0] if title else 0.0] +
                      [2.8 * em + text_size(h.get_label(), 8)[0] for h in handles]) + 2 * em


def legend_height(legend: Any, ncol: int) -> float:
    """Inches a legend in 8 pt with up to ``ncol`` columns takes below the axes (0 for none)."""
    if legend is None:
        return 0.0
    rows = math.ceil(len(legend.get_texts()) / ncol)
    return 0.1 + rows * LEGEND_ROW


# --- log axes --------------------------------------------------------------------------------------

def set_log_ticks(ax: Any, axis: str, lo: float, hi: float) -> None:
    """Readable labels on a log axis: plain numbers (0.2, 1, 2) at :func:`log_ticks`, no minor labels."""
    ticks = log_ticks(lo, hi)
    if not ticks:
        return
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_locator(NullLocator())


def label_log_axis(axis: Any) -> None:
    """Major ticks of a log axis at :func:`log_ticks` over its present limits, labelled by :func:`log_label`;
    the minor ticks (and their grid lines) stay, unlabelled."""
    ticks = log_ticks(*sorted(axis.get_view_interval()))
    if ticks:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(log_label))
        axis.set_minor_formatter(NullFormatter())
