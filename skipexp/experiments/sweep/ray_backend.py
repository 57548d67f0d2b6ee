"""Run a sweep's points as Ray tasks, on a local Ray or on a cluster joined by address.

Each point is the same ``skipexp train ... --run-dir DIR`` command the local backend runs, started as a
subprocess by a Ray task on whichever node has room. Results are not sent back through Ray: every point
writes its run folder, and the sweep reads the folders afterwards, so the sweep folder must be on storage
that every node sees. Ray is an optional extra: nothing here imports it at module level.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skipexp.core.errors import SkipexpError
from skipexp.experiments.sweep.local import PointResult, command_for
from skipexp.experiments.sweep.state import read_status
from skipexp.rundir import files

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


def _field(point: Any, name: str) -> Any:
    return point[name] if isinstance(point, dict) else getattr(point, name)


def point_argv(argv: Sequence[str], threads: int, gpu: bool = False) -> list[str]:
    """``argv`` with overrides added to a ``skipexp train`` command: ``train.threads=N``, so a point uses
    exactly the CPUs Ray reserved for it, and with a GPU reserved ``device=cuda``: Ray shows the task only
    its own GPU (CUDA_VISIBLE_DEVICES), which is then ``cuda`` whatever ``cuda:N`` the config named.
    Other commands are returned unchanged."""
    argv = [str(a) for a in argv]
    if "train" not in argv:
        return argv
    at = argv.index("train") + 2  # after the config file
    while at < len(argv) and not argv[at].startswith("--"):
        at += 1
    return argv[:at] + [f"train.threads={threads}"] + (["device=cuda"] if gpu else []) + argv[at:]


def _die_with_parent() -> None:
    # If the Ray worker dies, its training subprocess must not live on and keep writing the run folder
    # while the retry writes it again.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_point(argv: Sequence[str], run_dir: str, cwd: str | None, threads: int) -> str:
    """Body of one Ray task: run the point's command and return its status from the run folder.

    An unfinished folder at ``run_dir`` is what an earlier attempt left when it died, so it is cleared
    first; a finished one (the attempt finished but its worker died before reporting) is kept.
    """
    folder = Path(run_dir)
    if (folder / files.META).is_file():
        status = files.read_meta(folder).get("status")
        if status in files.FINISHED:
            return status
    argv = list(argv)
    if folder.exists() and "--resume" not in argv:  # with --resume, train resumes or moves the folder aside
        shutil.rmtree(folder)
    if argv[0] == "skipexp":  # a sweep's point: the skipexp of this worker's interpreter (its venv), not PATH's
        argv = command_for(argv)
    elif os.path.isabs(argv[0]) and not os.path.exists(argv[0]):
        # the driver's path to skipexp need not exist on this node: use this node's install
        argv[0] = shutil.which(os.path.basename(argv[0])) or argv[0]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NO_COLOR": "1"}
    p = subprocess.run(argv, cwd=cwd if cwd and os.path.isdir(cwd) else None, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, preexec_fn=_die_with_parent)
    if p.returncode < 0:
        raise PointKilled(f"killed by {signal.Signals(-p.returncode).name}: {p.stderr[-TAIL_CHARS:]}")
    if (folder / files.META).is_file():
        status = files.read_meta(folder).get("status")
        if p.returncode == 0 and status in files.FINISHED:
            return status
        if status in ("interrupted", "failed"):
            return status
    return "failed"


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


def run_ray(points: Sequence[Any], *, address: str | None = None, num_cpus: int = 1,
            num_gpus: float | None = None, device: str = "cpu", jobs: int | None = None,
            on_done: Callable[[Any, str], None] | None = None, on_start: Callable[[Any], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> list[str]:
    """Run every point as a Ray task; return each point's status in the order given.

    ``num_cpus`` is reserved per point and becomes the point's ``train.threads``; ``num_gpus`` defaults to
    what :func:`gpus_per_point` says for ``device``. ``jobs`` caps the points in flight at once (default:
    as many as the cluster's resources allow). A point whose worker dies, or whose process is killed by a
    signal, runs once more and is then ``failed``; the other points carry on either way.
    ``on_start(point)`` hears each point as it is handed to Ray, ``on_done(point, status)`` as it finishes.
    Once ``should_stop()`` is true no new point is handed over; those in flight finish, and the points
    never started keep the status ``interrupted`` (running the sweep again runs them).
    """
    ray, started = connect(address)
    try:
        if num_gpus is None:
            num_gpus = gpus_per_point(device, ray.cluster_resources().get("GPU", 0.0))
        task = ray.remote(run_point).options(
            num_cpus=num_cpus, num_gpus=num_gpus, max_retries=RETRIES, retry_exceptions=[PointKilled])
        cwd = os.getcwd()
        queue = list(enumerate(points))[::-1]  # popped from the end: points start in the order given
        statuses = ["failed"] * len(points)
        in_flight: dict[Any, tuple[int, Any, Path]] = {}
        while queue or in_flight:
            if should_stop():
                for i, _ in queue:
                    statuses[i] = "interrupted"
                queue = []
                if not in_flight:
                    break
            while queue and (jobs is None or len(in_flight) < jobs):
                i, point = queue.pop()
                if on_start is not None:
                    on_start(point)
                run_dir = Path(_field(point, "run_dir")).absolute()
                argv = point_argv(_field(point, "argv"), num_cpus, gpu=num_gpus > 0)
                in_flight[task.remote(argv, str(run_dir), cwd, num_cpus)] = (i, point, run_dir)
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            i, point, run_dir = in_flight.pop(ref)
            try:
                statuses[i] = ray.get(ref)
            except Exception as e:  # the retry died too (PointKilled, a dead worker, a lost node)
                cause = getattr(e, "cause", None) or e
                files.mark_failed(run_dir, f"{cause.__class__.__name__}: {cause}")
                statuses[i] = "failed"
            if on_done is not None:
                on_done(point, statuses[i])
        return statuses
    finally:
        if started:
            ray.shutdown()


def backend(points: list, jobs: int, listener: Any, should_stop: Callable[[], bool] = lambda: False, *,
            address: str | None = None, cpus_per_point: int = 1, device: str = "cpu") -> list:
    """The sweep backend (see :mod:`skipexp.experiments.sweep.local`): ``jobs`` points in flight at once,
    each a Ray task."""
    import time

    started: dict[int, float] = {}

    def on_start(point: Any) -> None:
        started[id(point)] = time.monotonic()
        listener.on_start(point)

    results = []

    def on_done(point: Any, status: str) -> None:
        final = read_status(point.run_dir)
        final = status if final in ("missing", "unknown") else final
        r = PointResult(point, final, 0 if final in files.FINISHED else 1,
                        time.monotonic() - started.get(id(point), time.monotonic()))
        results.append(r)
        listener.on_done(r)

    statuses = run_ray(points, address=address, num_cpus=cpus_per_point, device=device, jobs=jobs,
                       on_start=on_start, on_done=on_done, should_stop=should_stop)
    done = {id(r.point) for r in results}
    results += [PointResult(p, s, None) for p, s in zip(points, statuses) if id(p) not in done]
    order = {id(p): i for i, p in enumerate(points)}
    return sorted(results, key=lambda r: order[id(r.point)])
