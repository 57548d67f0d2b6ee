"""Plots of a run, drawn from its folder on disk (never from a live model), so anything can be re-plotted."""
from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from skipexp.rundir import runio  # noqa: E402
from skipexp.rundir.summary import ema  # noqa: E402

DPI = 110


def _meta(run_dir: Path) -> dict:
    p = run_dir / "meta.json"
    return runio.read_json(p) if p.exists() else {}


def _matrix(rows: list[dict]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(steps,), column names, (steps, columns) from a per-step CSV."""
    cols = [c for c in rows[0] if c != "step"]
    steps = np.array([r["step"] for r in rows])
    return steps, cols, np.array([[r[c] for c in cols] for r in rows], dtype=float)


def _mark_divergence(ax, meta: dict) -> None:
    step = meta.get("diverged_at_step")
    if step is not None:
        ax.axvline(step, color="crimson", ls="--", lw=1.2, label=f"diverged at step {step}")


def _pick_steps(n: int, k: int = 6) -> list[int]:
    """Row indices of k steps spread over the run, always the first and the last."""
    return sorted(set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist()))


def _positive(a: np.ndarray) -> np.ndarray:
    """Values a log axis can draw: zeros and non-finite values become gaps."""
    a = a.astype(float).copy()
    a[~np.isfinite(a) | (a <= 0)] = np.nan
    return a


def plot_loss(run_dir: Path, out: Path) -> None:
    meta = _meta(run_dir)
    m, e = runio.read_csv(run_dir / "metrics.csv"), runio.read_csv(run_dir / "eval.csv")
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2))
    name = meta.get("name", run_dir.name)
    if m:
        steps = [r["step"] for r in m]
        loss = [r["train_loss"] for r in m]
        ax_l.plot(steps, _positive(np.array(loss)), color="tab:blue", alpha=0.25, lw=0.8, label="train (raw)")
        ax_l.plot(steps, _positive(np.array(ema(loss))), color="tab:blue", lw=1.8, label="train (smoothed)")
        ax_a.plot(steps, ema([r["train_acc"] for r in m]), color="tab:blue", lw=1.8, label="train (smoothed)")
    if e:
        ax_l.plot([r["step"] for r in e], _positive(np.array([r["test_loss"] for r in e])), "o-",
                  color="tab:orange", ms=3, lw=1.5, label="test")
        ax_a.plot([r["step"] for r in e], [r["test_acc"] for r in e], "o-", color="tab:orange", ms=3,
                  lw=1.5, label="test")
    for ax in (ax_l, ax_a):
        _mark_divergence(ax, meta)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    k = _num_classes(run_dir)
    if k:  # the loss of a uniform guess: a run stuck here has learned nothing
        ax_l.axhline(math.log(k), color="grey", ls=":", lw=1.2, label=f"chance (ln {k})")
        ax_l.legend(loc="best", fontsize=8)
    losses = _positive(np.array([r["train_loss"] for r in m] + [r["test_loss"] for r in e], dtype=float))
    spread = np.nanmax(losses) / np.nanmin(losses) if np.isfinite(losses).any() else 1.0
    if spread > 10:  # log only where the loss spans a decade; else it magnifies noise around one value
        ax_l.set_yscale("log")
        ax_l.set_ylabel("cross-entropy loss (log scale)")
    else:
        ax_l.set_ylim(bottom=0)
        ax_l.set_ylabel("cross-entropy loss")
    ax_l.set_title("loss")
    ax_a.set_ylabel("accuracy")
    ax_a.set_ylim(0, 1.02)
    ax_a.set_title("accuracy")
    final = f", final test accuracy {e[-1]['test_acc']:.1%}" if e and math.isfinite(e[-1]["test_acc"]) else ""
    fig.suptitle(f"{name}: {meta.get('status', '')}{final}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def _num_classes(run_dir: Path) -> int | None:
    """Classes of the run's dataset, from its config.yaml (None if it cannot be read)."""
    import yaml

    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text())["data"]
        return int(data["num_classes"]) if data["dataset"] == "synthetic" else 10
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def plot_grad_norms(run_dir: Path, out: Path) -> None:
    meta = _meta(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    panels = [("grad_norms.csv", "weight-gradient norm per layer", "layer (input → head)"),
              ("act_grad_norms.csv", "activation-gradient norm per block boundary", "boundary h_i (input → output)")]
    for ax, (fname, title, xlabel) in zip(axes, panels):
        rows = runio.read_csv(run_dir / fname)
        if not rows:
            ax.set_title(f"{title}: no data")
            continue
        steps, cols, mat = _matrix(rows)
        picks = _pick_steps(len(steps))
        cmap = plt.get_cmap("viridis")
        for j, i in enumerate(picks):
            ax.plot(range(len(cols)), _positive(mat[i]), "-", marker="." if len(cols) < 40 else None,
                    color=cmap(j / max(1, len(picks) - 1)), lw=1.5, label=f"step {int(steps[i])}")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("L2 norm (log scale)")
        ax.set_title(title)
        ticks = _ticks(len(cols))
        ax.set_xticks(ticks)
        ax.set_xticklabels([_short(cols[t]) for t in ticks], rotation=45, ha="right", fontsize=7)
        ax.grid(alpha=0.3, which="both")
    # one legend for both panels (same steps, same colours), outside the axes so it hides no line
    handles, labels = axes[-1].get_legend_handles_labels()
    if handles:
        axes[-1].legend(handles, labels, fontsize=8, title="step (dark = early)", title_fontsize=8,
                        loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle(f"{meta.get('name', run_dir.name)}: gradient norm against depth", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def _ticks(n: int, k: int = 12) -> list[int]:
    """About k evenly spaced indices (h0, h2, h4, ...), always the last one."""
    every = max(1, math.ceil(n / k))
    ticks = list(range(0, n, every))
    if ticks[-1] != n - 1:
        if n - 1 - ticks[-1] < every / 2:  # too close to the last tick: its label would collide
            ticks.pop()
        ticks.append(n - 1)
    return ticks


def _short(col: str) -> str:
    return col.replace("blocks.", "b").replace("skips.", "s")


def plot_heatmap(run_dir: Path, out: Path) -> None:
    meta = _meta(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (fname, title, ylabel) in zip(axes, [
            ("grad_norms.csv", "weight gradients", "layer (bottom = input)"),
            ("act_grad_norms.csv", "activation gradients", "boundary h_i (bottom = h0)")]):
        rows = runio.read_csv(run_dir / fname)
        if not rows:
            ax.set_title(f"{title}: no data")
            continue
        steps, cols, mat = _matrix(rows)
        logm = np.log10(_positive(mat)).T                              # (layers, steps)
        finite = logm[np.isfinite(logm)]
        norm = Normalize(*(np.percentile(finite, [1, 99]) if finite.size else (0, 1)))
        im = ax.imshow(logm, aspect="auto", origin="lower", cmap="magma", norm=norm, interpolation="nearest",
                       extent=(steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(cols) - 0.5))  # one step: not 0 wide
        ticks = _ticks(len(cols))
        ax.set_yticks(ticks)
        ax.set_yticklabels([_short(cols[t]) for t in ticks], fontsize=7)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(f"log10 norm of {title}")
        _mark_divergence(ax, meta)
        fig.colorbar(im, ax=ax, label="log10 L2 norm")
    fig.suptitle(f"{meta.get('name', run_dir.name)}: where the gradient lives (layer × step)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def plot_run(run_dir: Path) -> list[Path]:
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    paths = [out / "loss.png", out / "grad_norms.png", out / "grad_heatmap.png"]
    for fn, path in zip((plot_loss, plot_grad_norms, plot_heatmap), paths):
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # the suffix tells savefig the format
        fn(run_dir, tmp)
        os.replace(tmp, path)  # a process killed while drawing leaves the old plot, not half a PNG
    return paths
