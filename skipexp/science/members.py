"""What the measurements of trained runs share: the runs of a folder, their models and data, and the
tables over them.

A measurement command takes a run folder, a comparison folder (``runs/<member>/``) or a sweep folder
(one folder per grid point). Each run gets its own files; a folder of several also gets
``<measure>.csv`` (a row per run: its label, seed, swept values and numbers) and, where runs differ only
in their seed, ``<measure>-seeds.csv`` (per net: mean, sample sd, n and a 95 % confidence interval of
every number over its seeds).
"""
from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skipexp.core import stats
from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import csv_cell
from skipexp.core.fmt import value as format_value
from skipexp.rundir import files, runio

if TYPE_CHECKING:
    import torch

    from skipexp.core import data as data_mod
    from skipexp.core.config import RunConfig
    from skipexp.core.models import SkipNet


# --- statistics over seeds -----------------------------------------------------------------------------

def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """:func:`skipexp.core.stats.summarize` of the finite values (a diverged seed's NaN counts as none)."""
    return stats.summarize([float(v) for v in values if v is not None and math.isfinite(float(v))])


STATS = ("mean", "sd", "n", "ci_low", "ci_high")


# --- the runs of a folder -------------------------------------------------------------------------------

@dataclass
class Member:
    run_dir: Path
    label: str                 # the net, without its seed: what a figure's legend says
    seed: int
    values: dict[str, Any] = field(default_factory=dict)   # a sweep point's swept values, seed included


@dataclass
class Folder:
    path: Path
    kind: str                  # run | compare | sweep
    members: list[Member]
    grid: dict[str, list] = field(default_factory=dict)    # a sweep's grid ({} otherwise)

    @property
    def keys(self) -> list[str]:
        """The swept keys but the seed: what tells one configuration from another."""
        return [k for k in self.grid if k != "seed"]

    def several_seeds(self) -> bool:
        nets: dict[str, int] = {}
        for m in self.members:
            nets[m.label] = nets.get(m.label, 0) + 1
        return any(n > 1 for n in nets.values())


@dataclass
class Result:
    """What a measurement of a folder returns: the folder, a row per run, the tables and figures it wrote."""
    folder: Folder
    rows: list[dict]          # a row per run: label, seed, swept values, numbers
    tables: list[Path]        # the folder's <measure>.csv and <measure>-seeds.csv
    plots: list[Path]


def folder(path: Path) -> Folder:
    """The runs of a run, comparison or sweep folder with a checkpoint to measure; an error names what is
    missing. A sweep's points without a run folder are left out; of a sweep with ``select``, only the chosen
    configurations' points are measured, and the selected key is no axis of its figures."""
    from skipexp.experiments.sweep.results import chosen_point_names
    from skipexp.experiments.sweep.spec import folder_points, is_sweep_dir, load_folder
    from skipexp.science.lesion import member_runs, without_seed

    if not path.is_dir():
        raise SkipexpError("no such folder", file=str(path))
    if runio.is_run_dir(path):
        runio.require_run_dir(path)
        cfg = files.read_config_dict(path)
        return Folder(path, "run", [Member(path, _label(cfg, cfg.get("name") or path.name), _seed(cfg))])
    if is_sweep_dir(path):
        sweep = load_folder(path)
        chosen = chosen_point_names(path)   # with select: the chosen configurations' points, as the tables show
        grid = {k: v for k, v in sweep.grid.items() if sweep.select is None or k != sweep.select.key}
        members = []
        for name, values, run_dir in folder_points(path):
            if runio.is_run_dir(run_dir) and (chosen is None or name in chosen):
                label = ", ".join(words(k, v) for k, v in values.items() if k != "seed")
                members.append(Member(run_dir, label or "point", _seed(files.read_config_dict(run_dir)), values))
        if not members:
            raise SkipexpError("a sweep folder without any trained point", file=str(path))
        return Folder(path, "sweep", members, grid)
    dirs = member_runs(path)
    if not dirs:
        raise SkipexpError("neither a run folder nor a folder of run folders (a comparison's runs/<member>/, "
                           "or a sweep folder)", file=str(path))
    cfgs = [files.read_config_dict(d) for d in dirs]
    names = [c.get("name") or d.name for c, d in zip(cfgs, dirs)]
    members = []
    for d, cfg, name in zip(dirs, cfgs, names):
        if names.count(name) > 1:   # runs that share a config name are told apart by their folders
            name = d.name
        members.append(Member(d, without_seed(_label(cfg, name)), _seed(cfg)))
    return Folder(path, "compare", members)


def words(key: str, value: Any) -> str:
    """A swept key's value as figures and tables name it: ``4 blocks``, ``plain``, ``identity skips``, a named
    axis's label as it is, else the key's last word and the value (``lr 0.05``)."""
    v = format_value(value)
    if key == "model.depth":
        return f"{v} blocks"
    if key == "model.skip.kind":
        return "plain" if value == "none" else f"{v} skips"
    if "." not in key:   # a named axis: its labels are words already
        return v if key != "seed" else f"seed {v}"
    return f"{key.rsplit('.', 1)[-1]} {v}"


def axis_words(key: str) -> str:
    """A swept key as an axis label: ``depth (blocks)``, else its last word."""
    return "depth (blocks)" if key == "model.depth" else key.rsplit(".", 1)[-1]


def _seed(cfg: dict) -> int:
    s = cfg.get("seed", 0)
    return int(s[0] if isinstance(s, list) else s)


def _label(cfg: dict, name: str) -> str:
    """A run's name, with its kind of skip in words where the name does not say it (``skip (identity
    skips)``; ``plain`` as it is)."""
    kind = str(((cfg.get("model") or {}).get("skip") or {}).get("kind", ""))
    said = words("model.skip.kind", kind)
    return name if not kind or kind in name or said in name else f"{name} ({said})"


# --- a run's model (trained, or as it was drawn) and data ---------------------------------------------

@dataclass
class Loaded:
    cfg: RunConfig
    trained: SkipNet
    splits: data_mod.Splits
    step: int          # the checkpoint's step

    def initial(self) -> SkipNet:
        """The model as training drew it: the run's seed, the same draws in the same order
        (skipexp.training.setup.setup), without touching the process's random state."""
        import torch

        from skipexp.core import nets

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seeds[0])
            return nets.build(self.cfg, self.splits.input_dim, self.splits.num_classes).eval()

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` training examples (all of them where there are fewer): the same for every run of
        the same data, so members of a folder are measured on one sample."""
        return self.splits.x_train[:n], self.splits.y_train[:n]


def load(run_dir: Path, cache: dict | None = None, progress: data_mod.Progress | None = None) -> Loaded:
    """A run's config, its last checkpoint's model (CPU, eval mode) and its data; ``cache`` keeps the data
    that several runs share, loaded once."""
    from skipexp.core import data as data_mod
    from skipexp.training.checkpoint import load_trained

    cache = {} if cache is None else cache

    def splits_for(cfg: RunConfig) -> data_mod.Splits:
        key = repr(cfg.data)
        if key not in cache:
            cache[key] = data_mod.load(cfg.data, progress)
        return cache[key]

    cfg, model, splits, step = load_trained(run_dir, splits_for, "measure")
    return Loaded(cfg, model, splits, step)


def set_threads(cfg: RunConfig, rows: int) -> int:
    """torch threads for a measurement that pushes ``rows`` examples through the model at once: the rule
    training uses (skipexp.training.threads), for that many rows in place of a batch."""
    import torch

    from skipexp.training.threads import choose_threads

    n = choose_threads(cfg.replace(train=dataclasses.replace(cfg.train, batch_size=rows)))
    torch.set_num_threads(n)
    return n


# --- tables over the runs of a folder -------------------------------------------------------------------

def member_rows(f: Folder, numbers: list[dict]) -> list[dict]:
    """Rows of ``<measure>.csv``: each member's label, seed, folder and swept values, then its numbers."""
    return [{"label": m.label, "seed": m.seed, "run": m.run_dir.name, **{k: m.values.get(k) for k in f.keys},
             **nums} for m, nums in zip(f.members, numbers)]


def seed_rows(f: Folder, rows: list[dict], fields: list[str]) -> list[dict]:
    """Rows of ``<measure>-seeds.csv``: per net (label) in first-seen order, every field's statistics."""
    nets: dict[str, list[dict]] = {}
    for r in rows:
        nets.setdefault(r["label"], []).append(r)
    out = []
    for label, group in nets.items():
        row: dict[str, Any] = {"label": label, **{k: group[0].get(k) for k in f.keys}, "seeds": len(group)}
        for name in fields:
            stats = summarize(r.get(name) for r in group if isinstance(r.get(name), (int, float)))
            row.update({f"{name}_{s}": stats[s] for s in STATS})
        out.append(row)
    return out


def write_tables(f: Folder, measure: str, rows: list[dict], fields: list[str]) -> list[Path]:
    """``<measure>.csv`` in a folder of several runs, and ``<measure>-seeds.csv`` where a net has several
    seeds; nothing for a lone run (its own files say it all)."""
    if f.kind == "run":
        return []
    written = [f.path / f"{measure}.csv"]
    files.write_csv(written[0], ["label", "seed", "run", *f.keys, *fields], rows, csv_cell)
    if f.several_seeds():
        written.append(f.path / f"{measure}-seeds.csv")
        files.write_csv(written[1], ["label", *f.keys, "seeds", *[f"{n}_{s}" for n in fields for s in STATS]],
                        seed_rows(f, rows, fields), csv_cell)
    return written


def read_rows(path: Path) -> list[dict]:
    """A table written by :func:`write_tables`, numbers as floats (empty cells None)."""
    def cell(v: str) -> Any:
        if v == "":
            return None
        try:
            return float(v)
        except ValueError:
            return v

    with open(path, newline="") as fh:
        return [{k: cell(v) for k, v in r.items()} for r in csv.DictReader(fh)]
