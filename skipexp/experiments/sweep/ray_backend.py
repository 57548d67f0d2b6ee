"""Run a sweep's groups of points as Ray tasks, on a local Ray or on a cluster joined by address.

Each group is the same ``skipexp sweep FILE --group N`` command the local backend runs (its points trained
together in one process), started as a subprocess by a Ray task on whichever node has room. Results are
not sent back through Ray: every point writes its run folder, and the sweep reads the folders afterwards,
so the sweep folder must be on storage that every node sees. A point's torch threads are its config's
own choice, as in a lone ``skipexp train``; a task reserves ``--cpus-per-point`` CPUs for its one
process. Ray shows a task only its own GPU, as ``cuda``: a config that names
``cuda:N`` should name ``cuda`` (or ``auto``) to run there. Ray is an optional extra: nothing here imports
it at module level.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skipexp.core.errors import SkipexpError
from skipexp.core.machine import sharing_env
from skipexp.experiments.sweep.local import PointResult, command_for
from skipexp.rundir import files
from skipexp.rundir.folder import RunFolder
from skipexp.rundir.reuse import read_status

INSTALL_HINT = "pip install 'skipexp[ray]'"
RETRIES = 1  # a point whose worker or process dies is run once more, then recorded as failed
TAIL_CHARS = 2000


class PointKilled(RuntimeError):
    """The point's process was killed by a signal: treated like a dead worker, so Ray retries it."""


def require_ray() -> Any:
    """The ``ray`` module, or a SkipexpError with the install command (exit 2)."""
    try:
        import ray
    except ImportError:
        raise SkipexpError(f"the ray backend needs Ray, which is not installed; {INSTALL_HINT}",
                           key="--backend") from None
    return ray


def gpus_per_point(device: str, cluster_gpus: float = 0.0) -> float:
    """One GPU for a CUDA config; ``auto`` asks for one only where the cluster has GPUs at all."""
    if device.startswith("cuda"):
        return 1.0
    return 1.0 if device == "auto" and cluster_gpus > 0 else 0.0


def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)


def _run_dirs(item: Any) -> list[Path]:
    """The run folders a task writes: a group's ``run_dirs``, or one ``run_dir``."""
    try:
        return [Path(d) for d in _field(item, "run_dirs")]
    except (KeyError, AttributeError):
        return [Path(_field(item, "run_dir"))]


def _die_with_parent() -> None:
    # If the Ray worker dies, its training subprocess must not live on and keep writing the run folder
    # while the retry writes it again.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _finished(folder: Path) -> str | None:
    if (folder / files.META).is_file():
        status = files.read_meta(folder).get("status")
        if status in files.FINISHED:
            return status
    return None


def run_task(argv: Sequence[str], run_dirs: Sequence[str], cwd: str | None) -> list[str]:
    """Body of one Ray task: run a group's command and return each run folder's status afterwards.

    A task whose folders are all finished (the attempt finished but its worker died before reporting) runs
    nothing. Otherwise the command runs; ``skipexp sweep --group`` itself keeps a done point, resumes an
    interrupted one and moves what an attempt that died left aside.
    """
    folders = [Path(d) for d in run_dirs]
    done = [_finished(f) for f in folders]
    if all(done):
        return list(done)
    argv = list(argv)
    if argv[0] == "skipexp":  # a sweep's group: the skipexp of this worker's interpreter (its venv), not PATH's
        argv = command_for(argv)
    elif os.path.isabs(argv[0]) and not os.path.exists(argv[0]):
        # the driver's path to skipexp need not exist on this node: use this node's install
        argv[0] = shutil.which(os.path.basename(argv[0])) or argv[0]
    env = sharing_env({**os.environ, "NO_COLOR": "1"})   # tasks may share a node's cores
    p = subprocess.run(argv, cwd=cwd if cwd and os.path.isdir(cwd) else None, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, preexec_fn=_die_with_parent)
    if p.returncode < 0:
        raise PointKilled(f"killed by {signal.Signals(-p.returncode).name}: {p.stderr[-TAIL_CHARS:]}")
    statuses = []
    for folder in folders:
        status = files.read_meta(folder).get("status") if (folder / files.META).is_file() else None
        if status in files.FINISHED or status in ("interrupted", "failed"):
            statuses.append(status)
        else:
            statuses.append("failed")
    return statuses


def connect(address: str | None, num_cpus: int | None = None) -> tuple[Any, bool]:
    """Ray, initialised: joined at ``address`` (``auto`` = the cluster started on this machine by
    ``ray start``), or a fresh local instance on loopback. Returns (ray, whether we started it)."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    try:
        # "local" starts a fresh instance even where `ray start` runs on this machine (None would join it)
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, num_cpus=num_cpus if address is None else None)
    except ConnectionError as e:
        # Ray >= 2.59 starts clusters with token authentication: a driver that joins by address must
        # send the token, which it does only with RAY_AUTH_MODE=token (the "auto" address finds it itself)
        raise SkipexpError(f"cannot reach a Ray cluster at {address!r}: {str(e).splitlines()[0]} (is `ray start` "
                           f"running there? with token authentication, set RAY_AUTH_MODE=token and give this "
                           f"machine the head's ~/.ray/auth_token)", key="--address") from None
    return ray, True


def run_ray(tasks: Sequence[Any], *, address: str | None = None, num_cpus: int = 1,
            num_gpus: float | None = None, device: str = "cpu", jobs: int | None = None,
            on_done: Callable[[Any, list[str]], None] | None = None, on_start: Callable[[Any], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> list[list[str]]:
    """Run every task (a group: ``argv`` and ``run_dirs``, or one ``run_dir``) as a Ray task; return each
    task's statuses, one per run folder, in the order given.

    ``num_cpus`` is reserved per task; ``num_gpus`` defaults to what :func:`gpus_per_point` says for
    ``device``. ``jobs`` caps the tasks in flight at once (default: as many as the cluster's resources
    allow). A task whose worker dies, or whose process is killed by a signal, runs once more and its
    unfinished folders are then ``failed``; the other tasks carry on either way.
    ``on_start(task)`` hears each task as it is handed to Ray, ``on_done(task, statuses)`` as it finishes.
    Once ``should_stop()`` is true no new task is handed over; those in flight finish, and the tasks
    never started keep the status ``interrupted`` (running the sweep again runs them).
    """
    ray, started = connect(address)
    try:
        if num_gpus is None:
            num_gpus = gpus_per_point(device, ray.cluster_resources().get("GPU", 0.0))
        remote = ray.remote(run_task).options(
            num_cpus=num_cpus, num_gpus=num_gpus, max_retries=RETRIES, retry_exceptions=[PointKilled])
        cwd = os.getcwd()
        queue = list(enumerate(tasks))[::-1]  # popped from the end: tasks start in the order given
        statuses = [["failed"] * len(_run_dirs(t)) for t in tasks]
        in_flight: dict[Any, tuple[int, Any, list[Path]]] = {}
        while queue or in_flight:
            if should_stop():
                for i, t in queue:
                    statuses[i] = ["interrupted"] * len(_run_dirs(t))
                queue = []
                if not in_flight:
                    break
            while queue and (jobs is None or len(in_flight) < jobs):
                i, t = queue.pop()
                if on_start is not None:
                    on_start(t)
                run_dirs = [d.absolute() for d in _run_dirs(t)]
                argv = [str(a) for a in _field(t, "argv")]
                in_flight[remote.remote(argv, [str(d) for d in run_dirs], cwd)] = (i, t, run_dirs)
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            i, t, run_dirs = in_flight.pop(ref)
            try:
                statuses[i] = ray.get(ref)
            except Exception as e:  # the retry died too (PointKilled, a dead worker, a lost node)
                cause = getattr(e, "cause", None) or e
                for d in run_dirs:
                    if _finished(d) is None:
                        _mark_failed(d, f"{cause.__class__.__name__}: {cause}")
                statuses[i] = [_finished(d) or "failed" for d in run_dirs]
            if on_done is not None:
                on_done(t, statuses[i])
        return statuses
    finally:
        if started:
            ray.shutdown()


def backend(groups: list, jobs: int | None, listener: Any, should_stop: Callable[[], bool] = lambda: False, *,
            address: str | None = None, cpus_per_point: int = 1, device: str = "cpu") -> list:
    """The sweep backend (see :mod:`skipexp.experiments.sweep.local`): ``jobs`` groups in flight at once,
    each a Ray task; ``cpus_per_point`` CPUs reserved for each."""
    started: dict[int, float] = {}

    def on_start(group: Any) -> None:
        started[id(group)] = time.monotonic()
        for point in group.points:
            listener.on_start(point)

    results = []

    def on_done(group: Any, statuses: list[str]) -> None:
        seconds = time.monotonic() - started.get(id(group), time.monotonic())
        for point, status in zip(group.points, statuses):
            final = read_status(point.run_dir)
            final = status if final in ("missing", "unknown") else final
            r = PointResult(point, final, 0 if final in files.FINISHED else 1, seconds)
            results.append(r)
            listener.on_done(r)

    statuses = run_ray(groups, address=address, num_cpus=cpus_per_point, device=device, jobs=jobs,
                       on_start=on_start, on_done=on_done, should_stop=should_stop)
    done = {id(r.point) for r in results}
    results += [PointResult(p, s, None) for g, ss in zip(groups, statuses) for p, s in zip(g.points, ss)
                if id(p) not in done]
    order = {id(p): i for i, p in enumerate(p for g in groups for p in g.points)}
    return sorted(results, key=lambda r: order[id(r.point)])


def _mark_failed(run_dir: Path, reason: str) -> None:
    """Record that a point's run was given up on; a folder without a readable meta.json is left alone."""
    try:
        RunFolder(run_dir).mark_failed(reason)
    except SkipexpError:
        pass
