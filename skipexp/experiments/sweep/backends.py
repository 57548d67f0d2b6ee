"""The sweep backends by name, and :func:`run`: every point that is not done yet, in groups, on one of them."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skipexp.core.errors import SkipexpError
from skipexp.experiments.sweep import groups as groups_mod
from skipexp.experiments.sweep import ray_backend, slurm_backend
from skipexp.experiments.sweep.commands import group_commands
from skipexp.experiments.sweep.local import Backend, Listener, PointResult, run_local
from skipexp.experiments.sweep.results import runnable
from skipexp.experiments.sweep.spec import Point, Sweep, sweep_dir, write_sweep_file
from skipexp.rundir.reuse import folder_state, read_status, reuse_or_move_aside

WAIT_POLL_S = 0.5   # how often a sweep looks at points that another process trains

# name -> backend(groups, jobs, listener, should_stop, **options); see skipexp.experiments.sweep.local
BACKENDS: dict[str, Backend] = {"local": run_local, "ray": ray_backend.backend, "slurm": slurm_backend.backend}


@dataclass
class SweepOutcome:
    sweep: Sweep
    root: Path
    skipped: list[PointResult] = field(default_factory=list)   # done before this run
    ran: list[PointResult] = field(default_factory=list)
    busy: list[Point] = field(default_factory=list)            # running in another process


def check_backend(backend: str) -> Backend:
    if backend not in BACKENDS:
        raise SkipexpError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}", key="--backend")
    return BACKENDS[backend]


def run(sweep: Sweep, pts: list[Point], out: Path, jobs: int | None = 1, backend: str = "local",
        listener: Listener | None = None, should_stop: Callable[[], bool] = lambda: False,
        **backend_options: Any) -> SweepOutcome:
    """Run every point of ``pts`` (from :func:`~skipexp.experiments.sweep.spec.points`) that is not done yet,
    each group of points that train together (:mod:`.groups`) in one process. A point that another process
    is training is waited for (``listener.on_wait``) and then settled like any other: kept if that process
    finished it, resumed if it stopped it; ``outcome.busy`` is what was still running when ``should_stop``.

    ``jobs`` None lets the backend choose (Ray: as many as the cluster has room for). With fewer groups
    than ``jobs``, the biggest are cut into parts so that every worker has one (:func:`.groups.spread`).
    """
    run_groups = check_backend(backend)
    listener = listener or Listener()
    write_sweep_file(sweep, out)   # the groups' commands read it
    outcome = SweepOutcome(sweep, sweep_dir(sweep, out))

    def run_todo(candidates: list[Point]) -> None:
        """Skip the points that are done, set aside those another process trains, run the rest in groups."""
        todo = set()
        for p in candidates:
            state = folder_state(p.run_dir)
            if state == "done":
                # a result of another config (an edited base) must not pass as this one
                reuse_or_move_aside(p.run_dir, p.cfg)
                outcome.skipped.append(PointResult(p, read_status(p.run_dir), None))
            elif state == "running":
                outcome.busy.append(p)
            else:
                todo.add(p.name)
        if not todo:
            return
        gs = groups_mod.groups(pts)
        if jobs is not None:
            gs = groups_mod.spread([g for g in gs if todo & {p.name for p in g.points}], jobs)
        gs = [g.only(todo) for g in group_commands(sweep, gs, out)]
        gs = sorted((g for g in gs if g.points), key=groups_mod.work, reverse=True)   # longest first
        outcome.ran += run_groups(gs, jobs, listener, should_stop, **backend_options)

    def drain(candidates: list[Point]) -> None:
        """Run ``candidates`` (:func:`run_todo`), then, as another process lets go of its points, those too."""
        run_todo(candidates)
        # Points that another process trains (a sweep run beside this one, or the workers of a killed sweep,
        # which stop within a step of losing their parent): wait until it lets go of them, then finish them.
        while outcome.busy and not should_stop():
            waiting, outcome.busy = outcome.busy, []
            listener.on_wait(waiting)
            while not should_stop() and all(folder_state(p.run_dir) == "running" for p in waiting):
                time.sleep(WAIT_POLL_S)
            if should_stop():
                outcome.busy = waiting
                break
            outcome.busy = [p for p in waiting if folder_state(p.run_dir) == "running"]
            run_todo([p for p in waiting if p not in outcome.busy])

    # every point at once; with a staged selection, the deciding seeds' points and then the chosen ones' others
    seen: set[str] = set()
    while not should_stop() and not outcome.busy:
        todo = [p for p in runnable(sweep, pts) if p.name not in seen]
        if not todo:
            break
        seen |= {p.name for p in todo}
        drain(todo)
    return outcome

