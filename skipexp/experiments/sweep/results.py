"""A sweep folder's summary.csv, summary-seeds.csv and plots, from disk: what ``sweep`` ends with and
``report`` redoes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from skipexp.core import stats
from skipexp.core.fmt import csv_cell
from skipexp.core.fmt import value as format_value
from skipexp.experiments.html import write_sweep
from skipexp.experiments.sweep import evidence
from skipexp.experiments.sweep.evidence import Selection
from skipexp.experiments.sweep.spec import Point, Sweep, folder_points, load_folder
from skipexp.rundir import files, runio
from skipexp.rundir.files import SUMMARY_FIELDS
from skipexp.rundir.reuse import read_status
from skipexp.rundir.summary import describe, summarize, write_summary
from skipexp.views.tensorboard import event_files, write_hparams

# the fields of summary-seeds.csv: each gets its _mean, _std, _n, _ci_low, _ci_high, _min and _max over the seeds
SEED_FIELDS = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc", "best_test_acc",
               "final_val_loss", "final_val_acc", "best_val_acc", "grad_ratio_first_last_end")
STATS = ("mean", "std", "n", "ci_low", "ci_high", "min", "max")
NOT_RUN = evidence.NOT_RUN  # a grid point without a result


def collect(root: Path, refresh: bool = True) -> tuple[Sweep, list[dict]]:
    """One row per grid point of the sweep folder: its values, folder name and summary (status missing
    for points never started). ``refresh`` recomputes each point's summary.json from its CSVs."""
    sweep = load_folder(root)
    rows = []
    for name, values, run_dir in folder_points(root):
        row: dict[str, Any] = dict(values)
        row["point"] = name
        if runio.is_run_dir(run_dir):
            s = write_summary(run_dir) if refresh else summarize(run_dir)
            row.update({k: s.get(k) for k in SUMMARY_FIELDS})
        else:
            row["status"] = "missing"
        rows.append(row)
    chosen = chosen_configurations(rows, sweep)
    for row in rows:   # the points a staged selection has left out are not missing: they are not to be trained
        if chosen is not None and row["status"] == "missing" and _config_of(row, sweep.grid) not in chosen:
            row["status"] = evidence.NOT_CHOSEN
    return sweep, rows


def _config_of(values: dict, grid: dict[str, list]) -> tuple:
    return tuple(format_value(values.get(k)) for k in grid if k != "seed")


def chosen_configurations(rows: list[dict], sweep: Sweep) -> set[tuple] | None:
    """With a staged selection (``select.seeds``) whose deciding points have all finished, the configurations
    chosen on them (as :func:`_config_of` tuples); None while the choice is not made, or without stages."""
    sel = sweep.select
    if sel is None or sel.seeds is None:
        return None
    deciders = [r for r in rows if sel.decides(r.get("seed"))]
    if any(r.get("status") not in files.FINISHED for r in deciders):
        return None
    configs = configurations(deciders, sweep.grid)
    return {_config_of(values, sweep.grid) for (values, _), c in zip(configs, evidence.choose(configs, sel)) if c}


def planned(sweep: Sweep, pts: list[Point]) -> int:
    """How many of ``pts`` the sweep trains in all: every one, or with a staged selection the deciding seeds'
    points and, per arm, the other seeds at its chosen value (known in number before the choice is made)."""
    sel = sweep.select
    if sel is None or sel.seeds is None:
        return len(pts)
    first = [p for p in pts if sel.decides(p.values.get("seed"))]
    arms = {tuple(format_value(v) for k, v in p.values.items() if k not in ("seed", sel.key)) for p in pts}
    others = {format_value(p.values.get("seed")) for p in pts if not sel.decides(p.values.get("seed"))}
    return len(first) + len(arms) * len(others)


def runnable(sweep: Sweep, pts: list[Point]) -> list[Point]:
    """The points of ``pts`` the sweep trains now: every one, or with a staged selection (``select.seeds``) the
    deciding seeds' points until they have all finished, then those and the other seeds' points of the chosen
    configurations (:mod:`.evidence`)."""
    sel = sweep.select
    if sel is None or sel.seeds is None:
        return pts
    first = [p for p in pts if sel.decides(p.values.get("seed"))]
    rows = []
    for p in first:
        status = read_status(p.run_dir)
        if status not in files.FINISHED:
            return first
        got = summarize(p.run_dir)
        rows.append({**p.values, **{k: got.get(k) for k in SUMMARY_FIELDS}, "status": status})
    chosen = chosen_configurations(rows, sweep) or set()
    return [p for p in pts if sel.decides(p.values.get("seed")) or _config_of(p.values, sweep.grid) in chosen]


def write_summary_csv(root: Path, sweep: Sweep, rows: list[dict]) -> Path:
    files.write_csv(root / files.SUMMARY_CSV, list(sweep.grid) + ["point"] + list(SUMMARY_FIELDS), rows, csv_cell)
    return root / files.SUMMARY_CSV


def seeds_swept(grid: dict[str, list]) -> bool:
    """Whether the grid sweeps the seed over two values or more: then a configuration is its seeds."""
    return len(grid.get("seed", [])) >= 2


def configurations(rows: list[dict], grid: dict[str, list]) -> list[tuple[dict[str, Any], list[dict]]]:
    """The points grouped by their values of every key but ``seed``, in grid order: (values, rows)."""
    keys = [k for k in grid if k != "seed"]
    out: dict[tuple, tuple[dict[str, Any], list[dict]]] = {}
    for r in rows:
        key = tuple(format_value(r.get(k)) for k in keys)  # a value may be a list: compare its YAML
        out.setdefault(key, ({k: r.get(k) for k in keys}, []))[1].append(r)
    return list(out.values())


def over_seeds(values: dict[str, Any], points: list[dict]) -> dict[str, Any]:
    """One configuration's row of summary-seeds.csv from its points' rows of summary.csv.

    ``seeds`` counts the points that exist (have a run folder), ``completed`` and ``diverged`` those that
    ended so; ``params`` is the models' parameter count; every field of :data:`SEED_FIELDS` gets its mean,
    sample sd (None with one value), n, the 95 % confidence interval of the mean (Student t, None with one
    value), min and max over the seeds that did not diverge and have a finite value (None where none has).
    ``statuses`` counts the points by status, missing ones included.
    """
    statuses = [p.get("status") or "unknown" for p in points]
    row: dict[str, Any] = dict(values)
    row["seeds"] = sum(st not in NOT_RUN for st in statuses)
    row["completed"] = statuses.count("completed")
    row["diverged"] = statuses.count("diverged")
    row["params"] = evidence.params(points)
    row["statuses"] = {st: statuses.count(st) for st in dict.fromkeys(statuses)}
    for f in SEED_FIELDS:
        vals = evidence.healthy(points, f)
        got = {**describe(vals), **stats.summarize(vals)} if vals else {}
        got["std"] = got.get("sd")
        row.update({f"{f}_{st}": got.get(st) for st in STATS})
    return row


def aggregate_seeds(rows: list[dict], grid: dict[str, list], select: Selection | None = None) -> list[dict]:
    """summary-seeds.csv's rows: one per configuration (:func:`configurations`), :func:`over_seeds` each; with a
    selection, ``selected`` says whether the configuration is its arm's chosen one."""
    configs = configurations(rows, grid)
    out = [over_seeds(values, points) for values, points in configs]
    if select is not None:
        for row, chosen in zip(out, evidence.choose(configs, select)):
            row["selected"] = chosen
    return out


def seed_columns(grid: dict[str, list], select: Selection | None = None) -> list[str]:
    return ([k for k in grid if k != "seed"] + (["selected"] if select is not None else [])
            + ["seeds", "completed", "diverged", "params"] + [f"{f}_{st}" for f in SEED_FIELDS for st in STATS])


def write_seeds_csv(root: Path, sweep: Sweep, rows: list[dict]) -> Path:
    files.write_csv(root / files.SUMMARY_SEEDS_CSV, seed_columns(sweep.grid, sweep.select),
                    aggregate_seeds(rows, sweep.grid, sweep.select), csv_cell)
    return root / files.SUMMARY_SEEDS_CSV


def difference_columns(grid: dict[str, list], select: Selection | None) -> list[str]:
    keys = [k for k in grid if k != "seed" and (select is None or k != select.key)]
    return keys + ["against"] + (["chosen", "chosen_against"] if select is not None else []) + [
        "field", "n", "n_against", "diff", "ci_low", "ci_high", "df", "p", "params", "params_against"]


def write_differences_csv(root: Path, sweep: Sweep, rows: list[dict]) -> list[dict]:
    """differences.csv (:func:`skipexp.experiments.sweep.evidence.differences`); its rows."""
    diffs = evidence.differences(configurations(rows, sweep.grid), sweep.grid, sweep.baseline, sweep.select)
    files.write_csv(root / files.DIFFERENCES_CSV, difference_columns(sweep.grid, sweep.select), diffs, csv_cell)
    return diffs


def chosen_point_names(root: Path) -> set[str] | None:
    """The folder names of a sweep folder's chosen configurations' points (its ``select``), from their
    summaries on disk; None for a sweep without a selection."""
    sweep, rows = collect(root, refresh=False)
    if sweep.select is None:
        return None
    return {str(p["point"]) for p in chosen_points(rows, sweep)[0]}


def chosen_points(rows: list[dict], sweep: Sweep) -> tuple[list[dict], dict[str, list]]:
    """The points of the chosen configurations and the grid without the selected key (what the plots draw);
    without a selection, every point and the grid."""
    if sweep.select is None:
        return rows, sweep.grid
    configs = configurations(rows, sweep.grid)
    kept = [p for (_, points), c in zip(configs, evidence.choose(configs, sweep.select)) if c for p in points]
    return kept, {k: v for k, v in sweep.grid.items() if k != sweep.select.key}


def dataset(root: Path, rows: list[dict]) -> str | None:
    """The dataset of the sweep's points, read from the first point's config.yaml that can be read."""
    for r in rows:
        run_dir = root / str(r.get("point"))
        if r.get("status") in NOT_RUN or not (run_dir / files.CONFIG).is_file():
            continue
        try:
            return str(files.read_config_dict(run_dir)["data"]["dataset"])
        except (OSError, KeyError, TypeError, ValueError):
            continue
    return None


def rebuild(root: Path, refresh: bool = True, html: bool = True) -> tuple[Sweep, list[dict], list[Path]]:
    """summary.csv (summary-seeds.csv where seeds are swept), plots and (unless ``html`` is False) report.html
    of a sweep folder, from disk: what ``sweep`` ends with and ``report`` redoes."""
    from skipexp.views import plots_sweep

    sweep, rows = collect(root, refresh)
    write_summary_csv(root, sweep, rows)
    if seeds_swept(sweep.grid) or sweep.select is not None:
        write_seeds_csv(root, sweep, rows)
    if seeds_swept(sweep.grid):
        write_differences_csv(root, sweep, rows)
    from skipexp.views import style

    data, n = dataset(root, rows), len(sweep.grid.get("seed", [None]))
    about = ", ".join(x for x in (data, f"{n} seed{'s' if n > 1 else ''}") if x)
    if sweep.select is not None:
        about += (f", {style.axis_label(sweep.select.key)} chosen per configuration on "
                  f"{style.FIELD_WORDS.get(sweep.select.by, sweep.select.by)}")
    title = f"sweep {sweep.name}"
    shown, grid = chosen_points(rows, sweep)
    formats = style.formats_of(next((root / str(r["point"]) for r in rows if r.get("status") not in NOT_RUN), None))
    plots = plots_sweep.plot_sweep(shown, grid, root / files.PLOTS, title=f"{title} ({about})",
                                   variants=sweep.variants, formats=formats)
    plots.append(plots_sweep.plot_sweep_curves(configurations(shown, grid), grid, root,
                                               root / files.PLOTS / files.CURVES_PNG, title, data, sweep.variants,
                                               formats))
    folders = folder_points(root)
    if any(event_files(d) for _, _, d in folders if d.is_dir()):   # points wrote events as they trained
        write_hparams(root, [(values, d) for _, values, d in folders])
    if html:
        write_sweep(root, sweep, rows, configurations(rows, sweep.grid),
                    aggregate_seeds(rows, sweep.grid) if seeds_swept(sweep.grid) else None,
                    [run_dir for _, _, run_dir in folders])
    return sweep, rows, plots
