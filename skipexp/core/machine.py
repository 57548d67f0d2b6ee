"""What this machine offers a run: the cores this process may use."""
from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its affinity, which a container or taskset narrows), else all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
