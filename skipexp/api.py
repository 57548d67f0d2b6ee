"""skipexp from Python: folders on disk as tidy rows, and training from a config dict.

For notebooks::

    import skipexp

    runs = skipexp.train("configs/skip.yaml", ["model.depth=8", "seed=[0,1]"], out="runs")
    df = skipexp.load(runs)                     # one row per run: who it is, its summary, its config
    steps = skipexp.curves(runs, "metrics")     # one row per (run, logged step)

:func:`load` and :func:`curves` read what a run, comparison or sweep folder holds and write nothing, so
they are safe on folders that are still training. They return a pandas DataFrame when pandas is installed
and a list of dicts otherwise. :func:`train` loads, checks and trains a config exactly as ``skipexp train``
does, without the progress bar.

Importing this module is cheap: torch loads only when :func:`train` runs.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import value as format_value
from skipexp.core.machine import openmp_wait
from skipexp.experiments.report import kind_of
from skipexp.rundir import files, runio
from skipexp.rundir.summary import summarize

if TYPE_CHECKING:
    import pandas

    from skipexp.core.config import RunConfig
    from skipexp.training.run import RunResult

PathLike = Union[str, "os.PathLike[str]"]
# what load and curves accept: a folder, a training result (its run folder), or several of them
Folders = Union[PathLike, "RunResult", Iterable[Union[PathLike, "RunResult"]]]
Rows = Union["pandas.DataFrame", list[dict[str, Any]]]

# The per-step CSVs of a run folder that :func:`curves` reads: name -> (file, what a row holds).
CURVES: dict[str, tuple[str, str]] = {
    "metrics": (files.METRICS, "train loss, accuracy, learning rate and total gradient norm every log.every steps"),
    "eval": (files.EVAL, "test loss and accuracy at each evaluation"),
    "grad_norms": (files.GRAD_NORMS, "the gradient norm of every weight layer, one column per layer"),
    "act_grad_norms": (files.ACT_GRAD_NORMS, "the norm of dloss/dh at every block boundary h0..hL"),
    "act_norms": (files.ACT_NORMS, "the RMS of the activations at every block boundary h0..hL"),
}


# --- reading folders -----------------------------------------------------------------------------

def load(path: Folders, *, as_frame: bool | None = None) -> Rows:
    """One row per run below a run, comparison or sweep folder: who it is, its summary, its config.

    A row holds, in this order: the run's identity (``member`` for a comparison; ``point`` and the grid
    values for a sweep; then ``run``, ``seed`` and ``path``, its folder), its summary (``status``, ``steps``,
    ``steps_per_s``, final and best losses and accuracies, gradient ratios: the fields of its
    ``summary.json``) and its resolved config as dotted keys (``model.depth``, ``train.lr``, ...).
    A comparison member or sweep point that never started is a row with its identity and its status
    (``not started`` / ``missing``). Nothing is written; a run without a current ``summary.json``
    (still running, crashed) is summarized from its CSVs.

    ``path`` may also be a training result or a list of folders and results: their rows, one after another.
    ``as_frame``: True for a pandas DataFrame, False for a list of dicts, None (default) for a DataFrame
    when pandas is installed.

    Example::

        df = skipexp.load("runs/sweep-depth")
        df.pivot_table(index="model.depth", columns="model.skip.kind", values="final_test_acc")
    """
    rows = [_run_row(entry) for folder in _folders(path) for entry in _entries(folder)]
    return _table(rows, as_frame)


def curves(path: Folders, file: str = "metrics", *, as_frame: bool | None = None) -> Rows:
    """The logged series of every run below a folder, long form: one row per (run, logged step).

    A row is the run's identity (as in :func:`load`: ``member`` or ``point`` and the grid values, then
    ``run``, ``seed``, ``path``) followed by the columns of the run's CSV named by ``file``: ``metrics``
    (the default), ``eval``, ``grad_norms``, ``act_grad_norms`` or ``act_norms`` (see :data:`CURVES`).
    ``step`` and ``epoch`` are integers, every other value a float. Runs compared with different layer
    counts have different ``grad_norms`` columns; a DataFrame leaves the cells a run lacks empty (NaN).

    Example::

        c = skipexp.curves("runs/compare-20260101-120000", "eval")
        c.pivot_table(index="step", columns="member", values="test_acc").plot()   # mean over each member's seeds
    """
    if file not in CURVES:
        raise SkipexpError(f"unknown file {file!r}; choose from {', '.join(CURVES)}", key="file")
    rows = []
    for folder in _folders(path):
        for entry in _entries(folder):
            ident, run_dir, _ = entry
            if not _is_run(run_dir):
                continue
            who = _identity(entry)
            for r in runio.read_csv(run_dir / CURVES[file][0]):
                rows.append({**who, **{k: _step_int(k, v) for k, v in r.items()}})
    return _table(rows, as_frame)


Entry = tuple[dict[str, Any], Path, str]  # (identity from the folder's plan, run folder, status if absent)


def _folders(path: Folders) -> list[Path]:
    if isinstance(path, (str, os.PathLike)) or hasattr(path, "run_dir"):
        items = [path]
    else:
        try:
            items = list(path)
        except TypeError:
            raise SkipexpError(f"expected a folder (a path or a training result), got {type(path).__name__}") \
                from None
    folders = []
    for item in items:
        item = getattr(item, "run_dir", item)  # a RunResult stands for its run folder
        if not isinstance(item, (str, os.PathLike)):
            raise SkipexpError(f"expected a folder (a path or a training result), got {type(item).__name__}")
        folders.append(Path(item))
    return folders


def _entries(folder: Path) -> list[Entry]:
    """The runs a folder holds, whatever its kind (told apart as ``skipexp report`` does)."""
    return _ENTRIES[kind_of(folder)](folder)


def _run_entries(folder: Path) -> list[Entry]:
    return [({}, folder, "missing")]


def _compare_entries(folder: Path) -> list[Entry]:
    from skipexp.experiments import compare

    plan = files.read_json(folder / files.SUMMARY)
    return [({"member": m["name"]}, folder / rel, "not started")
            for m in plan.get("members", []) for rel in compare.member_runs(m)]


def _sweep_entries(folder: Path) -> list[Entry]:
    from skipexp.experiments.sweep import spec

    return [({"point": name, **values}, run_dir, "missing") for name, values, run_dir in spec.folder_points(folder)]


_ENTRIES = {"run": _run_entries, "compare": _compare_entries, "sweep": _sweep_entries}


def _is_run(run_dir: Path) -> bool:
    return runio.is_run_dir(run_dir)


def _config(run_dir: Path) -> dict[str, Any]:
    """config.yaml of a run as dotted keys (the config it trained with, every default filled in)."""
    import yaml

    from skipexp.core.config import flatten
    from skipexp.core.yamlio import parse

    try:
        raw = parse((run_dir / files.CONFIG).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SkipexpError(f"unreadable config.yaml ({e.__class__.__name__})", file=str(run_dir)) from None
    return flatten(raw) if isinstance(raw, dict) else {}


def _identity(entry: Entry, cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """Who a run is: the folder's plan (member, sweep point and grid values), then run name, seed, folder."""

    ident, run_dir, _ = entry
    who = dict(ident)
    if not _is_run(run_dir):
        return {**who, "run": run_dir.name, "path": str(run_dir)}
    cfg = _config(run_dir) if cfg is None else cfg
    # grid values as the run resolved them (a sweep file's "1e-3" is the float 0.001 in the config)
    who.update((k, cfg[k]) for k in ident if k in cfg)
    meta = files.read_json(run_dir / files.META)
    return {**who, "run": meta.get("name", run_dir.name), "seed": meta.get("seed", cfg.get("seed")),
            "path": str(run_dir)}


def _summary(run_dir: Path) -> dict[str, Any]:
    """summary.json where it says the run's current status, else the summary its CSVs give now."""
    status = runio.effective_status(files.read_json(run_dir / files.META))
    if (run_dir / files.SUMMARY).is_file():
        s = files.read_json(run_dir / files.SUMMARY)
        if s.get("status") == status:
            return s
    return summarize(run_dir)


def _run_row(entry: Entry) -> dict[str, Any]:
    from skipexp.core.config import flatten

    _, run_dir, absent = entry
    if not _is_run(run_dir):
        return {**_identity(entry), "status": absent}
    cfg = _config(run_dir)
    row = _identity(entry, cfg)
    row.update((k, _number(v)) for k, v in flatten(_summary(run_dir)).items() if k != "name")
    row.update((k, v) for k, v in cfg.items() if k not in ("name", "seed"))  # name and seed: in the identity
    return row


def _number(v: Any) -> Any:
    # summary.json spells infinities as strings (JSON has none); a frame wants the float
    return float(v) if v in ("inf", "-inf", "nan") else v


def _step_int(key: str, v: float) -> float | int:
    return int(v) if key in ("step", "epoch") and v == v and abs(v) != float("inf") else v


def _table(rows: list[dict[str, Any]], as_frame: bool | None) -> Rows:
    if as_frame is False:
        return rows
    try:
        import pandas as pd
    except ImportError:
        if as_frame:
            raise SkipexpError("as_frame=True needs pandas, which is not installed; pip install pandas") from None
        return rows
    return pd.DataFrame(rows)


# --- training ------------------------------------------------------------------------------------

def train(config: PathLike | Mapping[str, Any] | RunConfig,
          overrides: Sequence[str] | Mapping[str, Any] | str = (), *,
          out: PathLike = "runs", name: str | None = None, device: str | None = None,
          threads: int | None = None, run_dir: PathLike | None = None, plots: bool = True) -> list[RunResult]:
    """Train a config as ``skipexp train`` does, quietly; return one result per seed.

    ``config`` is a YAML file, a dict with the same keys as one, or a ``RunConfig``. ``overrides`` are
    dotted ``KEY=VALUE`` strings as on the command line (``["model.depth=8", "seed=[0,1]"]``) or a dict
    (``{"model.depth": 8}``). ``name``, ``device`` and ``threads`` are the command's ``--name``,
    ``--device`` and ``--threads``. Each seed gets a run folder in ``out`` (``<time>-<name>[-seed<N>]``),
    or ``run_dir`` exactly (``run_dir-seed<N>`` for several seeds), which must not exist yet.

    A result has ``run_dir``, ``status`` (completed, diverged; a KeyboardInterrupt leaves the run
    ``interrupted`` and resumable with ``skipexp resume``) and ``summary`` (the run's summary.json).
    A bad config raises :class:`~skipexp.core.errors.SkipexpError` before anything is written.

    Example::

        runs = skipexp.train({"model": {"depth": 8}, "train": {"steps": 200}}, {"model.skip.kind": "none"})
        runs[0].summary["final_test_acc"]
    """
    _check_types(out=(out, "a folder (a str or a path)", (str, os.PathLike), False),
                 run_dir=(run_dir, "a folder (a str or a path) or None", (str, os.PathLike), True),
                 name=(name, "a str or None", str, True), device=(device, "a str or None", str, True),
                 threads=(threads, "an int or None", int, True), plots=(plots, "True or False", bool, False))
    cfg, source = _load_config(config, overrides, name=name, device=device, threads=threads)
    out, run_dir = Path(out), None if run_dir is None else Path(run_dir)
    runio.check_writable(out if run_dir is None else run_dir.parent)
    openmp_wait()  # as the command does, before torch loads
    from skipexp.training.fit import train_config  # torch: only once a config is trained
    from skipexp.views.run_views import RunViews

    with _keep_pyplot_backend():
        try:
            return train_config(cfg, out, run_dir, views=RunViews(plots))
        except SkipexpError as e:  # a value found wrong only at run time (device, data sizes)
            raise (e.with_file(source) if source else e) from None


def _check_types(**given: tuple[Any, str, Any, bool]) -> None:
    """A clear error for an argument of the wrong type (``out=123``), before it meets pathlib or torch:
    name -> (value, what it must be, the types it may have, whether None is allowed)."""
    for key, (v, what, types_, none_ok) in given.items():
        if (v is None and none_ok) or (isinstance(v, types_) and not (types_ is int and isinstance(v, bool))):
            continue
        raise SkipexpError(f"must be {what}, got {v!r}", key=key)


def _load_config(config: Any, overrides: Any, **options: Any) -> tuple[RunConfig, str | None]:
    """The RunConfig and, for a file, its path: through the functions ``skipexp train`` reads configs with."""
    from skipexp.core import config as config_mod
    from skipexp.core import yamlio

    extra = _override_strings(overrides) + config_mod.option_overrides(**options)
    if isinstance(config, (str, os.PathLike)):
        return config_mod.load(config, extra), str(config)
    default_name = "run"
    if isinstance(config, config_mod.RunConfig):
        import yaml

        default_name, config = config.name or default_name, yaml.safe_load(config_mod.dump(config))
    if not isinstance(config, Mapping):
        raise SkipexpError(f"expected a config file, a dict or a RunConfig, got {type(config).__name__}",
                           key="config")
    raw = yamlio.apply_overrides(_plain(config), extra)
    return config_mod.from_dict(raw, default_name=default_name), None


def _plain(m: Mapping[str, Any]) -> dict[str, Any]:
    """Nested mappings as plain dicts, which is what the config reader takes from YAML."""
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in m.items()}


def _override_strings(overrides: Any) -> list[str]:
    if isinstance(overrides, str):
        return [overrides]
    if isinstance(overrides, Mapping):
        return [f"{k}={format_value(v)}" for k, v in overrides.items()]
    if not isinstance(overrides, Iterable) or isinstance(overrides, bytes):
        raise SkipexpError(f"must be KEY=VALUE strings (a list, or one string) or a dict of dotted keys, got "
                           f"{overrides!r}", key="overrides")
    items = list(overrides)
    bad = next((o for o in items if not isinstance(o, str)), None)
    if bad is not None:
        raise SkipexpError(f"overrides are KEY=VALUE strings or a dict of dotted keys, got {bad!r}", key="overrides")
    return items


class _keep_pyplot_backend:
    """The run's plots select matplotlib's Agg backend; a notebook that already drew inline keeps its own."""

    def __enter__(self) -> None:
        self.before = None
        if "matplotlib.pyplot" in sys.modules:
            self.before = sys.modules["matplotlib"].get_backend()

    def __exit__(self, *exc: object) -> None:
        if self.before is not None and sys.modules["matplotlib"].get_backend() != self.before:
            sys.modules["matplotlib.pyplot"].switch_backend(self.before)
