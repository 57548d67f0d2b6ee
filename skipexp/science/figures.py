"""The tables and figures of the measurements of trained runs (landscape, sharpness, jacobian, paths), from the
files on disk: what each command ends with and what ``skipexp report`` redoes. Torch-free.

Each measurement is registered in :data:`MEASURES`: the JSON every measured run holds (its settings and
numbers), the numbers a folder's table gathers, which of them a sweep plots against its keys, and how its
figure is drawn.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import short_key
from skipexp.core.fmt import value as format_value
from skipexp.rundir import files, runio
from skipexp.science import members as members_mod
from skipexp.science.members import Folder

MOST_NETS_OVERLAID = 8   # a folder with more nets (a big sweep) gets only its numbers against the swept keys


@dataclass(frozen=True)
class Shown:
    field: str
    title: str
    ylabel: str
    log: bool = False


@dataclass(frozen=True)
class Measure:
    name: str                         # the command, and the stem of a folder's tables
    json: str                         # the run-folder file with its settings and numbers
    fields: tuple[str, ...]           # the numbers of a folder's table, in order
    shown: tuple[Shown, ...]          # those a sweep plots against each key
    draw: Callable[[Folder, list[tuple[str, list[Path]]], Path, str], list[Path]]   # (folder, nets, out, title)
    png: str


MEASURES: dict[str, Measure] = {}


def register(m: Measure) -> Measure:
    MEASURES[m.name] = m
    return m


def nets(f: Folder) -> list[tuple[str, list[Path]]]:
    """The folder's nets in order, each with the run folders of its seeds."""
    out: dict[str, list[Path]] = {}
    for m in f.members:
        out.setdefault(m.label, []).append(m.run_dir)
    return list(out.items())


def about(f: Folder) -> str:
    """``(fashion-mnist, 3 seeds)``: the dataset and, where nets have several, the seeds."""
    try:
        data = str(files.read_config_dict(f.members[0].run_dir)["data"]["dataset"])
    except (OSError, KeyError, TypeError):
        data = ""
    counts = {len(d) for _, d in nets(f)}
    seeds = f"{counts.pop()} seeds" if len(counts) == 1 and max(len(d) for _, d in nets(f)) > 1 else ""
    inner = ", ".join(x for x in (data, seeds) if x)
    return f" ({inner})" if inner else ""


def numbers_of(run_dir: Path, m: Measure) -> dict:
    path = run_dir / m.json
    if not path.is_file():
        raise SkipexpError(f"has no {m.json}: run `skipexp {m.name}` on it first", file=str(run_dir))
    return files.read_json(path).get("numbers", {})


def write_tables_and_plots(f: Folder, m: Measure, rows: list[dict] | None = None) -> tuple[list[Path], list[Path]]:
    """A folder's tables (from each run's JSON where ``rows`` is None) and figures: (tables, plots)."""
    if rows is None:
        rows = members_mod.member_rows(f, [numbers_of(x.run_dir, m) for x in f.members])
    tables = members_mod.write_tables(f, m.name, rows, list(m.fields))
    name = f.path.name
    plots = m.draw(f, nets(f), f.path / files.PLOTS / m.png, f"{name}: {m.name}{about(f)}")
    if f.kind == "sweep":
        plots += sweep_numbers(f, m, rows)
    return tables, plots


def sweep_numbers(f: Folder, m: Measure, rows: list[dict]) -> list[Path]:
    """plots/<measure>-<key>.png: the measure's shown numbers against each numeric swept key (a lone
    non-numeric key: its values as categories), one line per configuration of the other keys."""
    from skipexp.views.numbers import Line, Panel, plot_numbers

    def numeric(k: str) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in f.grid[k])

    keys = [k for k in f.keys if numeric(k) and len(f.grid[k]) > 1] or f.keys[:1]
    paths = []
    for xkey in keys:
        others = [k for k in f.keys if k != xkey]
        categories = None if numeric(xkey) else [members_mod.words(xkey, v) for v in f.grid[xkey]]
        pos = {format_value(v): (float(v) if categories is None else i) for i, v in enumerate(f.grid[xkey])}
        panels = []
        for s in m.shown:
            lines: dict[str, Line] = {}
            for v in f.grid[xkey]:
                cells: dict[str, list[float]] = {}
                for r in rows:
                    if format_value(r.get(xkey)) != format_value(v) or not isinstance(r.get(s.field), (int, float)):
                        continue
                    label = ", ".join(members_mod.words(k, r.get(k)) for k in others) or (
                        "mean over seeds" if f.several_seeds() else "each configuration")
                    cells.setdefault(label, []).append(float(r[s.field]))
                for label, vals in cells.items():
                    st = members_mod.summarize(vals)
                    if st["mean"] is None:
                        continue
                    line = lines.setdefault(label, Line(label, [], [], [], []))
                    x = pos[format_value(v)]
                    line.xs.append(x)
                    line.mean.append(st["mean"])
                    line.lo.append(st["ci_low"])
                    line.hi.append(st["ci_high"])
                    line.dots += [(x, val) for val in vals] if len(vals) > 1 else []
            panels.append(Panel(s.title, s.ylabel, list(lines.values()), s.log))
        log_x = categories is None and xkey.endswith("depth") and min(f.grid[xkey]) > 0
        band = " (band: 95 % confidence interval of the mean over seeds; dots: seeds)" if f.several_seeds() else ""
        out = f.path / files.PLOTS / f"{m.name}-{short_key(xkey)}.png"
        paths.append(plot_numbers(panels, members_mod.axis_words(xkey), f"{f.path.name}: {m.name}{about(f)}{band}",
                                  out, categories, log_x))
    return paths


# --- what each measurement draws -------------------------------------------------------------------------

def _landscape(f: Folder, groups: list[tuple[str, list[Path]]], out: Path, title: str) -> list[Path]:
    """plots/landscape.png (up to MOST_NETS_OVERLAID nets; the first four as contours and surfaces); a sweep
    of one or two keys also gets plots/landscape-grid.png, Li et al.'s layout: a contour plot per
    configuration, the numeric key along the columns and the other down the rows."""
    from skipexp.views.landscape import plot_contour_grid, plot_landscape

    drawn = [plot_landscape(groups, out, title)] if len(groups) <= MOST_NETS_OVERLAID else []
    if f.kind == "sweep" and 1 <= len(f.keys) <= 2:
        numeric = [k for k in f.keys if all(isinstance(v, (int, float)) for v in f.grid[k])]
        col = numeric[0] if numeric else f.keys[-1]
        row = next((k for k in f.keys if k != col), None)

        def word(k: str | None, v: object) -> str:
            return members_mod.words(k, v) if k else ""

        cells: dict[tuple[str, str], Path] = {}
        for m in f.members:   # the first seed of each configuration
            cells.setdefault((word(row, m.values.get(row)), word(col, m.values[col])), m.run_dir)
        rows = [word(row, v) for v in f.grid[row]] if row else [""]
        cols = [word(col, v) for v in f.grid[col]]
        seeds = " (first seed of each)" if f.several_seeds() else ""
        drawn.append(plot_contour_grid(cells, rows, cols, f"{title}{seeds}", out.with_name("landscape-grid.png")))
    return drawn


register(Measure(
    "landscape", files.LANDSCAPE_JSON,
    ("loss_at_checkpoint", "acc_at_checkpoint", "loss_max", "curvature_d1", "nonconvexity", "interp_barrier",
     "interp_loss_init"),
    (Shown("nonconvexity", "non-convexity of the 2D slice", "mean non-convexity ratio (0 = convex)"),
     Shown("curvature_d1", "curvature at the trained weights", "d²loss/da² along direction 1", log=True),
     Shown("interp_barrier", "barrier on the line from init", "loss above the straight line")),
    _landscape, files.LANDSCAPE_PNG))


def _sharpness(f: Folder, groups: list[tuple[str, list[Path]]], out: Path, title: str) -> list[Path]:
    from skipexp.views import mechanisms

    if len(groups) > MOST_NETS_OVERLAID:
        return []
    return [mechanisms.plot(mechanisms.sharpness_figure(groups, title), out)]


register(Measure(
    "sharpness", files.HESSIAN_JSON,
    ("top_trained", "trace_trained", "top_init", "trace_init", "loss_trained"),
    (Shown("top_trained", "top Hessian eigenvalue, trained", "largest eigenvalue", log=True),
     Shown("trace_trained", "Hessian trace, trained", "tr(H)", log=True),
     Shown("top_init", "top Hessian eigenvalue, at init", "largest eigenvalue", log=True)),
    _sharpness, files.SHARPNESS_PNG))


def _jacobian(f: Folder, groups: list[tuple[str, list[Path]]], out: Path, title: str) -> list[Path]:
    from skipexp.views import mechanisms

    if len(groups) > MOST_NETS_OVERLAID:
        return []
    return [mechanisms.plot(mechanisms.jacobian_figure(groups, title), out)]


register(Measure(
    "jacobian", files.JACOBIAN_JSON,
    ("mean_s2_init", "spread_init", "mean_s2_trained", "spread_trained"),
    (Shown("mean_s2_init", "mean s² of dh_L/dh_0 at init", "mean squared singular value", log=True),
     Shown("mean_s2_trained", "mean s² of dh_L/dh_0, trained", "mean squared singular value", log=True),
     Shown("spread_trained", "spread of s², trained", "var(s²) / mean(s²)²", log=True)),
    _jacobian, files.JACOBIAN_PNG))


def _paths(f: Folder, groups: list[tuple[str, list[Path]]], out: Path, title: str) -> list[Path]:
    from skipexp.views import mechanisms

    if len(groups) > MOST_NETS_OVERLAID:
        return []
    return [mechanisms.plot(mechanisms.paths_figure(groups, title), out)]


register(Measure(
    "paths", files.PATHS_JSON,
    ("effective_mean_trained", "effective_lo_trained", "effective_hi_trained", "effective_mean_init",
     "effective_lo_init", "effective_hi_init"),
    (Shown("effective_mean_trained", "mean effective path length, trained", "units (weighted by gradient)"),
     Shown("effective_mean_init", "mean effective path length, at init", "units (weighted by gradient)")),
    _paths, files.PATHS_PNG))


def redraw(path: Path) -> list[Path]:
    """Every measurement's tables and figures of a run, comparison or sweep folder that holds one; the
    plots drawn. A folder without any measurement is left alone (and not even read)."""
    run = runio.is_run_dir(path)
    done = [m for m in MEASURES.values() if (path / (m.json if run else f"{m.name}.csv")).is_file()]
    logged = run and (path / files.SHARPNESS_CSV).is_file() and not (path / files.HESSIAN_JSON).is_file()
    if not done and not logged:
        return []
    f = members_mod.folder(path)
    plots: list[Path] = []
    for m in done:
        if all((x.run_dir / m.json).is_file() for x in f.members):   # a member measured since: all again
            plots += write_tables_and_plots(f, m)[1]
    if logged:
        from skipexp.views import mechanisms  # logged while training (log.sharpness_every) and nothing since

        plots.append(mechanisms.plot_sharpness_log(path))
    return plots
