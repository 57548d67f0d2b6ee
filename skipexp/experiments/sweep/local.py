"""Running points: what a backend is given and returns, and the local backend (subprocesses here).

A backend is a function ``backend(points, jobs, listener, should_stop) -> list[PointResult]``:

* ``points``: the :class:`~skipexp.experiments.sweep.spec.Point` objects to run (already filtered: none is
  ``done`` or ``running``); ``point.argv`` is the command as a list starting with ``"skipexp"`` (resolve it
  with :func:`command_for` to run it on this machine) and ``point.run_dir`` its run folder.
* ``jobs``: how many points may run at once (the argv already limits torch threads to cores // jobs).
* ``listener``: a :class:`Listener`; call ``on_start(point)`` when a point starts and
  ``on_done(result)`` when it ends, from the calling thread.
* ``should_stop``: polled; once it returns True, start nothing new and ask running points to stop
  (each writes a checkpoint and ends ``interrupted``, so the next run resumes it).

It returns one :class:`PointResult` per point it was given. A point's outcome is what its folder says
(:func:`~skipexp.experiments.sweep.state.read_status`), not only the exit code, so a backend on other
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

from skipexp.experiments.sweep.spec import Point
from skipexp.experiments.sweep.state import read_status


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



Backend = Callable[..., list[PointResult]]
