"""How many torch threads a run uses: chosen from the work of one step, not from the machine.

A second thread pays only where a matmul is big enough to share; below that, every layer pays an
OpenMP fork/join for nothing, and on a machine shared with other busy processes a thread that waits
for a descheduled sibling stalls the whole step. The choice is a pure function of the config and the
number of cores, so a config gives the same numbers alone, in ``compare`` or as a sweep point.

Measured (benchmarks/threads_grid.py: each setting its own process, torch 2.13 CPU, 2 cores, SGD step
of SkipNet, steps/s):

* idle machine, configs/skip.yaml (width 64, batch 128, depth 20): 1 thread 218, 2 threads 219,
  2 threads with OMP_WAIT_POLICY=PASSIVE 45-52. A second thread gains nothing at width 64, and the
  passive wait policy costs 4x wherever two threads share a step.
* the same 2 cores at load 5-16 (other jobs running), all widths 16-1024, batches 64-256, depths 4 and
  20: 2 threads with torch's default (active) wait ran at 0.01-0.46x of 1 thread in 41 of 42 cells
  (e.g. width 32, batch 128, depth 20: 26 vs 0.1 steps/s). One thread never waits on another.
* alternating 1 and 2 threads within one process in 80 ms bursts (so load drift cancels), depth 4:
  see MEASURED below for the 2-thread/1-thread ratios per width x batch.

Hence: one thread until a block's matmul reaches MIN_FLOPS_PER_THREAD, then one more thread per that
much work, capped by the cores this process may use.
"""
from __future__ import annotations

import os

from skipexp.core.config import RunConfig

# Multiply-adds x 2 of one Linear of a block (forward) per thread before a thread pays for itself.
# 2 * 128 * 64 * 64 = 1 MFLOP (configs/skip.yaml) gains nothing from a second thread even on an idle
# machine; the threshold sits 16x above that, where the matmul takes ~0.5 ms on one core, long
# against an OpenMP fork/join of some microseconds.
MIN_FLOPS_PER_THREAD = 16_000_000


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, e.g. under taskset or a
    container's cpuset), else every core the machine reports."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def block_matmul_flops(cfg: RunConfig) -> int:
    """FLOPs of the median Linear of the model's blocks in one forward pass: the size of one shared job.

    The median, not the sum: a thread's cost is paid per matmul, so depth adds as many fork/joins as it
    adds work and does not change whether a second thread pays.
    """
    m, batch = cfg.model, cfg.train.batch_size
    widths = m.widths()
    sizes = []
    for i, out in enumerate(widths):
        d_in = widths[i - 1] if i else widths[0]
        hidden = m.hidden or out
        sizes += [2 * batch * d_in * hidden, 2 * batch * hidden * out]
    sizes.sort()
    return sizes[len(sizes) // 2]


def choose_threads(cfg: RunConfig, cores: int | None = None) -> int:
    """torch intra-op threads for ``cfg``: ``train.threads`` where the config sets it, else one thread
    per MIN_FLOPS_PER_THREAD of a block's matmul, at least 1 and at most ``cores`` (default: the
    cores available to this process)."""
    if cfg.train.threads:
        return cfg.train.threads
    cores = available_cores() if cores is None else cores
    return max(1, min(cores, block_matmul_flops(cfg) // MIN_FLOPS_PER_THREAD))
