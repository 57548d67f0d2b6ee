"""How many torch threads a run uses: chosen from the work of one step, not from the machine.

A second thread pays only where a matmul is big enough to share; below that, every layer pays an
OpenMP fork/join for nothing, and on a machine shared with other busy processes a thread that waits
for a descheduled sibling stalls the whole step. The choice is a pure function of the config and the
number of cores, so a config gives the same numbers alone, in ``compare`` or as a sweep point.

The rule: one thread until a block's matmul reaches 2 x MIN_FLOPS_PER_THREAD, then one thread per
MIN_FLOPS_PER_THREAD, capped by the cores this process may use. How idle threads wait
(skipexp.core.machine.openmp_wait) then only matters where a run has 2+ threads; a run on 1 thread has no
sibling to wait for. The measurements behind the rule are in the README (Threads);
benchmarks/threads_grid.py and benchmarks/threads_alternate.py take them.
"""
from __future__ import annotations

from skipexp.core import nets
from skipexp.core.config import RunConfig
from skipexp.core.machine import available_cores

# FLOPs of one block matmul per thread before a thread pays for itself (README, Threads: the measurements).
MIN_FLOPS_PER_THREAD = 4_000_000


def block_matmul_flops(cfg: RunConfig) -> int:
    """FLOPs of the median Linear of the model's blocks in one forward pass: the size of one shared job.

    The median, not the sum: a thread's cost is paid per matmul, so depth adds as many fork/joins as it
    adds work and does not change whether a second thread pays.
    """
    own = nets.MEDIAN_FLOPS.get(cfg.model.block)
    if own is not None:   # a conv net: its median conv, an implicit matmul of the same sharing cost
        return own(cfg)
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
