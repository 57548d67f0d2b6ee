"""Plots over several runs (a comparison, a sweep), drawn from their folders on disk only."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from skipexp.core.fmt import short_key  # noqa: E402
from skipexp.core.fmt import value as format_value  # noqa: E402
from skipexp.rundir import runio  # noqa: E402
from skipexp.views.plots import DPI, _matrix, _positive, _short, _ticks  # noqa: E402
from skipexp.rundir.summary import ema  # noqa: E402

COLORS = plt.get_cmap("tab10").colors


def _meta(run_dir: Path) -> dict:
    p = run_dir / "meta.json"
    return runio.read_json(p) if p.exists() else {}


def _label(name: str, meta: dict) -> str:
    status = meta.get("status", "?")
    return name if status == "completed" else f"{name} ({status})"


def _seeds(runs: list) -> list[tuple[str, list[Path]]]:
    return [(name, [d] if isinstance(d, Path) else list(d)) for name, d in runs]


def _member_label(name: str, dirs: list[Path]) -> str:
    """``name`` as today for one seed; ``name (mean of n seeds)`` and the odd statuses for several."""
    if len(dirs) == 1:
        return _label(name, _meta(dirs[0]))
    odd = sorted({_meta(d).get("status", "?") for d in dirs} - {"completed"})
    return f"{name} (mean of {len(dirs)} seeds{'; ' + ', '.join(odd) if odd else ''})"


def _band(curves: list[tuple[list[float], list[float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, min, max) over curves cut to their common length (an interrupted seed is shorter)."""
    n = min(len(x) for x, _ in curves)
    ys = np.array([y[:n] for _, y in curves], dtype=float)
    with np.errstate(all="ignore"):
        return np.asarray(curves[0][0][:n], float), ys.mean(0), ys.min(0), ys.max(0)


def _draw(ax: Any, curves: list[tuple[list[float], list[float]]], fmt: str, c: Any, positive: bool = False,
          **kw: Any) -> None:
    """One seed: the curve as is. Several: their mean, with the min-max band shaded in the same colour."""
    if not curves:
        return
    x, mean, lo, hi = _band(curves)
    f = _positive if positive else (lambda a: a)
    ax.plot(x, f(mean), fmt, color=c, **kw)
    if len(curves) > 1:
        ax.fill_between(x, f(lo), f(hi), color=c, alpha=0.18, lw=0)


def plot_compare(runs: list, out: Path) -> list[Path]:
    """Overlaid plots of a comparison; ``runs`` pairs each member with its run folder, or its seeds' folders."""
    runs = _seeds(runs)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "loss.png", out / "grad_norms.png", out / "grad_heatmap.png"]
    compare_loss(runs, paths[0])
    compare_grad_profile(runs, paths[1])
    compare_heatmaps(runs, paths[2])
    return paths


def compare_loss(runs: list, out: Path) -> None:
    """Every member's smoothed train loss (solid) and test loss (dashed, dots) on one axes; accuracy beside.

    A member with several seeds is drawn as the mean over its seeds with the min-max band shaded.
    """
    runs = _seeds(runs)
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2))
    multi = any(len(dirs) > 1 for _, dirs in runs)
    for i, (name, dirs) in enumerate(runs):
        c = COLORS[i % len(COLORS)]
        label = _member_label(name, dirs)
        train_l, train_a, test_l, test_a = [], [], [], []
        for run_dir in dirs:
            m, e = runio.read_csv(run_dir / "metrics.csv"), runio.read_csv(run_dir / "eval.csv")
            if m:
                steps = [r["step"] for r in m]
                train_l.append((steps, ema([r["train_loss"] for r in m])))
                train_a.append((steps, ema([r["train_acc"] for r in m])))
            if e:
                es = [r["step"] for r in e]
                test_l.append((es, [r["test_loss"] for r in e]))
                test_a.append((es, [r["test_acc"] for r in e]))
        _draw(ax_l, train_l, "-", c, positive=True, lw=2, label=f"{label}: train")
        _draw(ax_a, train_a, "-", c, lw=2, label=f"{label}: train")
        _draw(ax_l, test_l, "o--", c, positive=True, ms=3.5, lw=1.2, label=f"{label}: test")
        _draw(ax_a, test_a, "o--", c, ms=3.5, lw=1.2, label=f"{label}: test")
        for run_dir in dirs:
            meta = _meta(run_dir)
            if meta.get("diverged_at_step") is not None:
                for ax in (ax_l, ax_a):
                    ax.axvline(meta["diverged_at_step"], color=c, ls=":", lw=1.2)
    chance = _chance(runs)
    if chance:
        ax_a.axhline(chance, color="grey", ls=":", lw=1, label=f"chance ({chance:.0%})")
        ax_l.axhline(-math.log(chance), color="grey", ls=":", lw=1, label="chance loss ln(classes)")
    ax_l.set_yscale("log")
    ax_l.set_ylabel("cross-entropy loss (log scale)")
    ax_l.set_title("loss: train smoothed (solid), test (dashed)" + ("; band = min-max over seeds" if multi else ""))
    ax_a.set_ylim(0, 1.02)
    ax_a.set_ylabel("accuracy")
    ax_a.set_title("accuracy")
    for ax in (ax_l, ax_a):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("same data, same batches: which one trains?", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def _chance(runs: list) -> float | None:
    """1 / classes when every member has the same number of classes (read from its head's width)."""
    import yaml

    classes = set()
    for _, dirs in _seeds(runs):
        run_dir = dirs[0]
        try:
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        except OSError:
            return None
        data = cfg.get("data", {})
        classes.add(10 if data.get("dataset") in ("mnist", "fashion-mnist", "mnist1d") else data.get("num_classes"))
    return 1 / classes.pop() if len(classes) == 1 and None not in classes else None


def compare_grad_profile(runs: list, out: Path) -> None:
    """Gradient norm against depth, per member, at the first logged step (dashed) and the last (solid).

    A member with several seeds is drawn as the mean over its seeds with the min-max band shaded.
    """
    runs = _seeds(runs)
    multi = any(len(dirs) > 1 for _, dirs in runs)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    panels = [("grad_norms.csv", "weight-gradient norm per layer", "layer (input → head)"),
              ("act_grad_norms.csv", "activation-gradient norm per block boundary", "boundary h_i (input → output)")]
    for ax, (fname, title, xlabel) in zip(axes, panels):
        longest: list[str] = []
        for i, (name, dirs) in enumerate(runs):
            firsts, lasts, first_step, last_steps = [], [], 0, []
            for run_dir in dirs:
                rows = runio.read_csv(run_dir / fname)
                if not rows:
                    continue
                steps, cols, mat = _matrix(rows)
                longest = cols if len(cols) > len(longest) else longest
                x = list(range(len(cols)))
                firsts.append((x, list(mat[0])))
                lasts.append((x, list(mat[-1])))
                first_step = int(steps[0])
                last_steps.append(int(steps[-1]))
            if not firsts:
                continue
            c = COLORS[i % len(COLORS)]
            # seeds may stop at different steps (one interrupted): say which when they do
            last = str(last_steps[0]) if len(set(last_steps)) == 1 else f"{min(last_steps)}-{max(last_steps)}"
            label = name if len(dirs) == 1 else f"{name} (mean of {len(dirs)} seeds)"
            _draw(ax, firsts, "--", c, positive=True, lw=1.3, alpha=0.8, label=f"{label}: step {first_step}")
            _draw(ax, lasts, "-", c, positive=True, lw=2.2, label=f"{label}: step {last}")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("L2 norm (log scale)")
        ax.set_title(title, fontsize=10)
        if longest:
            ticks = _ticks(len(longest))
            ax.set_xticks(ticks)
            ax.set_xticklabels([_short(longest[t]) for t in ticks], rotation=45, ha="right", fontsize=7)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, title="dashed = first step, solid = last" + (
            "\nband = min-max over seeds" if multi else ""), title_fontsize=7)
    fig.suptitle("gradient norm against depth: a line falling towards the input is a vanishing gradient",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def compare_heatmaps(runs: list, out: Path) -> None:
    """Layer x step heatmaps of log10 gradient norm, members side by side, one colour scale per row.

    A member with several seeds shows the mean over its seeds of log10 norm (its first seed alone where
    the seeds logged different steps, e.g. one interrupted).
    """
    runs = _seeds(runs)
    kinds = [("grad_norms.csv", "weight gradients"), ("act_grad_norms.csv", "activation gradients")]
    data: dict[tuple[int, int], tuple] = {}
    for r, (fname, _) in enumerate(kinds):
        for c, (_, dirs) in enumerate(runs):
            got = [_matrix(rows) for rows in (runio.read_csv(d / fname) for d in dirs) if rows]
            if got:
                steps, cols, _ = got[0]
                same = [g for g in got if g[2].shape == got[0][2].shape]
                logs = [np.log10(_positive(g[2])) for g in (same if len(same) == len(got) else got[:1])]
                data[r, c] = (steps, cols, np.mean(logs, axis=0).T, len(logs))     # (layers, steps)
    n = max(1, len(runs))
    fig, axes = plt.subplots(2, n, figsize=(4.6 * n + 1.2, 8.2), squeeze=False, layout="constrained")
    for r, (_, title) in enumerate(kinds):
        finite = np.concatenate([d[2][np.isfinite(d[2])] for (rr, _), d in data.items() if rr == r] or [np.zeros(0)])
        norm = Normalize(*(np.percentile(finite, [1, 99]) if finite.size else (0, 1)))
        im = None
        for c, (name, dirs) in enumerate(runs):
            ax = axes[r, c]
            if (r, c) not in data:
                ax.set_title(f"{name}: no data")
                ax.axis("off")
                continue
            steps, cols, logm, n_seeds = data[r, c]
            im = ax.imshow(logm, aspect="auto", origin="lower", cmap="magma", norm=norm, interpolation="nearest",
                           extent=(steps[0], steps[-1], -0.5, len(cols) - 0.5))
            ticks = _ticks(len(cols), 10)
            ax.set_yticks(ticks)
            ax.set_yticklabels([_short(cols[t]) for t in ticks], fontsize=7)
            ax.set_xlabel("step")
            if c == 0:
                ax.set_ylabel("layer (bottom = input)")
            label = _member_label(name, dirs) if n_seeds > 1 else _label(name, _meta(dirs[0]))
            ax.set_title(f"{label}: {title}", fontsize=10)
        if im is not None:
            fig.colorbar(im, ax=list(axes[r]), label="log10 L2 norm (shared scale)", fraction=0.04)
    fig.suptitle("where the gradient lives (layer × step); dark = vanished", fontsize=11)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


# --- sweeps --------------------------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _f(v: Any) -> float:
    return float(v) if _is_number(v) else float("nan")


def plot_sweep(rows: list[dict], grid: dict[str, list], out: Path, title: str = "sweep") -> list[Path]:
    """Final train loss and test accuracy against each swept key, one line per value of the other keys.

    ``seed`` is never an axis: lines show the mean over seeds with the min-max band, each seed a dot;
    a diverged point is a red cross at its own value (or at the top when its loss is not finite).
    """
    out.mkdir(parents=True, exist_ok=True)

    keys = [k for k in grid if k != "seed"]
    axes_keys = [k for k in keys if all(_is_number(v) for v in grid[k]) and len(grid[k]) > 1]
    if not axes_keys and keys:  # nothing numeric: the first key's values become categories on the x axis
        axes_keys = [keys[0]]
    paths = []
    for xkey in axes_keys:
        path = out / f"{short_key(xkey)}.png"
        _sweep_figure(rows, grid, xkey, [k for k in keys if k != xkey], path, title)
        paths.append(path)
    return paths


def _sweep_figure(rows: list[dict], grid: dict[str, list], xkey: str, line_keys: list[str], path: Path,
                  title: str) -> None:
    numeric = all(_is_number(v) for v in grid[xkey])
    xs_all = grid[xkey]
    pos = {format_value(v): (float(v) if numeric else i) for i, v in enumerate(xs_all)}
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(12, 4.6))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(format_value(r.get(k)) for k in line_keys), []).append(r)
    for gi, (gkey, members) in enumerate(groups.items()):
        c = COLORS[gi % len(COLORS)]
        label = ", ".join(f"{short_key(k)}={v}" for k, v in zip(line_keys, gkey)) or "all"
        for ax, field, log in ((ax_l, "final_train_loss", True), (ax_a, "final_test_acc", False)):
            xs, means, lo, hi = [], [], [], []
            for v in xs_all:
                at = [r for r in members if format_value(r.get(xkey)) == format_value(v)
                      and r.get("status") not in ("missing", "not started")]
                vals = [_f(r.get(field)) for r in at]
                vals = [y for y in vals if math.isfinite(y)]
                x = pos[format_value(v)]
                for r in at:
                    y = _f(r.get(field))
                    diverged = r.get("status") == "diverged"
                    if diverged:
                        ax.plot([x], [y if math.isfinite(y) else np.nan], "x", color="crimson", ms=9, mew=2)
                        if not math.isfinite(y):
                            ax.annotate("✕ diverged", (x, 1), xycoords=("data", "axes fraction"), color="crimson",
                                        fontsize=7, ha="center", va="top")
                    elif math.isfinite(y):
                        ax.plot([x], [y], ".", color=c, alpha=0.45, ms=5)
                if vals:
                    xs.append(x)
                    means.append(sum(vals) / len(vals))
                    lo.append(min(vals))
                    hi.append(max(vals))
            if xs:
                ax.plot(xs, means, "o-", color=c, lw=2, ms=5, label=label)
                ax.fill_between(xs, lo, hi, color=c, alpha=0.15)
            if log:
                ax.set_yscale("log")
    for ax, ylabel in ((ax_l, "final train loss (log scale)"), (ax_a, "final test accuracy")):
        ax.set_xlabel(short_key(xkey))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        if numeric:
            vals = [float(v) for v in xs_all]
            if min(vals) > 0 and max(vals) / min(vals) >= 8:
                ax.set_xscale("log", base=2)
            ax.set_xticks(vals)
            ax.set_xticklabels([format_value(v) for v in xs_all])
            ax.minorticks_off()
        else:
            ax.set_xticks(range(len(xs_all)))
            ax.set_xticklabels([format_value(v) for v in xs_all], rotation=20)
    ax_a.set_ylim(0, 1.02)
    ax_l.plot([], [], "x", color="crimson", ms=8, mew=2, label="diverged")
    ax_l.plot([], [], ".", color="grey", label="one seed")
    ax_l.legend(fontsize=7, loc="best")
    ax_l.set_title("final train loss: mean over seeds, band = min-max", fontsize=10)
    ax_a.set_title("final test accuracy", fontsize=10)
    fig.suptitle(f"{title}: against {short_key(xkey)}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
