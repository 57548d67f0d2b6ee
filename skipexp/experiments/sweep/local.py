"""Running groups of points: what a backend is given and returns, and the local backend (subprocesses here).

A backend is a function ``backend(groups, jobs, listener, should_stop) -> list[PointResult]``:

* ``groups``: :class:`~skipexp.experiments.sweep.groups.Group` objects, each the points that one process
  trains together (already filtered: none is ``done`` or ``running``). ``group.argv`` is its command as a
  list starting with ``"skipexp"`` (``skipexp sweep FILE --group N``; resolve it with :func:`command_for`
  to run it on this machine), ``group.points`` its points, each with its ``run_dir``.
* ``jobs``: how many groups may run at once. A point's torch threads are its config's own choice
  (:func:`skipexp.training.threads.choose_threads`), so that it computes what a lone ``train`` of it does.
* ``listener``: a :class:`Listener`; call ``on_start(point)`` for each point of a group when the group
  starts and ``on_done(result)`` for each when its process ends, from the calling thread.
* ``should_stop``: polled; once it returns True, start nothing new and ask running groups to stop
  (each of their models writes a checkpoint and ends ``interrupted``, so the next run resumes it).

It returns one :class:`PointResult` per point it was given. A point's outcome is what its folder says
(:func:`~skipexp.rundir.reuse.read_status`), not only the exit code, so a backend on other
machines needs a shared ``out``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skipexp.core.machine import sharing_env
from skipexp.experiments.sweep.groups import Group
from skipexp.experiments.sweep.spec import Point
from skipexp.rundir.reuse import read_status


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
    def on_wait(self, points: list[Point]) -> None:
        """The sweep waits for these points: another process is training them."""


def command_for(argv: list[str]) -> list[str]:
    """The point's argv with ``skipexp`` made runnable here: this interpreter's console script, or -m."""
    script = Path(sys.executable).parent / "skipexp"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "skipexp"]
    return head + argv[1:] if argv and argv[0] == "skipexp" else list(argv)


# Set in a group's process to the pid of the sweep that started it: the worker stops (as on a first Ctrl-C: its
# step, a checkpoint, ``interrupted``) when that process dies, however it died (cli.console's StopFlag).
PARENT_PID_ENV = "SKIPEXP_SWEEP_PARENT"


def run_local(groups: list[Group], jobs: int, listener: Listener,
              should_stop: Callable[[], bool] = lambda: False) -> list[PointResult]:
    """Run groups as up to ``jobs`` subprocesses of their real command on this machine.

    Each child gets its own session so that a terminal's Ctrl-C reaches only this process, which then
    sends every child one SIGINT: each finishes its step, checkpoints and ends ``interrupted``. A child
    whose parent dies (``kill -9`` of this process) stops the same way by itself (:data:`PARENT_PID_ENV`):
    no worker trains on as an orphan. The children are started, and waited for, by the calling thread.
    """
    pending = list(groups)
    running: dict[subprocess.Popen, tuple[Group, float, Any]] = {}
    results: list[PointResult] = []
    stopping = False
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", PARENT_PID_ENV: str(os.getpid())}
    if jobs > 1:
        env = sharing_env(env)
    try:
        while pending or running:
            if should_stop() and not stopping:
                stopping = True
                pending.clear()
                for proc in running:
                    _signal(proc, signal.SIGINT)
            while pending and len(running) < max(1, jobs) and not stopping:
                group = pending.pop(0)
                log = tempfile.TemporaryFile()
                proc = subprocess.Popen(command_for(group.argv), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)
                running[proc] = (group, time.perf_counter(), log)
                for point in group.points:
                    listener.on_start(point)
            for proc in [p for p in running if p.poll() is not None]:
                group, started, log = running.pop(proc)
                log.seek(0)
                tail = log.read()[-4000:].decode(errors="replace")
                log.close()
                for point in group.points:
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


Backend = Callable[..., list[PointResult]]
