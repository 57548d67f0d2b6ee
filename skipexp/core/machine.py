"""What this machine offers a run: the cores this process may use, the memory it may take."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path


def available_cores() -> int:
    """Cores this process may run on (its affinity, which a container or taskset narrows), else all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Spins of an idle OpenMP thread before it sleeps (libgomp's GOMP_SPINCOUNT; its default is 300,000 and its own
# estimate is some 100,000 spins a millisecond): enough to bridge the gaps between a step's ops.
SHORT_SPIN = 10_000
_WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_CHOSEN = "SKIPEXP_OPENMP_WAIT"   # "KEY=VALUE" that openmp_wait chose: a child process chooses afresh


def running_elsewhere(loadavg: Path = Path("/proc/loadavg")) -> int | None:
    """Threads of other processes running or waiting for a core right now, on the whole machine: the least of
    three reads of the kernel's run queue, less this process; None where the system does not say."""
    counts = []
    for i in range(3):
        try:
            counts.append(int(loadavg.read_text().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return None
        if i < 2:
            time.sleep(0.001)
    return max(0, min(counts))


def torch_openmp_is_libgomp() -> bool:
    """Whether the torch this process would import ships GNU OpenMP (Linux wheels), the runtime that reads
    GOMP_SPINCOUNT; found without importing torch."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    here = Path(spec.origin).parent
    return any(f.name.startswith("libgomp") for d in (here / "lib", here.parent / "torch.libs") if d.is_dir()
               for f in d.iterdir())


def torch_loaded() -> bool:
    """Whether torch, and with it OpenMP, has loaded in this process (a notebook's, a test's)."""
    return "torch" in sys.modules


def _forget_chosen(env: MutableMapping[str, str]) -> None:
    """Remove from ``env`` the wait openmp_wait chose, unless the user has set that key since."""
    key, _, value = env.pop(_CHOSEN, "").partition("=")
    if key and env.get(key) == value:
        del env[key]


def openmp_wait() -> None:
    """How idle OpenMP threads wait between a step's ops, unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT;
    call before torch loads. It changes no number, only how fast a run with 2+ threads goes.

    A short spin (SHORT_SPIN) where torch's OpenMP is libgomp and a core is free for a second thread now (no
    other thread running on the machine, beyond one core); otherwise passive, every idle thread sleeping at
    once. A spin is faster on an idle machine and slower on a busy one, OpenMP's default spin much slower
    (README, Threads, has the measurements; benchmarks/openmp_wait.py takes them).
    """
    if torch_loaded():   # OpenMP has read its environment; a child process chooses its own
        return
    _forget_chosen(os.environ)   # a skipexp parent's choice (a sweep's), not the user's
    if any(key in os.environ for key in _WAIT_KEYS):
        return
    elsewhere = running_elsewhere()
    if elsewhere is not None and elsewhere <= available_cores() - 2 and torch_openmp_is_libgomp():
        key, value = "GOMP_SPINCOUNT", str(SHORT_SPIN)
    else:
        key, value = "OMP_WAIT_POLICY", "PASSIVE"
    os.environ[key] = value
    os.environ[_CHOSEN] = f"{key}={value}"


def sharing_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for processes that may share cores with each other (a sweep's parallel jobs, Ray's or Slurm's
    tasks): passive waiting, unless the user set a wait in ``env``. Each would otherwise see an idle machine at
    its start, before its siblings run."""
    env = dict(env)
    _forget_chosen(env)
    if not any(key in env for key in _WAIT_KEYS):
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
