"""Sweeps: a grid of overrides over a base config, one run folder per point, run by a pluggable backend.

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

Re-running is safe because a point's state is read from its folder (:func:`point_state`):
``done`` (completed or diverged: a result, never run again), ``resume`` (interrupted or crashed with
``checkpoints/last.pt``: continued from it), ``stale`` (a folder with nothing to resume: moved aside to
``DIR.stale-<time>`` and trained afresh), ``running`` (another process is on it: left alone) or ``new``.
``skipexp train --run-dir DIR --resume`` applies the same rule (:func:`settle`), so the Makefile can
re-run any point command without harm.

Backends
--------
:data:`BACKENDS` maps a name to a function ``backend(points, jobs, listener, should_stop) -> list[PointResult]``:

* ``points``: the :class:`Point` objects to run (already filtered: none is ``done`` or ``running``);
  ``point.argv`` is the command as a list starting with ``"skipexp"`` (resolve it with
  :func:`command_for` to run it on this machine) and ``point.run_dir`` its run folder.
* ``jobs``: how many points may run at once (the argv already limits torch threads to cores // jobs).
* ``listener``: a :class:`Listener`; call ``on_start(point)`` when a point starts and
  ``on_done(result)`` when it ends, from the calling thread.
* ``should_stop``: polled; once it returns True, start nothing new and ask running points to stop
  (each writes a checkpoint and ends ``interrupted``, so the next run resumes it).

It returns one :class:`PointResult` per point it was given. A point's outcome is what its folder says
(:func:`read_status`), not only the exit code, so a backend on other machines needs a shared ``out``.
"""
from __future__ import annotations

import difflib
import itertools
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from skipexp.core import config as config_mod
from skipexp.rundir import runio
from skipexp.core.errors import SkipexpError

SWEEP_KEYS = ("name", "base", "grid")
SUMMARY_FIELDS = ["status", "steps", "final_train_loss", "best_train_loss", "final_train_acc", "best_train_acc",
                  "final_test_loss", "best_test_loss", "final_test_acc", "best_test_acc",
                  "grad_ratio_first_last_start", "grad_ratio_first_last_end",
                  "act_grad_ratio_first_last_start", "act_grad_ratio_first_last_end",
                  "diverged_at_step", "wall_s", "steps_per_s"]


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
    config: dict = field(default_factory=dict, compare=False)  # the resolved config, as config.yaml holds it


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


def short_key(key: str) -> str:
    """The key as it appears in folder names and plots: ``model.skip.kind`` -> ``skip.kind``."""
    return key[len("model."):] if key.startswith("model.") else key


def format_value(v: Any) -> str:
    """A value as a YAML scalar that reads back the same (``none``, ``0.05``, ``[64, 32]``)."""
    return yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def point_name(values: dict[str, Any]) -> str:
    def one(v: Any) -> str:
        s = "+".join(one(x) for x in v) if isinstance(v, list) else format_value(v).strip("'\"")
        return re.sub(r"[^\w.+-]", "_", s)

    return ",".join(f"{short_key(k)}={one(v)}" for k, v in values.items())


def default_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Small nets run fastest with one thread each and one job per core: cores // jobs, at least 1."""
    return max(1, (cores or default_cores()) // max(1, jobs))


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
        overrides = [f"{k}={format_value(v)}" for k, v in values.items()]
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
        result.append(Point(name, values, argv, run_dir, yaml.safe_load(config_mod.dump(cfg))))
    return result


def write_sweep_file(sweep: Sweep, out: Path) -> Path:
    """``sweep.yaml`` in the sweep folder: the sweep with its base made absolute, so the folder explains
    itself and ``skipexp sweep <folder>/sweep.yaml`` runs it again."""
    root = sweep_dir(sweep, out)
    runio.check_writable(root)
    text = yaml.safe_dump({"name": sweep.name, "base": str(sweep.base), "grid": sweep.grid}, sort_keys=False)
    tmp = root / ".sweep.yaml.tmp"
    tmp.write_text(f"# written by skipexp sweep {sweep.source}\n" + text)
    os.replace(tmp, root / "sweep.yaml")
    return root / "sweep.yaml"


def is_sweep_dir(path: Path) -> bool:
    return (path / "sweep.yaml").is_file()


def load_folder(path: Path) -> Sweep:
    """The sweep behind a sweep folder, from its ``sweep.yaml``."""
    raw = config_mod.read_yaml(path / "sweep.yaml")
    grid = raw.get("grid")
    if not isinstance(grid, dict) or not isinstance(raw.get("name"), str):
        raise SkipexpError("not a skipexp sweep file (needs name and grid)", file=str(path / "sweep.yaml"))
    return Sweep(raw["name"], Path(str(raw.get("base", ""))), {k: v if isinstance(v, list) else [v]
                                                               for k, v in grid.items()}, path / "sweep.yaml")


def folder_points(path: Path) -> list[tuple[str, dict[str, Any], Path]]:
    """(name, values, run_dir) of every grid point of a sweep folder, from sweep.yaml alone (no base needed)."""
    sweep = load_folder(path)
    out = []
    for combo in itertools.product(*sweep.grid.values()):
        values = dict(zip(sweep.grid, combo))
        out.append((point_name(values), values, path / point_name(values)))
    return out


# --- the state of a point's folder, and settling it before a run ---------------------------------

def point_state(run_dir: Path) -> str:
    """new | done | running | resume | stale (see the module docstring)."""
    if not run_dir.exists():
        return "new"
    if not runio.is_run_dir(run_dir):
        return "stale"
    try:
        status = runio.effective_status(runio.read_json(run_dir / "meta.json"))
    except SkipexpError:
        return "stale"
    if status in runio.FINISHED:
        return "done"
    if status == "running":
        return "running"
    if status in ("interrupted", "crashed", "failed") and (run_dir / "checkpoints" / "last.pt").is_file():
        return "resume"
    return "stale"


def move_aside(run_dir: Path) -> Path:
    target = run_dir.with_name(f"{run_dir.name}.stale-{runio.timestamp()}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.stale-{runio.timestamp()}-{n}")
    os.replace(run_dir, target)
    return target


# Keys that change how fast a run goes, not what it computes: a point may be resumed with other values.
_NEUTRAL_KEYS = ("name", "train.threads", "device")


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as dotted key -> value."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two config dicts: key -> (a's value, b's value)."""
    fa, fb = flatten(a), flatten(b)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
            if k not in ignore and fa.get(k) != fb.get(k)}


def settle(run_dir: Path, cfg_dict: dict) -> tuple[str, Path | None]:
    """Decide what ``train --run-dir DIR --resume`` does with an existing DIR: (state, moved-aside path).

    A folder holding a run of another config is an error: resuming it would mix two experiments.
    """
    state = point_state(run_dir)
    if state == "running":
        raise SkipexpError("another process is training this run now", file=str(run_dir))
    if state in ("done", "resume"):
        on_disk = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        diff = config_differences(on_disk, cfg_dict, _NEUTRAL_KEYS)
        if diff:
            k, (old, new) = next(iter(diff.items()))
            raise SkipexpError(f"holds a run with {k}={old!r}, not {new!r}; move it away or change --run-dir",
                               file=str(run_dir), key=k)
    moved = move_aside(run_dir) if state == "stale" else None
    return state, moved


def read_status(run_dir: Path) -> str:
    if not runio.is_run_dir(run_dir):
        return "missing"
    try:
        return runio.effective_status(runio.read_json(run_dir / "meta.json"))
    except SkipexpError:
        return "unknown"


# --- running points ------------------------------------------------------------------------------

@dataclass
class PointResult:
    point: Point
    status: str            # the run folder's status afterwards (completed, diverged, interrupted, failed, ...)
    returncode: int | None  # the command's exit code; None if it never ran (skipped)
    seconds: float = 0.0
    output: str = ""       # the tail of the command's stdout and stderr, for failures


class Listener:
    """What a caller hears from a sweep. The CLI draws a progress bar over points; the default hears nothing."""

    def on_start(self, point: Point) -> None: ...
    def on_done(self, result: PointResult) -> None: ...


def command_for(argv: list[str]) -> list[str]:
    """The point's argv with ``skipexp`` made runnable here: this interpreter's console script, or -m."""
    script = Path(sys.executable).parent / "skipexp"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "skipexp"]
    return head + argv[1:] if argv and argv[0] == "skipexp" else list(argv)


def run_local(points: list[Point], jobs: int, listener: Listener,
              should_stop: Callable[[], bool] = lambda: False) -> list[PointResult]:
    """Run points as up to ``jobs`` subprocesses of the real command on this machine.

    Each child gets its own session so that a terminal's Ctrl-C reaches only this process, which then
    sends every child one SIGINT: each finishes its step, checkpoints and ends ``interrupted``.
    """
    pending = list(points)
    running: dict[subprocess.Popen, tuple[Point, float, Any]] = {}
    results: list[PointResult] = []
    stopping = False
    threads = next((a.split("=", 1)[1] for p in points for a in p.argv if a.startswith("train.threads=")), None)
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
    if threads:
        env["OMP_NUM_THREADS"] = threads  # also caps the threads of libraries below torch
    try:
        while pending or running:
            if should_stop() and not stopping:
                stopping = True
                pending.clear()
                for proc in running:
                    _signal(proc, signal.SIGINT)
            while pending and len(running) < max(1, jobs) and not stopping:
                point = pending.pop(0)
                log = tempfile.TemporaryFile()
                proc = subprocess.Popen(command_for(point.argv), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)
                running[proc] = (point, time.perf_counter(), log)
                listener.on_start(point)
            for proc in [p for p in running if p.poll() is not None]:
                point, started, log = running.pop(proc)
                log.seek(0)
                tail = log.read()[-4000:].decode(errors="replace")
                log.close()
                result = PointResult(point, read_status(point.run_dir), proc.returncode,
                                     time.perf_counter() - started, tail)
                results.append(result)
                listener.on_done(result)
            time.sleep(0.05)
    finally:
        for proc in running:  # only reached on an error in this loop: leave no orphans behind
            _signal(proc, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return results


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


Backend = Callable[[list[Point], int, Listener, Callable[[], bool]], list[PointResult]]
def run_ray(points: list[Point], jobs: int, listener: Listener, should_stop: Callable[[], bool] = lambda: False,
            **options: Any) -> list[PointResult]:
    """Points as Ray tasks, here or on a cluster (options: address, cpus_per_point, device)."""
    from skipexp.experiments import ray_backend

    return ray_backend.backend(points, jobs, listener, should_stop, **options)


BACKENDS: dict[str, Backend] = {"local": run_local, "ray": run_ray}


@dataclass
class SweepOutcome:
    sweep: Sweep
    root: Path
    skipped: list[PointResult] = field(default_factory=list)   # done before this run
    ran: list[PointResult] = field(default_factory=list)
    busy: list[Point] = field(default_factory=list)            # running in another process


def run(sweep: Sweep, out: Path, jobs: int = 1, backend: str = "local", listener: Listener | None = None,
        should_stop: Callable[[], bool] = lambda: False, **backend_options: Any) -> SweepOutcome:
    """Run every point that is not done yet, then write summary.csv and the plots."""
    if backend not in BACKENDS:
        raise SkipexpError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}", key="--backend")
    listener = listener or Listener()
    pts = points(sweep, out, jobs or 1)
    write_sweep_file(sweep, out)
    outcome = SweepOutcome(sweep, sweep_dir(sweep, out))
    todo = []
    for p in pts:
        state = point_state(p.run_dir)
        if state == "done":
            settle(p.run_dir, p.config)  # a result of another config (an edited base) must not pass as this one
            outcome.skipped.append(PointResult(p, read_status(p.run_dir), None))
        elif state == "running":
            outcome.busy.append(p)
        else:
            todo.append(p)
    outcome.ran = BACKENDS[backend](todo, jobs, listener, should_stop, **backend_options)
    return outcome


# --- summary.csv ---------------------------------------------------------------------------------

def collect(root: Path, refresh: bool = True) -> tuple[Sweep, list[dict]]:
    """One row per grid point of the sweep folder: its values, folder name and summary (status missing
    for points never started). ``refresh`` recomputes each point's summary.json from its CSVs."""
    from skipexp.rundir.summary import summarize, write_summary

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
    return sweep, rows


def write_summary_csv(root: Path, sweep: Sweep, rows: list[dict]) -> Path:
    import csv

    cols = list(sweep.grid) + ["point"] + SUMMARY_FIELDS
    tmp = root / ".summary.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in cols})
    os.replace(tmp, root / "summary.csv")
    return root / "summary.csv"


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, list):
        return format_value(v)
    return v


def finish(root: Path, refresh: bool = True) -> tuple[Sweep, list[dict], list[Path]]:
    """summary.csv and plots of a sweep folder, from disk: what ``sweep`` ends with and ``report`` redoes."""
    from skipexp.views import plots_compare

    sweep, rows = collect(root, refresh)
    write_summary_csv(root, sweep, rows)
    plots = plots_compare.plot_sweep(rows, sweep.grid, root / "plots", title=f"sweep {sweep.name}")
    return sweep, rows, plots


def shell_line(point: Point) -> str:
    return " ".join(shlex.quote(a) for a in point.argv)


def make_file(sweep: Sweep, pts: list[Point], out: Path, jobs: int) -> str:
    """A makefile with one target per point (its summary.json) and ``all`` that ends with the sweep's report.

    Point folder names hold ``=`` and ``,``, which make reads as syntax in a rule line, so every folder is
    a variable. A point whose folder exists but is not done depends on FORCE: summary.json of an
    interrupted run is not a result, and its command resumes it.
    """
    root = sweep_dir(sweep, out)
    lines = [f"# generated by: skipexp sweep {_display_path(sweep.source)} --list --format make --jobs {jobs}",
             "# one target per point; `make -j N -f THIS` runs N at once. Regenerate it before each use.",
             "SKIPEXP ?= skipexp", "", ".PHONY: all points FORCE", "FORCE:", ""]
    targets = []
    for i, p in enumerate(pts):
        var = f"P{i}"
        lines.append(f"{var} := {p.run_dir if p.run_dir.is_absolute() else _display_path(p.run_dir)}")
        targets.append(f"$({var})/summary.json")
    lines += ["", "all: points", f"\t$(SKIPEXP) sweep {shlex.quote(_display_path(sweep.source))} "
              f"--jobs {jobs}" + (f" --out {shlex.quote(str(out))}" if str(out) != "runs" else ""), "",
              "points: " + " ".join(targets), "",
              "# make deletes a target whose recipe it interrupts; these are the runs' own files, keep them",
              ".PRECIOUS: " + " ".join(targets), ""]
    for i, p in enumerate(pts):
        state = point_state(p.run_dir)
        if state == "done":
            settle(p.run_dir, p.config)
        force = " FORCE" if state not in ("new", "done") else ""
        at = p.argv.index("--run-dir") + 1
        words = [shlex.quote(a).replace("$", "$$") for a in p.argv[1:at]] + [f"'$(P{i})'"]
        cmd = " ".join(["$(SKIPEXP)"] + words + [shlex.quote(a) for a in p.argv[at + 1:]])
        lines += [f"$(P{i})/summary.json:{force}", f"\t{cmd}", ""]
    return "\n".join(lines)
