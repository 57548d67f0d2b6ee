"""What this machine offers a run: the cores this process may use, the memory it may take."""
from __future__ import annotations

import os
from pathlib import Path


def available_cores() -> int:
    """Cores this process may run on (its affinity, which a container or taskset narrows), else all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def passive_openmp() -> None:
    """Make idle OpenMP threads sleep instead of spin, unless OMP_WAIT_POLICY is set; call before torch loads.

    With spinning (OpenMP's default), a 2-thread run on 2 cores shared with other busy processes ran 18x
    slower than with 1 thread (2.4 vs 43 steps/s, configs/skip.yaml); sleeping threads gave 46 steps/s.
    Runs whose model is small get one thread anyway (skipexp.training.threads), where the policy is moot.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
