"""The sweep file, its points and their names, and the commands that run them (shell lines, a Makefile).

A sweep file names a base config and a grid of dotted keys::

    name: depth                 # the sweep folder is <out>/sweep-depth/
    base: ../skip.yaml          # relative to the sweep file
    grid:
      model.depth: [2, 4, 8]
      model.skip.kind: [none, identity]
      seed: [0, 1, 2]

Every combination is a :class:`Point`. Its folder is named from its values in grid order, with the
``model.`` prefix dropped (``depth=8,skip.kind=none,seed=1``), and its command is the real, self-contained
``skipexp train BASE KEY=VALUE... train.threads=K --run-dir DIR --resume`` line that ``--list`` prints.
"""
from __future__ import annotations

import difflib
import itertools
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skipexp.core import config as config_mod
from skipexp.core.config import RunConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import short_key, value
from skipexp.core.machine import available_cores
from skipexp.experiments.sweep.state import point_state, settle
from skipexp.rundir import files, runio

SWEEP_KEYS = ("name", "base", "grid")

# --- the sweep file ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sweep:
    name: str
    base: Path             # the base config, resolved against the sweep file's folder
    grid: dict[str, list]  # dotted key -> values, in file order
    source: Path           # the sweep file itself


@dataclass(frozen=True)
class Point:
    name: str                  # folder name, e.g. depth=8,skip.kind=none,seed=1
    values: dict[str, Any]     # dotted key -> value
    argv: list[str]            # ["skipexp", "train", BASE, KEY=VALUE..., "--run-dir", DIR, "--resume"]
    run_dir: Path
    cfg: RunConfig | None = field(default=None, compare=False)  # the resolved config, checked


def load(path: Path) -> Sweep:
    """Read and check a sweep file (not yet its points: see :func:`points`)."""
    raw = config_mod.read_yaml(path)
    for k in raw:
        if k not in SWEEP_KEYS:
            hint = difflib.get_close_matches(str(k), SWEEP_KEYS, n=1)
            did = f' (did you mean "{hint[0]}"?)' if hint else ""
            raise SkipexpError(f"unknown key{did}; a sweep file has {', '.join(SWEEP_KEYS)}", file=str(path), key=k)
    name = raw.get("name", Path(path).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.+-]+", name):
        raise SkipexpError(f"{name!r} may hold only letters, digits and . _ - +", file=str(path), key="name")
    if not isinstance(raw.get("base"), str):
        raise SkipexpError("the base config file (relative to this file) is required, e.g. base: ../skip.yaml",
                           file=str(path), key="base")
    base = (Path(path).parent / raw["base"]).resolve()
    if not base.is_file():
        raise SkipexpError(f"no such file: {base}", file=str(path), key="base")
    grid = raw.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise SkipexpError("must be a mapping of dotted keys to lists of values, e.g. model.depth: [4, 8]",
                           file=str(path), key="grid")
    clean: dict[str, list] = {}
    for k, v in grid.items():
        values = v if isinstance(v, list) else [v]
        if not values:
            raise SkipexpError("has no values", file=str(path), key=f"grid.{k}")
        if k == "name":
            raise SkipexpError("points are named from their values; name cannot be swept", file=str(path),
                               key="grid.name")
        clean[str(k)] = values
    return Sweep(name, base, clean, Path(path))


def sweep_dir(sweep: Sweep, out: Path) -> Path:
    return out / f"sweep-{sweep.name}"


def point_name(values: dict[str, Any]) -> str:
    def one(v: Any) -> str:
        s = "+".join(one(x) for x in v) if isinstance(v, list) else value(v).strip("'\"")
        return re.sub(r"[^\w.+-]", "_", s)

    return ",".join(f"{short_key(k)}={one(v)}" for k, v in values.items())


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Small nets run fastest with one thread each and one job per core: cores // jobs, at least 1."""
    return max(1, (cores or available_cores()) // max(1, jobs))


def _display_path(p: Path) -> str:
    """A path relative to the current folder when it lies below it (shorter commands), else absolute."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p.resolve())


def points(sweep: Sweep, out: Path, jobs: int = 1, cores: int | None = None) -> list[Point]:
    """Every grid point, each checked as a config now (a bad value fails before anything runs)."""
    base_raw = config_mod.read_yaml(sweep.base)
    if isinstance(base_raw.get("seed"), list) and "seed" not in sweep.grid:
        raise SkipexpError("the base config has a list of seeds; put them in the grid instead (seed: [0, 1, 2])",
                           file=str(sweep.source), key="base")
    root = sweep_dir(sweep, out)
    threads = threads_per_job(jobs, cores)
    result, seen = [], set()
    for combo in itertools.product(*sweep.grid.values()):
        values = dict(zip(sweep.grid, combo))
        overrides = [f"{k}={value(v)}" for k, v in values.items()]
        try:
            cfg = config_mod.load(sweep.base, overrides)
        except SkipexpError as e:
            key = f"grid.{e.key}" if e.key in sweep.grid else (e.key or "grid")
            raise SkipexpError(f"point {point_name(values)}: {e.message}", file=str(sweep.source), key=key) from None
        if len(cfg.seeds) != 1:
            raise SkipexpError(f"point {point_name(values)}: one seed per point", file=str(sweep.source),
                               key="grid.seed")
        name = point_name(values)
        if name in seen:
            raise SkipexpError(f"two points share the folder name {name}", file=str(sweep.source), key="grid")
        seen.add(name)
        run_dir = root / name
        argv = (["skipexp", "train", _display_path(sweep.base)] + overrides + [f"train.threads={threads}"]
                + ["--run-dir", _display_path(run_dir) if not run_dir.is_absolute() else str(run_dir), "--resume"])
        result.append(Point(name, values, argv, run_dir, cfg))
    return result


def write_sweep_file(sweep: Sweep, out: Path) -> Path:
    """``sweep.yaml`` in the sweep folder: the sweep with its base made absolute, so the folder explains
    itself and ``skipexp sweep <folder>/sweep.yaml`` runs it again."""
    root = sweep_dir(sweep, out)
    runio.check_writable(root)
    text = yaml.safe_dump({"name": sweep.name, "base": str(sweep.base), "grid": sweep.grid}, sort_keys=False)
    files.atomic_write(root / files.SWEEP_FILE, f"# written by skipexp sweep {sweep.source}\n" + text)
    return root / files.SWEEP_FILE


def is_sweep_dir(path: Path) -> bool:
    return (path / files.SWEEP_FILE).is_file()


def load_folder(path: Path) -> Sweep:
    """The sweep behind a sweep folder, from its ``sweep.yaml``."""
    raw = config_mod.read_yaml(path / files.SWEEP_FILE)
    grid = raw.get("grid")
    if not isinstance(grid, dict) or not isinstance(raw.get("name"), str):
        raise SkipexpError("not a skipexp sweep file (needs name and grid)", file=str(path / files.SWEEP_FILE))
    return Sweep(raw["name"], Path(str(raw.get("base", ""))), {k: v if isinstance(v, list) else [v]
                                                               for k, v in grid.items()}, path / files.SWEEP_FILE)


def folder_points(path: Path) -> list[tuple[str, dict[str, Any], Path]]:
    """(name, values, run_dir) of every grid point of a sweep folder, from sweep.yaml alone (no base needed)."""
    sweep = load_folder(path)
    out = []
    for combo in itertools.product(*sweep.grid.values()):
        values = dict(zip(sweep.grid, combo))
        out.append((point_name(values), values, path / point_name(values)))
    return out


def shell_line(point: Point) -> str:
    return " ".join(shlex.quote(a) for a in point.argv)


def make_file(sweep: Sweep, pts: list[Point], out: Path, jobs: int) -> str:
    """A makefile with one target per point (its summary.json) and ``all`` that ends with the sweep's report.

    Point folder names hold ``=`` and ``,``, which make reads as syntax in a rule line, so every folder is
    a variable. A point whose folder exists but is not done depends on FORCE: summary.json of an
    interrupted run is not a result, and its command resumes it.
    """
    lines = [f"# generated by: skipexp sweep {_display_path(sweep.source)} --list --format make --jobs {jobs}",
             "# one target per point; `make -j N -f THIS` runs N at once. Regenerate it before each use.",
             "SKIPEXP ?= skipexp", "", ".PHONY: all points FORCE", "FORCE:", ""]
    targets = []
    for i, p in enumerate(pts):
        var = f"P{i}"
        lines.append(f"{var} := {p.run_dir if p.run_dir.is_absolute() else _display_path(p.run_dir)}")
        targets.append(f"$({var})/{files.SUMMARY}")
    lines += ["", "all: points", f"\t$(SKIPEXP) sweep {shlex.quote(_display_path(sweep.source))} "
              f"--jobs {jobs}" + (f" --out {shlex.quote(str(out))}" if str(out) != "runs" else ""), "",
              "points: " + " ".join(targets), "",
              "# make deletes a target whose recipe it interrupts; these are the runs' own files, keep them",
              ".PRECIOUS: " + " ".join(targets), ""]
    for i, p in enumerate(pts):
        state = point_state(p.run_dir)
        if state == "done":
            settle(p.run_dir, p.cfg)
        force = " FORCE" if state not in ("new", "done") else ""
        at = p.argv.index("--run-dir") + 1
        words = [shlex.quote(a).replace("$", "$$") for a in p.argv[1:at]] + [f"'$(P{i})'"]
        cmd = " ".join(["$(SKIPEXP)"] + words + [shlex.quote(a) for a in p.argv[at + 1:]])
        lines += [f"$(P{i})/{files.SUMMARY}:{force}", f"\t{cmd}", ""]
    return "\n".join(lines)
