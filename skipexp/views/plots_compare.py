"""Plots over several runs (a comparison, a sweep), drawn from their folders on disk only."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from skipexp.core.fmt import short_key  # noqa: E402
from skipexp.core.fmt import value as format_value  # noqa: E402
from skipexp.rundir import files, runio  # noqa: E402
from skipexp.rundir.summary import smooth  # noqa: E402
from skipexp.views.plots import (  # noqa: E402
    CHANCE,
    PANELS,
    STEP_CMAP,
    _matrix,
    _positive,
    _save,
    _short,
    _ticks,
    draw_chance,
    figure_legend,
    heatmap,
    heatmap_legend,
    layer_keys,
    mark_zeros,
    num_classes,
    set_log_ticks,
    set_loss_axis,
    zero_handle,
)

COLORS = plt.get_cmap("tab10").colors


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
          **kw: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """One seed: the curve as is. Several: their mean, with the min-max band shaded in the same colour.
    Returns the (x, y) drawn, before a log axis drops its zeros."""
    if not curves:
        return None
    x, mean, lo, hi = _band(curves)
    f = _positive if positive else (lambda a: a)
    ax.plot(x, f(mean), fmt, color=c, **kw)
    if len(curves) > 1:
        ax.fill_between(x, f(lo), f(hi), color=c, alpha=0.18, lw=0)
    return x, mean


def plot_compare(runs: list, out: Path) -> list[Path]:
    """Overlaid plots of a comparison; ``runs`` pairs each member with its run folder, or its seeds' folders."""
    runs = _seeds(runs)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "loss.png", out / "grad_norms.png", out / "grad_heatmap.png"]
    compare_loss(runs, paths[0])
    compare_grad_profile(runs, paths[1])
    compare_heatmaps(runs, paths[2])
    return paths


def _style(label: str, **kw: Any) -> Line2D:
    """A legend entry for a line style, in grey: the colours are the members'."""
    return Line2D([], [], color="dimgrey", label=label, **kw)


def compare_loss(runs: list, out: Path) -> None:
    _save(loss_figure(runs), out)


def loss_figure(runs: list) -> Figure:
    """Every member's train loss, smoothed (solid) over each logged batch (faint), and test loss (dashed,
    dots) on one axes; accuracy beside. A member with several seeds is drawn as the mean over its seeds
    with the min-max band shaded."""
    runs = _seeds(runs)
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 5.0), layout="constrained")
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
                ax.plot(x, _positive(mean) if pos else mean, "-", color=c, alpha=0.22, lw=0.8)
            _draw(ax, train, "-", c, positive=pos, lw=2)
            _draw(ax, test, "o--", c, positive=pos, ms=3.5, lw=1.2)
        for run_dir in dirs:
            meta = files.meta_or_empty(run_dir)
            if meta.get("diverged_at_step") is not None:
                for ax in (ax_l, ax_a):
                    ax.axvline(meta["diverged_at_step"], color=c, ls=":", lw=1.2)
    k = _classes(runs)
    if k:
        draw_chance(ax_l, ax_a, k)
    set_loss_axis(ax_l, [float(y) for ln in ax_l.get_lines() for y in ln.get_ydata()])
    ax_l.set_title("loss")
    ax_a.set_ylim(0, 1.02)
    ax_a.set_ylabel("accuracy")
    ax_a.set_title("accuracy")
    for ax in (ax_l, ax_a):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
    styles = [_style("train, smoothed", lw=2), _style("train, each logged batch", lw=0.8, alpha=0.4),
              _style("test", ls="--", marker="o", ms=3.5, lw=1.2)]
    if any(files.meta_or_empty(d).get("diverged_at_step") is not None for _, dirs in runs for d in dirs):
        styles.append(_style("diverged at step", ls=":", lw=1.2))
    if multi:
        styles.append(_style("band: min-max over seeds", lw=6, alpha=0.25))
    figure_legend(fig, [ax_l, ax_a], members + styles, ncol=4, extra_first=True)
    fig.suptitle("same data, same batches: which one trains?", fontsize=11)
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
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.0), layout="constrained")
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
        ax.set_xlabel(xlabel)
        ax.set_ylabel("L2 norm (log scale)")
        ax.set_title(title, fontsize=10)
        if order:
            ticks = _ticks(len(order))
            ax.set_xticks(ticks)
            ax.set_xticklabels([_short(order[t][-1]) for t in ticks], rotation=45, ha="right", fontsize=7)
        ax.grid(alpha=0.3, which="both")
    first = ", ".join(map(str, sorted(first_steps)))
    styles = [_style(f"first logged step ({first})", ls="--", lw=1.3), _style("last logged step", lw=2.2)]
    if multi:
        styles.append(_style("band: min-max over seeds", lw=6, alpha=0.25))
    if zeros:
        styles.append(zero_handle())
    fig.legend(handles=members + styles, fontsize=8, loc="outside right upper")
    fig.suptitle("gradient norm against depth: a line falling towards the input is a vanishing gradient",
                 fontsize=11)
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
    fig, axes = plt.subplots(2, n, figsize=(4.6 * n + 1.2, 8.6), squeeze=False, layout="constrained")
    zeros = nonfinite = False
    for r, (_, title) in enumerate(kinds):
        im = None
        for c, (name, dirs) in enumerate(runs):
            ax = axes[r, c]
            if (r, c) not in data:
                ax.set_title(f"{name}: no data")
                ax.axis("off")
                continue
            steps, cols, mat, n_seeds = data[r, c]
            im, z, nf = heatmap(ax, steps, cols, mat, (steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(cols) - 0.5))
            zeros, nonfinite = zeros or z, nonfinite or nf
            if c == 0:
                ax.set_ylabel("layer (bottom = input)" if r == 0 else "boundary h_i (bottom = h0)")
            label = _member_label(name, dirs) if n_seeds > 1 else _label(name, files.meta_or_empty(dirs[0]))
            ax.set_title(f"{label}: {title}", fontsize=10)
        if im is not None:
            fig.colorbar(im, ax=list(axes[r]), label="log10 L2 norm (absolute scale)", fraction=0.04,
                         extend="both")
    heatmap_legend(fig, zeros, nonfinite)
    fig.suptitle("where the gradient lives (layer × step); dark = vanished", fontsize=11)
    return fig


# --- sweeps --------------------------------------------------------------------------------------

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
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(12, 5.0), layout="constrained")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(format_value(r.get(k)) for k in line_keys), []).append(r)
    diverged: dict[Any, list[tuple[float, float]]] = {ax_l: [], ax_a: []}
    several_seeds, healthy_losses = False, []
    for gi, (gkey, members) in enumerate(groups.items()):
        c = COLORS[gi % len(COLORS)]
        label = ", ".join(f"{short_key(k)}={v}" for k, v in zip(line_keys, gkey)) or "all"
        for ax, field in ((ax_l, "final_train_loss"), (ax_a, "final_test_acc")):
            xs, means, lo, hi = [], [], [], []
            for v in xs_all:
                at = [r for r in members if format_value(r.get(xkey)) == format_value(v)
                      and r.get("status") not in ("missing", "not started")]
                x = pos[format_value(v)]
                diverged[ax] += [(x, _f(r.get(field))) for r in at if r.get("status") == "diverged"]
                vals = [y for y in (_f(r.get(field)) for r in at if r.get("status") != "diverged")
                        if math.isfinite(y)]
                if not vals:
                    continue
                if len(vals) > 1:  # each seed a dot; with one seed the dot would only repeat the line's
                    several_seeds = True
                    ax.plot([x] * len(vals), vals, ".", color=c, alpha=0.45, ms=5)
                xs.append(x)
                means.append(sum(vals) / len(vals))
                lo.append(min(vals))
                hi.append(max(vals))
                if ax is ax_l:
                    healthy_losses += vals
            if xs:
                ax.plot(xs, means, "o-", color=c, lw=2, ms=5, label=label)
                ax.fill_between(xs, lo, hi, color=c, alpha=0.15)
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
            ax.xaxis.set_minor_locator(plt.NullLocator())
        else:
            ax.set_xticks(range(len(xs_all)))
            ax.set_xticklabels([format_value(v) for v in xs_all], rotation=20)
    ax_a.set_ylim(0, 1.02)
    extra = []
    if any(diverged.values()):
        extra.append(Line2D([], [], **{**DIVERGED, "ms": 8}, label="diverged (loss: at the top)"))
    if several_seeds:
        extra.append(Line2D([], [], marker=".", color="grey", ls="none", label="one seed"))
    figure_legend(fig, [ax_l, ax_a], extra, ncol=5)
    ax_l.set_title("final train loss" + (": mean over seeds, band = min-max" if several_seeds else ""), fontsize=10)
    ax_a.set_title("final test accuracy", fontsize=10)
    fig.suptitle(f"{title}: against {short_key(xkey)}", fontsize=11)
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
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(12, 5.2), layout="constrained")
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
    ax_l.set_title("train loss (smoothed as in a run's loss.png)", fontsize=10)
    ax_a.set_title("test accuracy at each evaluation", fontsize=10)
    for ax in (ax_l, ax_a):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
    extra = [Line2D([], [], **{**DIVERGED, "ms": 8}, label="a seed diverged (at its step)")] if crosses else []
    if thin:
        extra.append(_style("a diverged seed, left out of the mean", lw=0.8))
    if several:
        extra.append(_style("band: min-max over seeds", lw=6, alpha=0.25))
    figure_legend(fig, [ax_l, ax_a], extra, ncol=4)
    n = len(grid.get("seed", [None]))
    what = f"mean of {n} seeds, band = min–max" if n > 1 else "one seed"
    fig.suptitle(f"{title}: training curves ({', '.join(x for x in (dataset, what) if x)})", fontsize=11)
    return fig
