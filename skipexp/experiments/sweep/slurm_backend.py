"""Run a sweep's groups of points as a Slurm job array through submitit, or through submitit's local
executor (each task a process on this machine: the same path without a cluster).

Each array task runs the group's ``skipexp sweep FILE --group N`` command as a child process and waits for
it, as the local backend does, so a task's points are kept, resumed or moved aside and written by the same rules;
results are not sent back through submitit: the sweep reads the folders afterwards, so the sweep folder
must be on storage that the nodes share. A signal that ends a task early (scancel, the time limit's
warning, preemption) is passed on to the child as SIGINT: its points checkpoint and end ``interrupted``,
and running the sweep again resumes them. submitit is an optional extra: nothing here imports it at
module level.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skipexp.core.errors import SkipexpError
from skipexp.core.machine import sharing_env
from skipexp.experiments.sweep.local import PointResult, command_for
from skipexp.experiments.sweep.slurm_options import SlurmOptions
from skipexp.rundir import files
from skipexp.rundir.reuse import read_status

INSTALL_HINT = "pip install 'skipexp[slurm]'"
EXECUTORS = ("slurm", "local")
LOGS = "slurm"                 # the submitit folder inside the sweep folder: scripts, pickles, each task's log
POLL_S = {"slurm": 5.0, "local": 0.2}
LOCAL_TIMEOUT_MIN = 7 * 24 * 60   # submitit's local executor kills a task after its timeout (default 2 min)
TAIL_CHARS = 4000


def require_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise SkipexpError(f"the slurm backend needs submitit, which is not installed; {INSTALL_HINT}",
                           key="--backend") from None
    return submitit


def _die_with_parent() -> None:
    # a task killed outright (the out-of-memory killer, kill -9) must not leave its training process writing on
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_group_task(argv: Sequence[str], run_dirs: Sequence[str], cwd: str | None) -> list[str]:
    """Body of one array task: the group's command as a child process; each run folder's status afterwards.

    SIGINT, SIGTERM and SIGUSR2 (Slurm's warning before the time limit, as submitit asks for it) reach the
    child as one SIGINT, so its points write their checkpoints before the task ends.
    """
    argv = command_for(list(argv)) if argv and argv[0] == "skipexp" else list(argv)
    child = subprocess.Popen(argv, cwd=cwd if cwd and os.path.isdir(cwd) else None, stdin=subprocess.DEVNULL,
                             env=sharing_env({**os.environ, "NO_COLOR": "1", "TERM": "dumb"}),   # tasks may share cores
                             preexec_fn=_die_with_parent)
    forwarded = []

    def forward(signum: int, frame: Any) -> None:
        if not forwarded:
            forwarded.append(signum)
            child.send_signal(signal.SIGINT)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}
    try:
        child.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return [read_status(Path(d)) for d in run_dirs]


def make_executor(kind: str, folder: Path, o: SlurmOptions, name: str, jobs: int | None) -> Any:
    submitit = require_submitit()
    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=o.minutes() or LOCAL_TIMEOUT_MIN)
        return ex
    ex = submitit.SlurmExecutor(folder=folder)
    params: dict[str, Any] = {"job_name": f"skipexp-{name}", "cpus_per_task": o.cpus, "ntasks_per_node": 1,
                              "partition": o.partition, "mem": o.mem, "gpus_per_task": o.gpus,
                              "additional_parameters": dict(o.sbatch) or None}
    if o.time is not None:
        params["time"] = o.minutes()
    if jobs:
        params["array_parallelism"] = jobs
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def _tail(job: Any) -> str:
    out = []
    for read in ("stdout", "stderr"):
        try:
            out.append(getattr(job, read)() or "")
        except Exception:  # the log is not there (yet): nothing to show
            pass
    return "".join(out)[-TAIL_CHARS:]


def backend(groups: list, jobs: int | None, listener: Any, should_stop: Callable[[], bool] = lambda: False, *,
            options: SlurmOptions | None = None, executor: str = "slurm", folder: Path | None = None,
            name: str = "sweep") -> list[PointResult]:
    """The sweep backend (see :mod:`skipexp.experiments.sweep.local`): every group one array task, at most
    ``jobs`` running at once (Slurm's ``%N``; all at once without ``jobs``). Once ``should_stop()`` is true,
    tasks not yet started are cancelled and running ones asked to stop (their points checkpoint)."""
    if executor not in EXECUTORS:
        raise SkipexpError(f"must be one of {', '.join(EXECUTORS)}, got {executor!r}", key="--executor")
    o = options or SlurmOptions()
    if not groups:
        return []
    folder = folder or groups[0].points[0].run_dir.parent / LOGS
    ex = make_executor(executor, folder, o, name, jobs)
    cwd = os.getcwd()
    args = [([str(a) for a in g.argv], [str(p.run_dir.absolute()) for p in g.points], cwd) for g in groups]
    started: dict[int, float] = {}
    if executor == "slurm":   # one array, Slurm keeps `jobs` of it running
        submitted = ex.map_array(run_group_task, *zip(*args))
        queue: list[int] = []
        pending = dict(enumerate(submitted))
        for i, g in enumerate(groups):
            started[i] = time.monotonic()
            for p in g.points:
                listener.on_start(p)
    else:                     # local processes: started here, `jobs` at a time
        queue, pending = list(range(len(groups))), {}
    results: list[PointResult] = []
    stopping = False
    while queue or pending:
        if should_stop() and not stopping:
            stopping = True
            queue = []
            for job in pending.values():
                job.cancel(check=False)
        while queue and (not jobs or len(pending) < jobs):
            i = queue.pop(0)
            pending[i] = ex.submit(run_group_task, *args[i])
            started[i] = time.monotonic()
            for p in groups[i].points:
                listener.on_start(p)
        for i, job in list(pending.items()):
            if not job.done():
                continue
            del pending[i]
            try:
                job.result()
                code = 0
            except Exception:  # the task failed or was killed: its folders say what state its points are in
                code = 1
            for p in groups[i].points:
                status = read_status(p.run_dir)
                r = PointResult(p, status, 0 if code == 0 and status in files.FINISHED else 1,
                                time.monotonic() - started.get(i, time.monotonic()), "" if code == 0 else _tail(job))
                results.append(r)
                listener.on_done(r)
        time.sleep(POLL_S[executor])
    done = {id(r.point) for r in results}
    results += [PointResult(p, "interrupted", None) for g in groups for p in g.points if id(p) not in done]
    return results
