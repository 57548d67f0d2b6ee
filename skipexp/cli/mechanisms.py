"""Commands that measure why skips help, on trained runs: landscape, sharpness, jacobian, paths.

Each takes a run folder, a comparison folder or a sweep folder, measures every run in it the same way
(same sample, same random directions or probes), writes each run's files and the folder's tables and
figures, and prints a table with a row per net (the mean over its seeds, with a 95 % interval).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from skipexp.cli.app import app
from skipexp.cli.args import at_least_one
from skipexp.cli.console import download_progress, out_console
from skipexp.core.errors import SkipexpError

FolderArg = Annotated[Path, typer.Argument(
    help="A run folder, a comparison folder or a sweep folder: every run in it is measured.", metavar="FOLDER",
    show_default=False)]
def seed_option(of: str):
    return Annotated[int, typer.Option("--seed", metavar="N", help=f"Seed of {of} (the same for every run).")]


def _member_printer(fields: list[tuple[str, str, str]]):
    """Prints one line per run as it is done: its label, seed and numbers."""
    start = time.perf_counter()

    def on_member(m, nums: dict) -> None:
        cells = ", ".join(f"{head} {_cell(nums.get(field), fmt)}" for field, head, fmt in fields)
        seed = f" seed {m.seed}" if m.values.get("seed") is not None or "-seed" in m.run_dir.name else ""
        out_console.print(f"{m.label}{seed}: {cells} ({time.perf_counter() - start:.1f} s)", markup=False,
                          highlight=False, soft_wrap=True)
    return on_member


def _cell(v, fmt: str) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return format(v, fmt)


def _print_table(result, title: str, fields: list[tuple[str, str, str]]) -> None:
    """A row per net: each number's mean over seeds, with its 95 % interval where there are several."""
    from rich.table import Table

    from skipexp.science import members

    f = result.folder
    several = f.several_seeds()
    rows = members.seed_rows(f, result.rows, [x[0] for x in fields]) if several else result.rows
    t = Table(title=title, title_justify="left")
    t.add_column("net")
    if several:
        t.add_column("seeds", justify="right")
    for _, head, _ in fields:
        t.add_column(head, justify="right")
    for r in rows:
        cells = []
        for field, _, fmt in fields:
            if not several:
                cells.append(_cell(r.get(field), fmt))
                continue
            mean, lo, hi = r.get(f"{field}_mean"), r.get(f"{field}_ci_low"), r.get(f"{field}_ci_high")
            cells.append(_cell(mean, fmt) + (f" [{_cell(lo, fmt)}, {_cell(hi, fmt)}]" if lo is not None else ""))
        t.add_row(str(r["label"]), *([str(r["seeds"])] if several else []), *cells)
    out_console.print(t)
    if several:
        out_console.print("mean over seeds [95 % confidence interval of the mean, Student's t]", style="dim",
                          markup=False, highlight=False)
    for p in [*result.tables, *result.plots]:
        out_console.print(str(p), soft_wrap=True, markup=False, highlight=False)


# --- landscape -------------------------------------------------------------------------------------------

LANDSCAPE_FIELDS = [("loss_at_checkpoint", "loss at checkpoint", ".4g"), ("curvature_d1", "curvature d1", ".3g"),
                    ("nonconvexity", "non-convexity", ".3f"), ("loss_max", "max loss on grid", ".3g"),
                    ("interp_loss_init", "loss at init", ".4g"), ("interp_barrier", "barrier init→trained", ".3g")]


@app.command(short_help="Loss landscape around the trained weights (Li et al. 2018).")
def landscape(
    folder: FolderArg,
    dims: Annotated[int, typer.Option("--dims", metavar="1|2", help="A 1D line or a 2D plane.")] = 2,
    points: Annotated[int, typer.Option(
        "--points", metavar="N", help="Grid points per direction (odd: the trained weights are the middle).")] = 31,
    span: Annotated[float, typer.Option("--span", metavar="X",
                                        help="The grid runs from -X to X along each direction.")] = 1.0,
    samples: Annotated[int, typer.Option("--samples", metavar="N",
                                         help="Training examples the loss is evaluated on.")] = 2048,
    seed: seed_option("the random directions") = 0,
) -> None:
    """Loss on a 1D or 2D grid around the trained weights along filter-normalised random directions (Li et
    al. 2018), and on the line from the initial to the trained weights (Goodfellow et al. 2015).

    Every run of the folder gets the same directions' seed and the same training sample. Writes
    landscape.csv, interpolation.csv and landscape.json into each run; the folder gets landscape.csv (a
    row per run), landscape-seeds.csv (with several seeds) and plots/landscape.png (contours, surfaces,
    the 1D slice and the line from init).

    Example: skipexp landscape runs/compare-20260101-120000
    """
    if dims not in (1, 2):
        raise SkipexpError(f"must be 1 or 2, got {dims}", key="--dims")
    if points < 3 or points % 2 == 0:
        raise SkipexpError(f"must be odd and at least 3 (the trained weights are the middle point), got {points}",
                           key="--points")
    if not span > 0:
        raise SkipexpError(f"must be > 0, got {span}", key="--span")
    at_least_one(samples=samples)
    from skipexp.science import landscape as mod

    s = mod.Settings(dims=dims, points=points, span=span, samples=samples, seed=seed)
    shown = LANDSCAPE_FIELDS if dims == 2 else [f for f in LANDSCAPE_FIELDS if f[0] != "nonconvexity"] + [
        ("nonconvexity", "share with d²<0", ".3f")]
    result = mod.study(folder, s, download_progress(), _member_printer(shown[:3]))
    grid = f"{points} x {points}" if dims == 2 else f"{points} points"
    _print_table(result, f"loss landscape ({grid}, span {span:g}, {samples} training examples, seed {seed})", shown)


# --- sharpness -------------------------------------------------------------------------------------------

SHARPNESS_FIELDS = [("top_init", "top eigenvalue, init", ".4g"), ("top_trained", "top eigenvalue, trained", ".4g"),
                    ("trace_init", "trace, init", ".4g"), ("trace_trained", "trace, trained", ".4g"),
                    ("loss_trained", "loss, trained", ".4g")]


@app.command(short_help="Top Hessian eigenvalue and trace, at init and trained.")
def sharpness(
    folder: FolderArg,
    samples: Annotated[int, typer.Option("--samples", metavar="N",
                                         help="Training examples the loss is taken over.")] = 1024,
    iterations: Annotated[int, typer.Option("--iterations", metavar="N",
                                            help="Lanczos steps at most (stops once the top value settles).")] = 20,
    probes: Annotated[int, typer.Option("--probes", metavar="N", help="Hutchinson probes for the trace.")] = 20,
    seed: seed_option("Lanczos' start vector and the probes") = 0,
) -> None:
    """The top eigenvalue (Lanczos) and trace (Hutchinson) of the Hessian of the training loss, from
    Hessian-vector products, at init and at the checkpoint.

    Writes hessian.csv and hessian.json into each run; the folder gets sharpness.csv (a row per run),
    sharpness-seeds.csv (with several seeds) and plots/sharpness.png (with what log.sharpness_every
    recorded while training, where it did).

    Example: skipexp sharpness runs/compare-20260101-120000
    """
    at_least_one(samples=samples, iterations=iterations, probes=probes)
    from skipexp.science import sharpness as mod

    s = mod.Settings(samples=samples, iterations=iterations, probes=probes, seed=seed)
    result = mod.study(folder, s, download_progress(), _member_printer(SHARPNESS_FIELDS[:4]))
    _print_table(result, f"Hessian of the training loss ({samples} examples; trace from {probes} probes, its "
                         "standard error in hessian.csv)",
                 SHARPNESS_FIELDS)


# --- jacobian --------------------------------------------------------------------------------------------

JACOBIAN_FIELDS = [("mean_s2_init", "mean s², init", ".3g"), ("spread_init", "spread, init", ".3g"),
                   ("mean_s2_trained", "mean s², trained", ".3g"), ("spread_trained", "spread, trained", ".3g")]


@app.command(short_help="Input-output Jacobian singular values against depth.")
def jacobian(
    folder: FolderArg,
    samples: Annotated[int, typer.Option("--samples", metavar="N",
                                         help="Training examples whose Jacobians are taken.")] = 32,
) -> None:
    """Singular values s of d h_i / d h_0 at every block boundary i (dynamical isometry: Pennington et al.
    2017), at init and at the checkpoint: the mean of s² and its spread var(s²) / mean(s²)².

    Writes jacobian.csv, jacobian-spectrum.csv and jacobian.json into each run; the folder gets
    jacobian.csv (a row per run: the last boundary's numbers), jacobian-seeds.csv (with several seeds) and
    plots/jacobian.png.

    Example: skipexp jacobian runs/compare-20260101-120000
    """
    at_least_one(samples=samples)
    from skipexp.science import jacobian as mod

    result = mod.study(folder, samples, download_progress(), _member_printer(JACOBIAN_FIELDS))
    _print_table(result, f"singular values s of dh_last/dh_0 ({samples} examples; isometry: mean s² = 1, spread 0)",
                 JACOBIAN_FIELDS)


# --- paths -----------------------------------------------------------------------------------------------

PATHS_FIELDS = [("effective_mean_trained", "mean length, trained", ".2f"),
                ("effective_lo_trained", "trained 5 %", ".0f"), ("effective_hi_trained", "trained 95 %", ".0f"),
                ("effective_mean_init", "mean length, init", ".2f"),
                ("effective_lo_init", "init 5 %", ".0f"), ("effective_hi_init", "init 95 %", ".0f")]


@app.command(short_help="Gradient per path length of a residual net (Veit et al. 2016).")
def paths(
    folder: FolderArg,
    samples: Annotated[int, typer.Option("--samples", metavar="N",
                                         help="Training examples each path's gradient is averaged over.")] = 256,
    sets: Annotated[int, typer.Option("--sets", metavar="N", help="Paths sampled per length.")] = 32,
    seed: seed_option("the sampled paths") = 0,
) -> None:
    """How much gradient flows through paths of each length: the backward pass keeps the residual branch of k
    sampled units and the shortcut of the others (Veit et al. 2016), trained and at init.

    Writes paths.csv and paths.json into each run; the folder gets paths.csv (a row per run), paths-seeds.csv
    (with several seeds) and plots/paths.png: the distribution of path lengths, the gradient per path, and
    their product.

    Example: skipexp paths runs/compare-20260101-120000
    """
    at_least_one(samples=samples, sets=sets)
    from skipexp.science import paths as mod

    s = mod.Settings(samples=samples, sets=sets, seed=seed)
    result = mod.study(folder, s, download_progress(), _member_printer(PATHS_FIELDS[:1] + PATHS_FIELDS[3:4]))
    _print_table(result, "where the gradient comes from: path lengths (units through their branch) that carry "
                         "it, weighted mean and the 5 % / 95 % points of its cumulative share", PATHS_FIELDS)
