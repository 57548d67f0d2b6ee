"""Plots of a comparison (several runs overlaid or side by side), drawn from their folders on disk only."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # for whoever imports pyplot after this; these plots never need it
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

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
    set_margins,
    set_title,
    side_legend,
    suptitle,
)
from skipexp.views.plots import (  # noqa: E402
    PANELS,
    _matrix,
    _positive,
    _save,
    _short,
    _ticks,
    draw_chance,
    heatmap,
    heatmap_legend,
    layer_keys,
    mark_zeros,
    num_classes,
    set_loss_axis,
    zero_handle,
)
from skipexp.views.style import OKABE_ITO, formats_of, save  # noqa: E402

COLORS = OKABE_ITO   # colour-blind safe (skipexp.views.style)


def _label(name: str, meta: dict) -> str:
    status = meta.get("status", "?")
    return name if status == "completed" else f"{name} ({status})"


def _seeds(runs: list) -> list[tuple[str, list[Path]]]:
    return [(name, [d] if isinstance(d, Path) else list(d)) for name, d in runs]


def _member_label(name: str, dirs: list[Path]) -> str:
    """``name`` as today for one seed; ``name (mean of n seeds)`` and the odd statuses for several."""
    if len(dirs) == 1:
        return _label(name, files.meta_or_empty(dirs[0]))
    odd = sorted({files.meta_or_empty(d).get("status", "?") for d in dirs} - {"completed"})
    return f"{name} (mean of {len(dirs)} seeds{'; ' + ', '.join(odd) if odd else ''})"


def _band(curves: list[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, min, max) over curves cut to their common length (an interrupted seed is shorter)."""
    n = min(len(x) for x, _ in curves)
    ys = np.array([list(y)[:n] for _, y in curves], dtype=float)
    with np.errstate(all="ignore"):
        return np.asarray(list(curves[0][0])[:n], float), ys.mean(0), ys.min(0), ys.max(0)


def _draw(ax: Any, curves: list[tuple[Any, Any]], fmt: str, c: Any, positive: bool = False,
          scale: float = 1.0, **kw: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """One seed: the curve as is. Several: their mean, with the min-max band shaded in the same colour.
    ``scale`` multiplies what is drawn (100: accuracy in %). Returns the (x, y) drawn, before a log axis
    drops its zeros."""
    if not curves:
        return None
    x, mean, lo, hi = _band(curves)
    f = _positive if positive else (lambda a: a * scale)
    ax.plot(x, f(mean), fmt, color=c, **kw)
    if len(curves) > 1:
        ax.fill_between(x, f(lo), f(hi), color=c, alpha=0.18, lw=0)
    return x, mean


def plot_compare(runs: list, out: Path) -> list[Path]:
    """Overlaid plots of a comparison; ``runs`` pairs each member with its run folder, or its seeds' folders.
    Each figure in the formats the first member's config asks for (``log.plot_formats``)."""
    runs = _seeds(runs)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "loss.png", out / "grad_norms.png", out / "grad_heatmap.png"]
    formats = formats_of(runs[0][1][0]) if runs else ["png"]
    for figure, path in zip((loss_figure, grad_profile_figure, heatmaps_figure), paths):
        save(figure(runs), path, formats)
    return paths


def style_handle(label: str, **kw: Any) -> Line2D:
    """A legend entry for a line style, in grey: the colours are the members'."""
    return Line2D([], [], color="dimgrey", label=label, **kw)


def compare_loss(runs: list, out: Path) -> None:
    _save(loss_figure(runs), out)


def loss_figure(runs: list) -> Figure:
    """Every member's train loss, smoothed (solid) over each logged batch (faint), and test loss (dashed,
    dots) on one axes; accuracy beside. A member with several seeds is drawn as the mean over its seeds
    with the min-max band shaded."""
    runs = _seeds(runs)
    fig = new_figure(11, 5.0)
    ax_l, ax_a = fig.subplots(1, 2)
    multi = any(len(dirs) > 1 for _, dirs in runs)
    members = []
    for i, (name, dirs) in enumerate(runs):
        c = COLORS[i % len(COLORS)]
        members.append(Line2D([], [], color=c, lw=2, label=_member_label(name, dirs)))
        raw_l, raw_a, train_l, train_a, test_l, test_a = [], [], [], [], [], []
        for run_dir in dirs:
            m, e = runio.read_csv(run_dir / files.METRICS), runio.read_csv(run_dir / files.EVAL)
            if m:
                steps = [r["step"] for r in m]
                losses, accs = [r["train_loss"] for r in m], [r["train_acc"] for r in m]
                raw_l.append((steps, losses))
                raw_a.append((steps, accs))
                train_l.append((steps, smooth(losses)))
                train_a.append((steps, smooth(accs)))
            if e:
                es = [r["step"] for r in e]
                test_l.append((es, [r["test_loss"] for r in e]))
                test_a.append((es, [r["test_acc"] for r in e]))
        for ax, raw, train, test, pos in ((ax_l, raw_l, train_l, test_l, True), (ax_a, raw_a, train_a, test_a, False)):
            if raw:  # faint, without the band: it is there to show what the smoothing hides
                x, mean, _, _ = _band(raw)
                ax.plot(x, _positive(mean) if pos else 100 * mean, "-", color=c, alpha=0.22, lw=0.8)
            _draw(ax, train, "-", c, positive=pos, scale=100.0, lw=2)
            _draw(ax, test, "o--", c, positive=pos, scale=100.0, ms=3.5, lw=1.2)
        for run_dir in dirs:
            meta = files.meta_or_empty(run_dir)
            if meta.get("diverged_at_step") is not None:
                for ax in (ax_l, ax_a):
                    ax.axvline(meta["diverged_at_step"], color=c, ls=":", lw=1.2)
    k = _classes(runs)
    if k:
        draw_chance(ax_l, ax_a, k)
    set_loss_axis(ax_l, [float(y) for ln in ax_l.get_lines() for y in ln.get_ydata()])
    set_title(ax_l, "loss")
    ax_a.set_ylim(0, 102)
    ax_a.set_ylabel("accuracy (%)")
    set_title(ax_a, "accuracy")
    for ax in (ax_l, ax_a):
        ax.set_xlabel("step (optimizer updates)")
        ax.grid(alpha=0.3, which="both")
    styles = [style_handle("train, smoothed", lw=2), style_handle("train, each logged batch", lw=0.8, alpha=0.4),
              style_handle("test", ls="--", marker="o", ms=3.5, lw=1.2)]
    if any(files.meta_or_empty(d).get("diverged_at_step") is not None for _, dirs in runs for d in dirs):
        styles.append(style_handle("diverged at step", ls=":", lw=1.2))
    if multi:
        styles.append(style_handle("band: min-max over seeds", lw=6, alpha=0.25))
    legend = figure_legend(fig, [ax_l, ax_a], members + styles, ncol=4, extra_first=True)
    suptitle(fig, "same data, same batches: which one trains?")
    set_margins(fig, 2, left=EDGE + label_room(ax_l.yaxis), right=EDGE + 0.1, top=TITLES,
                bottom=EDGE + label_room(ax_l.xaxis) + legend_height(legend, 4), gap=0.3 + label_room(ax_a.yaxis))
    return fig


def _classes(runs: list) -> int | None:
    """The members' number of classes when they all share one (read from their config.yaml)."""
    found = {num_classes(dirs[0]) for _, dirs in _seeds(runs)}
    return found.pop() if len(found) == 1 and None not in found else None


def compare_grad_profile(runs: list, out: Path) -> None:
    _save(grad_profile_figure(runs), out)


def grad_profile_figure(runs: list) -> Figure:
    """Gradient norm against depth, per member, at the first logged step (dashed) and the last (solid).

    Members with different layers (plain, skip, gated) share one axis of what each layer is
    (:func:`plots.layer_keys`): a plain net's head sits above the gated net's head, not at its 18th column.
    A member with several seeds is drawn as the mean over its seeds with the min-max band shaded.
    """
    runs = _seeds(runs)
    multi = any(len(dirs) > 1 for _, dirs in runs)
    fig = new_figure(13, 5.0)
    axes = fig.subplots(1, 2)
    zeros, first_steps, members = False, set(), []
    for ax, (fname, title, xlabel) in zip(axes, PANELS):
        per_member = [(name, dirs, [m for m in (runio.read_csv(d / fname) for d in dirs) if m]) for name, dirs in runs]
        keys = {k for _, _, got in per_member for rows in got[:1] for k in layer_keys(_matrix(rows)[1])}
        order = sorted(keys)
        pos = {k: i for i, k in enumerate(order)}
        for i, (name, dirs, got) in enumerate(per_member):
            if not got:
                continue
            firsts, lasts, last_steps = [], [], []
            for rows in got:
                steps, cols, mat = _matrix(rows)
                x = [pos[k] for k in layer_keys(cols)]
                firsts.append((x, mat[0]))
                lasts.append((x, mat[-1]))
                first_steps.add(int(steps[0]))
                last_steps.append(int(steps[-1]))
            c = COLORS[i % len(COLORS)]
            # seeds may stop at different steps (one interrupted): say which when they do
            last = str(last_steps[0]) if len(set(last_steps)) == 1 else f"{min(last_steps)}-{max(last_steps)}"
            if ax is axes[0]:
                members.append(Line2D([], [], color=c, lw=2.2, label=f"{_member_label(name, dirs)}: last step {last}"))
            for curves, fmt, kw in ((firsts, "--", dict(lw=1.3, alpha=0.8)), (lasts, "-", dict(lw=2.2))):
                drawn = _draw(ax, curves, fmt, c, positive=True, **kw)
                zeros |= drawn is not None and mark_zeros(ax, *drawn, c)
        ax.set_yscale("log")
        label_log_axis(ax.yaxis)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("gradient L2 norm (log scale)")
        set_title(ax, title, fontsize=10)
        if order:
            ticks = _ticks(len(order))
            ax.set_xticks(ticks)
            ax.set_xticklabels([_short(order[t][-1]) for t in ticks], rotation=45, ha="right", fontsize=7)
        ax.grid(alpha=0.3, which="both")
    first = ", ".join(map(str, sorted(first_steps)))
    styles = [style_handle(f"first logged step ({first})", ls="--", lw=1.3), style_handle("last logged step", lw=2.2)]
    if multi:
        styles.append(style_handle("band: min-max over seeds", lw=6, alpha=0.25))
    if zeros:
        styles.append(zero_handle())
    # beside the panels, where it hides no line: the members' labels are long, and a row below would be many
    right = side_legend(fig, members + styles)
    set_margins(fig, 2, left=EDGE + label_room(axes[0].yaxis), right=right + 0.15, top=TITLES,
                bottom=EDGE + max(label_room(ax.xaxis, 7, 45) for ax in axes), gap=0.3 + label_room(axes[1].yaxis))
    # over the panels, not the figure: centred on the page, a long title would run into the legend
    suptitle(fig, "gradient norm against depth: a line falling towards the input is a vanishing gradient",
             x=(fig.subplotpars.left + fig.subplotpars.right) / 2)
    return fig


def _log_mean(stack: np.ndarray) -> np.ndarray:
    """10 ** the mean over seeds (axis 0) of log10 norm: a seed's exact 0 is left out (0 where every seed's
    is), a non-finite norm makes the cell non-finite (a diverged seed is not averaged away)."""
    zero = stack == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(np.isfinite(stack) & (stack > 0), np.log10(np.abs(stack)), np.nan)
    mean = 10 ** np.ma.array(logs, mask=zero).mean(axis=0).filled(np.nan)
    mean[zero.all(axis=0)] = 0.0
    return mean


def compare_heatmaps(runs: list, out: Path) -> None:
    _save(heatmaps_figure(runs), out)


def heatmaps_figure(runs: list) -> Figure:
    """Layer x step heatmaps of log10 gradient norm, members side by side, on one absolute colour scale
    (:data:`plots.GRAD_LOG10_RANGE`, the one a single run's heatmap uses).

    A member with several seeds shows the mean over its seeds of log10 norm (its first seed alone where
    the seeds logged different steps, e.g. one interrupted); a cell is exactly 0 where every seed's is.
    """
    runs = _seeds(runs)
    kinds = [(files.GRAD_NORMS, "weight gradients"), (files.ACT_GRAD_NORMS, "activation gradients")]
    data: dict[tuple[int, int], tuple] = {}
    for r, (fname, _) in enumerate(kinds):
        for c, (_, dirs) in enumerate(runs):
            got = [_matrix(rows) for rows in (runio.read_csv(d / fname) for d in dirs) if rows]
            if got:
                steps, cols, _ = got[0]
                same = [g for g in got if g[2].shape == got[0][2].shape]
                stack = np.array([g[2] for g in (same if len(same) == len(got) else got[:1])])
                data[r, c] = (steps, cols, _log_mean(stack), len(stack))
    n = max(1, len(runs))
    fig = new_figure(4.6 * n + 1.2, 8.6)
    axes = fig.subplots(2, n, squeeze=False)
    zeros = nonfinite = False
    bars = []  # (row, colour bar): placed beside the row once the margins are known
    for r, (_, title) in enumerate(kinds):
        im = None
        for c, (name, dirs) in enumerate(runs):
            ax = axes[r, c]
            if (r, c) not in data:
                set_title(ax, f"{name}: no data")
                ax.axis("off")
                continue
            steps, cols, mat, n_seeds = data[r, c]
            im, z, nf = heatmap(ax, steps, cols, mat, (steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(cols) - 0.5))
            zeros, nonfinite = zeros or z, nonfinite or nf
            if c == 0:
                ax.set_ylabel("layer (bottom = input)" if r == 0 else "boundary h_i (bottom = h0)")
            label = _member_label(name, dirs) if n_seeds > 1 else _label(name, files.meta_or_empty(dirs[0]))
            set_title(ax, f"{label}: {title}", fontsize=10)
        if im is not None:
            bars.append((r, fig.colorbar(im, cax=fig.add_axes((0, 0, 1, 1)), label="log10 L2 norm (absolute scale)",
                                         extend="both")))
    legend = heatmap_legend(fig, zeros, nonfinite)
    suptitle(fig, "where the gradient lives (layer × step); dark = vanished")
    drawn = [ax for ax in axes.flat if ax.axison]
    ytick = max([label_room(ax.yaxis, 7) for ax in drawn if ax in axes[:, 0]] + [0.0])  # with its axis label
    inner = max([label_room(ax.yaxis, 7) for ax in drawn if ax not in axes[:, 0]] + [0.0])
    xtick = max([label_room(ax.xaxis) for ax in drawn] + [0.0])
    bar = BAR_PAD + BAR_WIDTH + max([label_room(b.ax.yaxis) for _, b in bars] + [0.0])
    # between the rows: the upper row's tick labels and axis label, then the lower row's titles (10 pt)
    set_margins(fig, n, left=EDGE + ytick, right=EDGE + bar, top=TITLES, bottom=EDGE + xtick + legend_height(legend, 2),
                gap=0.3 + inner, rows=2, row_gap=xtick + 0.35)
    width = fig.get_size_inches()[0]
    for r, b in bars:
        pos = axes[r, -1].get_position()
        b.ax.set_position((pos.x1 + BAR_PAD / width, pos.y0, BAR_WIDTH / width, pos.height))
    return fig
