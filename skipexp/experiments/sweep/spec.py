"""The sweep file, its points and their names (the commands that run them: :mod:`.commands`).

A sweep file names a base config and a grid of dotted keys::

    name: depth                 # the sweep folder is <out>/sweep-depth/
    base: ../skip.yaml          # relative to the sweep file
    grid:
      model.depth: [2, 4, 8]
      model.skip.kind: [none, identity]
      seed: [0, 1, 2]

    overrides:                  # optional: fixed values for every point (not in the point names)
      train.epochs: 2
    select: {key: train.lr, by: final_val_loss}   # optional: choose lr per configuration (.evidence)
    baseline: {model.skip.kind: none}             # optional: what differences are taken against

A grid entry may instead be a *named axis*: a mapping of labels to variants, each variant a mapping of
dotted keys to one value (``{}``: the base as is), for variants that set several keys at once::

    grid:
      shortcut:
        identity:   {model.skip.kind: identity}
        projection: {model.skip.kind: projection, model.skip.project: always}
      seed: [0, 1]

A point holds the label (``shortcut=projection``: names, tables and plots show it, a category like a
string value) and trains with the variant's keys. The axis name is a plain word that is no config key.

Every combination is a :class:`Point`. Its folder is named from its values in grid order, with the
``model.`` prefix dropped (``depth=8,skip.kind=none,seed=1``), and its folder is what the self-contained
``skipexp train BASE FIXED=VALUE... KEY=VALUE... --run-dir DIR --resume`` would write alone. Unless the
base, the fixed overrides or the grid set ``log.plots``, points draw no plots of their own
(``log.plots=false`` is one of their fixed overrides): the sweep draws its own, and ``skipexp report
<point>`` draws a point's on demand. Points that
train together form a group (:mod:`.groups`), and ``--list`` prints one command per group,
``skipexp sweep <sweep folder>/sweep.yaml --group N``, the Makefile one target per group. A sweep may also
come from the command line (:mod:`.overrides`).
"""
from __future__ import annotations

import difflib
import itertools
import re
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from skipexp.core import config as config_mod
from skipexp.core import yamlio
from skipexp.core.config import RunConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import short_key, value
from skipexp.experiments.sweep.evidence import Selection, read_baseline, read_select
from skipexp.experiments.sweep.slurm_options import from_section, section
from skipexp.rundir import files, runio
from skipexp.rundir.reuse import NEUTRAL_KEYS, config_differences, folder_state, stored_config

SWEEP_KEYS = ("name", "base", "grid", "overrides", "select", "baseline", "slurm")
NAME = re.compile(r"[\w.+-]+")  # a sweep name is a folder name: sweep-<name>
AXIS_NAME = re.compile(r"[A-Za-z_][\w-]*")  # a named axis: a plain word, so it reads as no dotted key
PLOTS_KEY = "log.plots"

# --- the sweep file ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sweep:
    name: str
    base: Path             # the base config, resolved against the sweep file's folder
    grid: dict[str, list]  # dotted key (or named axis) -> values (its labels), in file order
    source: Path           # the sweep file itself (for a grid on the command line: the run config)
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted key -> the one value of every point
    args: tuple[str, ...] = ()  # the command-line words after the file that shaped it (to say how to rerun it)
    inline: bool = False   # the grid came from the command line, not from a sweep file
    variants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # named axis -> label ->
    #   {dotted key: value}; its labels are grid[axis], in the same order
    slurm: dict[str, Any] = field(default_factory=dict)  # the slurm: section (.slurm_options), for --backend slurm
    select: Selection | None = None    # the axis chosen per configuration on held-out data (.evidence)
    baseline: dict[str, Any] | None = None   # what differences are taken against (.evidence)

    def settings(self, values: dict[str, Any]) -> dict[str, Any]:
        """A point's dotted keys and values: a named axis's label gives its variant's keys."""
        out: dict[str, Any] = {}
        for k, v in values.items():
            out.update(self.variants[k][v] if k in self.variants else {k: v})
        return out

    def grid_file(self) -> dict[str, Any]:
        """The grid as a sweep file writes it: lists, and the named axes' variants."""
        return {k: self.variants.get(k, v) for k, v in self.grid.items()}

    def command(self) -> list[str]:
        """The ``skipexp sweep ...`` words that give this sweep again."""
        return ["skipexp", "sweep", _display_path(self.source), *self.args]


@dataclass(frozen=True)
class Point:
    name: str                  # folder name, e.g. depth=8,skip.kind=none,seed=1
    values: dict[str, Any]     # dotted key -> value
    argv: list[str]            # ["skipexp", "train", BASE, KEY=VALUE..., "--run-dir", DIR, "--resume"]
    run_dir: Path
    cfg: RunConfig | None = field(default=None, compare=False)  # the resolved config, checked


def load(path: Path) -> Sweep:
    """Read and check a sweep file (not yet its points: see :func:`points`)."""
    raw = yamlio.read_yaml(path)
    for k in raw:
        if k not in SWEEP_KEYS:
            hint = difflib.get_close_matches(str(k), SWEEP_KEYS, n=1)
            did = f' (did you mean "{hint[0]}"?)' if hint else ""
            raise SkipexpError(f"unknown key{did}; a sweep file has {', '.join(SWEEP_KEYS)}", file=str(path), key=k)
    name = raw.get("name", Path(path).stem)
    check_name(name, file=str(path), key="name")
    if not isinstance(raw.get("base"), str):
        raise SkipexpError("the base config file (relative to this file) is required, e.g. base: ../skip.yaml",
                           file=str(path), key="base")
    base = (Path(path).parent / raw["base"]).resolve()
    if not base.is_file():
        raise SkipexpError(f"no such file: {base}", file=str(path), key="base")
    clean, variants = read_grid(raw.get("grid"), file=str(path))
    fixed = raw.get("overrides", {})
    if not isinstance(fixed, dict):
        raise SkipexpError("must be a mapping of dotted keys to one value each, e.g. train.epochs: 2",
                           file=str(path), key="overrides")
    for k in fixed:
        if k == "name":
            raise SkipexpError("points are named from their values; name cannot be set for them", file=str(path),
                               key="overrides.name")
        if k in clean:
            raise SkipexpError("is also a grid key; give it in one place", file=str(path), key=f"overrides.{k}")
    check_disjoint([*clean, *leaf_keys(fixed)], file=str(path))
    check_variant_keys(clean, {str(k): v for k, v in fixed.items()}, variants, file=str(path))
    select = read_select(raw.get("select"), clean, file=str(path))
    baseline = read_baseline(raw.get("baseline"), clean, select, file=str(path))
    slurm = section(from_section(raw.get("slurm"), str(path)))
    return Sweep(name, base, clean, Path(path), {str(k): v for k, v in fixed.items()}, variants=variants,
                 select=select, baseline=baseline, slurm=slurm)


def read_grid(grid: Any, *, file: str) -> tuple[dict[str, list], dict[str, dict[str, dict[str, Any]]]]:
    """A sweep file's ``grid``: (key -> values, named axis -> label -> variant), each entry checked alone."""
    if not isinstance(grid, dict) or not grid:
        raise SkipexpError("must be a mapping of dotted keys to lists of values, e.g. model.depth: [4, 8]",
                           file=file, key="grid")
    clean: dict[str, list] = {}
    variants: dict[str, dict[str, dict[str, Any]]] = {}
    for k, v in grid.items():
        k = str(k)
        if isinstance(v, dict):
            variants[k] = _read_named_axis(k, v, file)
            clean[k] = list(variants[k])
            continue
        values = v if isinstance(v, list) else [v]
        if not values:
            raise SkipexpError("has no values", file=file, key=f"grid.{k}")
        if k == "name":
            raise SkipexpError("points are named from their values; name cannot be swept", file=file,
                               key="grid.name")
        check_distinct(values, file=file, key=f"grid.{k}")
        clean[k] = values
    return clean, variants


def _read_named_axis(axis: str, labels: dict, file: str) -> dict[str, dict[str, Any]]:
    sections = [f.name for f in fields(RunConfig)]
    if not AXIS_NAME.fullmatch(axis) or axis in sections:
        raise SkipexpError(f"a named axis (a mapping of labels to variants) is named by a plain word that is no "
                           f"config key or section ({', '.join(sections)}), e.g. shortcut", file=file,
                           key=f"grid.{axis}")
    if not labels:
        raise SkipexpError("has no variants; give label: {dotted.key: value, ...} for each", file=file,
                           key=f"grid.{axis}")
    out: dict[str, dict[str, Any]] = {}
    for label, variant in labels.items():
        where = f"grid.{axis}.{label}"
        if not isinstance(label, str) or not NAME.fullmatch(label):
            raise SkipexpError(f"the label {label!r} names folders: a word of letters, digits and . _ - + "
                               f"(quote one that YAML reads as a number or a boolean)", file=file, key=where)
        if not isinstance(variant, dict):
            raise SkipexpError(f"a variant is a mapping of dotted keys to one value each, e.g. "
                               f"{{model.skip.kind: none}} ({{}}: the base as is), got {value(variant)}",
                               file=file, key=where)
        for k in variant:
            if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", k):
                raise SkipexpError(f"{k!r} is not a dotted key like model.skip.kind", file=file, key=where)
            if k == "name":
                raise SkipexpError("points are named from their values; name cannot be set for them",
                                   file=file, key=where)
        leaves = [leaf for k, v in variant.items() for leaf in leaf_keys({k: v})]
        for a in leaves:
            for b in leaves:
                if b.startswith(a + ".") or (a == b and leaves.count(a) > 1):
                    raise SkipexpError(f"sets {a} and {b} inside it; set one or the other"
                                       if a != b else f"sets {a} twice; set it once", file=file, key=where)
        out[label] = dict(variant)
    return out


def check_variant_keys(grid: dict[str, list], fixed: dict[str, Any],
                       variants: dict[str, dict[str, dict[str, Any]]], *, file: str | None = None) -> None:
    """A key a variant sets is set by nothing else (no grid key, fixed override or other named axis),
    and overlaps none of theirs: one would silently undo the other."""
    owners = {k: f"grid.{k}" for k in grid if k not in variants}
    owners.update({k: f"overrides.{k}" for k in leaf_keys(fixed)})
    for axis, labels in variants.items():
        mine: dict[str, str] = {}
        for label, variant in labels.items():
            for k in leaf_keys(variant):
                mine.setdefault(k, f"grid.{axis}.{label}")
        for k, where in mine.items():
            for other, by in owners.items():
                if other == k or other.startswith(k + ".") or k.startswith(other + "."):
                    raise SkipexpError(f"sets {k}, which {by} sets too; give each key in one place",
                                       file=file, key=where)
        owners.update(mine)


def leaf_keys(settings: dict[str, Any]) -> list[str]:
    """The dotted keys that settings really set: a mapping value merges into its section key by key
    (:func:`skipexp.core.yamlio.set_dotted`), so ``{model: {skip: {kind: none}}}`` sets ``model.skip.kind``
    and nothing else of ``model``."""
    return list(config_mod.flatten(settings))


def check_name(name: Any, *, file: str | None = None, key: str = "name") -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SkipexpError(f"{name!r} may hold only letters, digits and . _ - +", file=file, key=key)


def check_distinct(values: list, *, file: str | None = None, key: str) -> None:
    """An axis lists each value once: two equal values would be one point twice."""
    seen = set()
    for v in values:
        if value(v) in seen:
            raise SkipexpError(f"the value {value(v)} is listed twice", file=file, key=key)
        seen.add(value(v))


def check_disjoint(keys: list[str], *, file: str | None = None) -> None:
    """No key inside another (``model.skip`` and ``model.skip.kind``): one would silently undo the other."""
    for a in keys:
        if keys.count(a) > 1:
            raise SkipexpError("is set twice (a mapping sets the keys inside it); give it once", file=file, key=a)
        for b in keys:
            if b.startswith(a + "."):
                raise SkipexpError(f"overlaps {b}; set {a} or the keys inside it, not both", file=file, key=a)


def sweep_dir(sweep: Sweep, out: Path) -> Path:
    return out / f"sweep-{sweep.name}"


def point_name(values: dict[str, Any]) -> str:
    def one(v: Any) -> str:
        s = "+".join(one(x) for x in v) if isinstance(v, list) else value(v).strip("'\"")
        return re.sub(r"[^\w.+-]", "_", s)

    return ",".join(f"{short_key(k)}={one(v)}" for k, v in values.items())


def _display_path(p: Path) -> str:
    """A path relative to the current folder when it lies below it (shorter commands), else absolute."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p.resolve())


def sets_plots(sweep: Sweep, base_raw: dict[str, Any]) -> bool:
    """Whether the base, the fixed overrides or the grid (its variants too) say ``log.plots``."""
    keys = [*leaf_keys(sweep.overrides), *(k for k in sweep.grid if k not in sweep.variants),
            *(k for labels in sweep.variants.values() for variant in labels.values() for k in leaf_keys(variant))]
    return PLOTS_KEY in config_mod.flatten(base_raw) or any(
        k == PLOTS_KEY or PLOTS_KEY.startswith(k + ".") for k in keys)


def points(sweep: Sweep, out: Path) -> list[Point]:
    """Every grid point, each checked as a config now (a bad value fails before anything runs).

    A point's torch threads are its config's own (``train.threads``, else the choice for its model's size),
    so that it computes what a lone ``skipexp train`` of it computes. Points draw no plots of their own
    unless ``log.plots`` is set somewhere (each costs seconds, and the sweep draws its own)."""
    base_raw = yamlio.read_yaml(sweep.base)
    src = str(sweep.source)
    seeds = "seed=0,1,2 on the command line, seed: [0, 1, 2] in a sweep file"
    if isinstance(sweep.overrides.get("seed"), list):
        raise SkipexpError(f"a list is one value, and a point trains one seed; sweep the seeds instead ({seeds})",
                           file=src, key="seed")
    if isinstance(base_raw.get("seed"), list) and "seed" not in sweep.grid and "seed" not in sweep.overrides:
        raise SkipexpError(f"the base config has a list of seeds; sweep them instead ({seeds})",
                           file=src, key="base")

    def where(k: str | None) -> str | None:
        """An error's key: on the command line the key itself, in a sweep file its grid entry."""
        return k if sweep.inline else (f"grid.{k}" if k else "grid")

    fixed = [f"{k}={value(v)}" for k, v in sweep.overrides.items()]
    if not sets_plots(sweep, base_raw):
        fixed.append(f"{PLOTS_KEY}=false")
    root = sweep_dir(sweep, out)
    result, seen = [], set()
    for combo in itertools.product(*sweep.grid.values()):
        values = dict(zip(sweep.grid, combo))
        overrides = [f"{k}={value(v)}" for k, v in sweep.settings(values).items()]
        try:
            cfg = config_mod.load(sweep.base, fixed + overrides)
        except SkipexpError as e:
            key = where(e.key) if e.key in sweep.grid else (e.key or where(None))
            message = e.message
            for axis in sweep.variants:   # a key a variant sets: that variant's entry, and the key in it
                if any(e.key == k or str(e.key).startswith(k + ".") for k in sweep.variants[axis][values[axis]]):
                    key, message = f"grid.{axis}.{values[axis]}", f"{e.key}: {e.message}"
            raise SkipexpError(f"point {point_name(values)}: {message}", file=src, key=key) from None
        if len(cfg.seeds) != 1:
            raise SkipexpError(f"point {point_name(values)}: one seed per point", file=src, key=where("seed"))
        name = point_name(values)
        if name in seen:
            raise SkipexpError(f"two points share the folder name {name}", file=src, key=where(None))
        seen.add(name)
        run_dir = root / name
        _check_reusable(run_dir, cfg)
        argv = (["skipexp", "train", _display_path(sweep.base)] + fixed + overrides
                + ["--run-dir", _display_path(run_dir) if not run_dir.is_absolute() else str(run_dir), "--resume"])
        result.append(Point(name, values, argv, run_dir, cfg))
    return result


def _check_reusable(run_dir: Path, cfg: RunConfig) -> None:
    """A point folder that already holds a result (or a run to resume) of another config is refused now,
    before anything is written: the sweep folder belongs to another experiment (other fixed overrides, an
    edited base), and a point run now would sit beside points that are not comparable with it."""
    if folder_state(run_dir) not in ("done", "resume"):
        return
    diff = config_differences(stored_config(run_dir), cfg.to_dict(), NEUTRAL_KEYS)
    if diff:
        k, (old, new) = next(iter(diff.items()))
        raise SkipexpError(f"holds a run with {k}={old!r}, not {new!r}: the sweep folder holds another "
                           f"experiment; give this sweep another --name (or --out)", file=str(run_dir))


def write_sweep_file(sweep: Sweep, out: Path) -> Path:
    """``sweep.yaml`` in the sweep folder: the sweep with its base made absolute, so the folder explains
    itself and ``skipexp sweep <folder>/sweep.yaml`` runs it again."""
    root = sweep_dir(sweep, out)
    runio.check_writable(root)
    data = {"name": sweep.name, "base": str(sweep.base), "grid": sweep.grid_file()}
    if sweep.overrides:
        data["overrides"] = sweep.overrides
    if sweep.slurm:
        data["slurm"] = sweep.slurm
    if sweep.select is not None:
        data["select"] = sweep.select.to_dict()
    if sweep.baseline is not None:
        data["baseline"] = sweep.baseline
    text = yaml.safe_dump(data, sort_keys=False)
    files.atomic_write(root / files.SWEEP_FILE, f"# written by {shlex.join(sweep.command())}\n" + text)
    return root / files.SWEEP_FILE


def is_sweep_dir(path: Path) -> bool:
    return (path / files.SWEEP_FILE).is_file()


def load_folder(path: Path) -> Sweep:
    """The sweep behind a sweep folder, from its ``sweep.yaml``."""
    raw = yamlio.read_yaml(path / files.SWEEP_FILE)
    grid = raw.get("grid")
    if not isinstance(grid, dict) or not isinstance(raw.get("name"), str):
        raise SkipexpError("not a skipexp sweep file (needs name and grid)", file=str(path / files.SWEEP_FILE))
    clean, variants = read_grid(grid, file=str(path / files.SWEEP_FILE))
    fixed = raw.get("overrides") if isinstance(raw.get("overrides"), dict) else {}
    where = str(path / files.SWEEP_FILE)
    select = read_select(raw.get("select"), clean, file=where)
    baseline = read_baseline(raw.get("baseline"), clean, select, file=where)
    slurm = section(from_section(raw.get("slurm"), where))
    return Sweep(raw["name"], Path(str(raw.get("base", ""))), clean, path / files.SWEEP_FILE, fixed,
                 variants=variants, select=select, baseline=baseline, slurm=slurm)


def folder_points(path: Path) -> list[tuple[str, dict[str, Any], Path]]:
    """(name, values, run_dir) of every grid point of a sweep folder, from sweep.yaml alone (no base needed)."""
    sweep = load_folder(path)
    out = []
    for combo in itertools.product(*sweep.grid.values()):
        values = dict(zip(sweep.grid, combo))
        out.append((point_name(values), values, path / point_name(values)))
    return out
