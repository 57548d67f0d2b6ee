"""Line charts as inline SVG for the HTML report, drawn without matplotlib (a report costs milliseconds).

A :class:`Chart` becomes a ``<figure>``: the SVG, a legend, a caption that says how to read it, and the
hoverable series as JSON for the page's script (values under the pointer; see :mod:`.assets`). Every
series carries toggle keys (``member=plain``, ``depth=8``): the page's chips hide every element whose
keys include one switched off. Colours are classes ``c0`` ... ``c9`` whose shades the stylesheet sets
for light and dark.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from skipexp.views.ticks import log_label, log_ticks

COLOURS = 10           # palette classes c0..c9; series beyond cycle with a dash pattern
W, H = 560, 300        # the viewBox; the SVG scales to its column
LEFT, RIGHT, TOP, BOTTOM = 62, 14, 14, 44


@dataclass
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    keys: tuple[str, ...] = ()         # toggle keys: hidden when any is off
    colour: int = 0
    style: str = "line"                # line | dots | faint (each raw value, thin and pale) | markers (line + dots)
    dash: bool = False
    lo: Sequence[float] | None = None  # a band from lo to hi at each x (seeds' min - max)
    hi: Sequence[float] | None = None
    hover: bool = True                 # listed under the pointer


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    series: list[Series]
    caption: str = ""
    x_log: bool = False
    y_log: bool = False
    y_pct: bool = False                  # values are fractions, shown as percentages
    categories: list[str] | None = None  # x is 0..k-1 with these labels (layers, kinds)
    rules: list[tuple[float, str]] = field(default_factory=list)  # horizontal dotted lines (chance)
    y_range: tuple[float, float] | None = None
    legend: list[tuple] | None = None  # (label, colour, style, dash[, toggle keys]); default: the series'
    ident: str = ""


def _finite(v: float | None, log: bool) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 or not log)


def _nice_step(span: float, most: int = 6) -> float:
    raw = span / most
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def linear_ticks(lo: float, hi: float, most: int = 6) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    step = _nice_step(hi - lo, most)
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, 12) for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def short_number(v: float, pct: bool = False) -> str:
    if pct:
        return f"{v * 100:.0f}%" if abs(v * 100 - round(v * 100)) < 1e-9 else f"{v * 100:.1f}%"
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.0e}"


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool) -> None:
        self.log, self.a, self.b = log, a, b
        self.t0, self.t1 = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
        if self.t1 == self.t0:
            self.t0, self.t1 = self.t0 - 0.5, self.t1 + 0.5

    def __call__(self, v: float) -> float:
        t = math.log10(v) if self.log else v
        return self.a + (t - self.t0) / (self.t1 - self.t0) * (self.b - self.a)


def _range(values: list[float], log: bool, pad: float = 0.04) -> tuple[float, float]:
    if not values:
        return (0.1, 1.0) if log else (0.0, 1.0)
    lo, hi = min(values), max(values)
    if log:
        if hi / lo < 1.0001:
            return lo / 1.5, hi * 1.5
        f = (hi / lo) ** pad
        return lo / f, hi * f
    if hi == lo:
        return lo - (abs(lo) or 1) * 0.1, hi + (abs(hi) or 1) * 0.1
    d = (hi - lo) * pad
    return lo - d, hi + d


def _path(points: list[tuple[float, float] | None]) -> str:
    """An SVG path through the points, broken where a point is None (a value a scale cannot draw)."""
    out, pen = [], "M"
    for p in points:
        if p is None:
            pen = "M"
            continue
        out.append(f"{pen}{p[0]:.1f},{p[1]:.1f}")
        pen = "L"
    return "".join(out)


def _num(v: float | None) -> float | None:
    """A value for the hover JSON: six significant digits is all a tooltip shows."""
    return float(f"{v:.6g}") if v is not None and isinstance(v, (int, float)) and math.isfinite(v) else None


def colour_class(colour: int) -> str:
    """``c0`` ... ``c9``, or ``cn`` (the text colour) for a negative index: a legend entry for a line style."""
    return "cn" if colour < 0 else f"c{colour % COLOURS}"


def _dashed(colour: int, dash: bool) -> bool:
    """Colours repeat after :data:`COLOURS` series; the second round is dashed so that no two look alike."""
    return dash or (colour >= 0 and (colour // COLOURS) % 2 == 1)


def _keys(s: Series) -> str:
    return escape(" ".join(s.keys))


def render(chart: Chart) -> str:
    """The chart as a ``<figure>``: SVG, legend, caption and its hover data."""
    xs_all = [x for s in chart.series for x in s.xs if _finite(x, chart.x_log)]
    ys_all = [y for s in chart.series for y in (*s.ys, *(s.lo or ()), *(s.hi or ())) if _finite(y, chart.y_log)]
    ys_all += [y for y, _ in chart.rules if _finite(y, chart.y_log)]
    bottom = BOTTOM + (26 if chart.categories and max(map(len, chart.categories), default=0) > 4 else 0)
    if chart.categories is not None:
        x_lo, x_hi = -0.5, len(chart.categories) - 0.5
    else:
        x_lo, x_hi = _range(xs_all, chart.x_log, 0.02)
        if not chart.x_log and xs_all and min(xs_all) >= 0 and x_lo < 0:
            x_lo = 0.0
    y_lo, y_hi = chart.y_range or _range(ys_all, chart.y_log)
    sx = _Scale(x_lo, x_hi, LEFT, W - RIGHT, chart.x_log)
    sy = _Scale(y_lo, y_hi, H - bottom, TOP, chart.y_log)
    height = H + bottom - BOTTOM
    parts = [f'<svg viewBox="0 0 {W} {height}" role="img" aria-label="{escape(chart.title)}" '
             f'xmlns="http://www.w3.org/2000/svg">']
    parts.append(_axes(chart, sx, sy, (x_lo, x_hi), (y_lo, y_hi), bottom))
    parts.append(f'<clipPath id="clip-{chart.ident}"><rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" '
                 f'height="{H - bottom - TOP}"/></clipPath><g clip-path="url(#clip-{chart.ident})">')
    for y, label in chart.rules:
        if _finite(y, chart.y_log) and y_lo <= y <= y_hi:
            parts.append(f'<line class="rule" x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}">'
                         f'<title>{escape(label)}</title></line>')
    for s in chart.series:
        parts.append(_series(s, sx, sy, chart))
    parts.append(f'</g><line class="guide" y1="{TOP}" y2="{H - bottom}" x1="0" x2="0" visibility="hidden"/></svg>')
    hover = {"x0": x_lo, "x1": x_hi, "xlog": chart.x_log, "px0": LEFT, "px1": W - RIGHT, "ypct": chart.y_pct,
             "cats": chart.categories, "xlabel": chart.x_label,
             "series": [{"label": s.label, "keys": list(s.keys), "c": colour_class(s.colour),
                         "x": [_num(x) for x in s.xs], "y": [_num(y) for y in s.ys],
                         **({"lo": [_num(v) for v in s.lo], "hi": [_num(v) for v in s.hi]} if s.lo and s.hi else {})}
                        for s in chart.series if s.hover]}
    data = json.dumps(hover, separators=(",", ":")).replace("<", "\\u003c")
    return (f'<figure class="chart" id="{escape(chart.ident)}"><div class="chart-title">{escape(chart.title)}</div>'
            f'<div class="plot">{"".join(parts)}<div class="tip" hidden></div></div>{_legend(chart)}'
            f'<figcaption>{chart.caption}</figcaption>'
            f'<script type="application/json" class="chart-data">{data}</script></figure>')


def _axes(chart: Chart, sx: _Scale, sy: _Scale, xr: tuple[float, float], yr: tuple[float, float],
          bottom: int) -> str:
    out = [f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - bottom - TOP}"/>']
    y_ticks = log_ticks(*yr) if chart.y_log else linear_ticks(*yr)
    for t in y_ticks:
        y = sy(t)
        label = log_label(t) if chart.y_log else short_number(t, chart.y_pct)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="tick" x="{LEFT - 5}" y="{y + 3.5:.1f}" text-anchor="end">{escape(label)}</text>')
    if chart.categories is not None:
        cats = chart.categories
        every = max(1, math.ceil(len(cats) / 14))
        rotate = max(map(len, cats), default=0) > 4
        for i in range(0, len(cats), every):
            x = sx(i)
            anchor = f'text-anchor="end" transform="rotate(-40 {x:.1f} {H - bottom + 14})"' if rotate \
                else 'text-anchor="middle"'
            out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{H - bottom}"/>'
                       f'<text class="tick" x="{x:.1f}" y="{H - bottom + 14}" {anchor}>{escape(cats[i])}</text>')
    else:
        x_ticks = log_ticks(*xr) if chart.x_log else linear_ticks(*xr)
        for t in x_ticks:
            x = sx(t)
            label = log_label(t) if chart.x_log else short_number(t)
            out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{H - bottom}"/>'
                       f'<text class="tick" x="{x:.1f}" y="{H - bottom + 14}" text-anchor="middle">'
                       f'{escape(label)}</text>')
    out.append(f'<text class="label" x="{(LEFT + W - RIGHT) / 2:.0f}" y="{H + bottom - BOTTOM - 6}" '
               f'text-anchor="middle">{escape(chart.x_label)}</text>')
    out.append(f'<text class="label" transform="rotate(-90)" x="{-(TOP + H - bottom) / 2:.0f}" y="13" '
               f'text-anchor="middle">{escape(chart.y_label)}</text>')
    return "".join(out)


def _series(s: Series, sx: _Scale, sy: _Scale, chart: Chart) -> str:
    cls = colour_class(s.colour)
    dash = _dashed(s.colour, s.dash)
    pts = [(sx(x), sy(y)) if _finite(x, chart.x_log) and _finite(y, chart.y_log) else None
           for x, y in zip(s.xs, s.ys)]
    out = [f'<g class="series {cls}" data-keys="{_keys(s)}" data-label="{escape(s.label)}">']
    if s.lo is not None and s.hi is not None and chart.categories is not None:   # categories: a bar each, no band
        out.append('<path class="line" d="' + "".join(
            f"M{sx(x):.1f},{sy(lo):.1f}L{sx(x):.1f},{sy(h):.1f}" for x, lo, h in zip(s.xs, s.lo, s.hi)
            if _finite(x, False) and _finite(lo, chart.y_log) and _finite(h, chart.y_log)) + '"/>')
    elif s.lo is not None and s.hi is not None:
        upper = [(sx(x), sy(h)) for x, h, lo in zip(s.xs, s.hi, s.lo)
                 if _finite(x, chart.x_log) and _finite(h, chart.y_log) and _finite(lo, chart.y_log)]
        lower = [(sx(x), sy(lo)) for x, h, lo in zip(s.xs, s.hi, s.lo)
                 if _finite(x, chart.x_log) and _finite(h, chart.y_log) and _finite(lo, chart.y_log)]
        if upper:
            out.append(f'<path class="band" d="{_path(upper + lower[::-1])}Z"/>')
    if s.style in ("line", "faint", "markers"):
        out.append(f'<path class="{"faint" if s.style == "faint" else "line"}{" dash" if dash else ""}" '
                   f'd="{_path(pts)}"/>')
    if s.style in ("dots", "markers"):
        out.append("".join(f'<circle class="dot" cx="{p[0]:.1f}" cy="{p[1]:.1f}" r="2.6"/>' for p in pts if p))
    out.append("</g>")
    return "".join(out)


def _legend(chart: Chart) -> str:
    items = chart.legend if chart.legend is not None else \
        list(dict.fromkeys((s.label, s.colour, s.style, s.dash) for s in chart.series if s.style != "faint"))
    if not items:
        return ""
    out = []
    for label, colour, style, dash, *keys in items:
        dash = _dashed(colour, dash)
        keys_attr = f' data-keys="{escape(" ".join(keys[0]))}"' if keys and keys[0] else ""
        mark = ('<circle cx="11" cy="5" r="2.6" class="dot"/>' if style in ("dots", "markers") else "")
        line = "" if style == "dots" else f'<line x1="1" x2="21" y1="5" y2="5" class="line{" dash" if dash else ""}"/>'
        swatch = f'<svg class="{colour_class(colour)}" width="22" height="10">{line}{mark}</svg>'
        out.append(f'<span class="key"{keys_attr}>{swatch}{escape(label)}</span>')
    return f'<div class="legend">{"".join(out)}</div>'
