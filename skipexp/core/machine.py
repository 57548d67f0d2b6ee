"""What this machine offers a run: the cores this process may use, the memory it may take."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def available_cores() -> int:
    """Cores this process may run on (its affinity, which a container or taskset narrows), else all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Spins of an idle OpenMP thread before it sleeps (libgomp's GOMP_SPINCOUNT, about 0.1 ms): long enough to
# bridge the gaps between a step's ops, short enough to give a busy machine's cores back soon.
SHORT_SPIN = 10_000


def running_elsewhere() -> int:
    """Threads of other processes running or waiting for a core right now: the least of three reads of the
    kernel's run queue (``/proc/loadavg``), less this process; 0 where the system does not say."""
    counts = []
    for _ in range(3):
        try:
            counts.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return 0
        time.sleep(0.001)
    return max(0, min(counts))


_WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_CHOSEN = "SKIPEXP_OPENMP_WAIT_CHOSEN"   # marks the values openmp_wait chose: a child process chooses afresh


def openmp_started() -> bool:
    """Whether torch, and with it OpenMP, has loaded in this process (a notebook's, a test's)."""
    return "torch" in sys.modules


def openmp_wait() -> None:
    """How idle OpenMP threads wait between a step's ops, unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT;
    call before torch loads. It changes no number, only how fast a run with 2+ threads goes.

    Where a core is free for a second thread now (no other thread running, beyond one core), a short spin
    (SHORT_SPIN); otherwise passive, every idle thread sleeping at once. A spin is faster on an idle machine and
    slower on a busy one, OpenMP's default spin of ~3 ms much slower (README, Threads, has the measurements;
    benchmarks/openmp_wait.py takes them). Runs whose model is small get one thread (skipexp.training.threads).
    """
    if openmp_started():   # OpenMP has read its environment; a child process chooses its own
        return
    if os.environ.pop(_CHOSEN, None):   # inherited from a skipexp process (a sweep's): not the user's
        for key in _WAIT_KEYS:
            os.environ.pop(key, None)
    if any(key in os.environ for key in _WAIT_KEYS):
        return
    if running_elsewhere() <= available_cores() - 2:
        os.environ["GOMP_SPINCOUNT"] = str(SHORT_SPIN)
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ[_CHOSEN] = "1"


def sharing_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for processes that will share this machine's cores with each other (a sweep's parallel jobs):
    passive waiting, unless the user set a wait in ``env``. Each would otherwise see an idle machine at its
    start, before its siblings run."""
    if _CHOSEN in env or not any(key in env for key in _WAIT_KEYS):
        env = {k: v for k, v in env.items() if k not in (*_WAIT_KEYS, _CHOSEN)}
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def available_ram() -> int | None:
    """Bytes of RAM a new allocation can get: the kernel's MemAvailable (free memory and caches it can drop),
    less where this process's cgroup (a container) allows less; None where the system does not say."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v2: the limit and what the group uses now
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            pass
    return max(0, min(found)) if found else None
