"""How many torch threads a run uses: chosen from the work of one step, not from the machine.

A second thread pays only where a matmul is big enough to share; below that, every layer pays an
OpenMP fork/join for nothing, and on a machine shared with other busy processes a thread that waits
for a descheduled sibling stalls the whole step. The choice is a pure function of the config and the
number of cores, so a config gives the same numbers alone, in ``compare`` or as a sweep point.

Measured on 2 cores, torch 2.13 CPU, an SGD step of SkipNet, steps/s (benchmarks/threads_grid.py runs
each setting in its own process; per-matmul FLOPs = 2 * batch * width * width):

* idle, configs/skip.yaml (width 64, batch 128, depth 20; 1.0 MFLOP a matmul): 1 thread 218, 2 threads
  219, 2 threads with OMP_WAIT_POLICY=PASSIVE 45-52. A second thread gains nothing there, and a passive
  wait costs 4x where each matmul is that small.
* shared (load 5-16 from other jobs), widths 16-1024 x batches 64/128/256 x depths 4 and 20, a process
  per setting: 2 threads with the default (spinning) wait ran at 0.01-0.46x of 1 thread in 41 of 42
  cells (width 32, batch 128, depth 20: 26 vs 0.1 steps/s). A spinning thread whose sibling is
  descheduled stalls every matmul.
* shared (load 4.5-9.5), 1 and 2 threads alternated in 80 ms bursts within one process (load drift
  cancels), depth 4: median ratio of 2-thread to 1-thread steps/s over 8 pairs (ranges are wide; above
  ~1.8x the second thread is also taking CPU from the other jobs):

      width x batch   MFLOP a matmul   default wait   PASSIVE wait
      32 x 64         0.26             0.01           0.77
      32 x 256        1.0              0.11           0.23
      64 x 64         0.5              0.23           0.85
      64 x 256        2.1              0.13           1.23
      128 x 64        2.1              0.27           1.39
      128 x 256       8.4              0.13           1.61
      256 x 64        8.4              0.13           1.49
      256 x 256       34               0.23           2.05
      512 x 64        34               0.17           1.10
      512 x 256       134              0.21           1.15
      1024 x 64       134              0.16           0.97
      1024 x 256      537              0.64           1.28

Hence: one thread until a block's matmul reaches 2 x MIN_FLOPS_PER_THREAD (~8 MFLOP, where two
passive threads measured 1.5-1.6x), then one thread per MIN_FLOPS_PER_THREAD, capped by the cores this
process may use. The CLI's OMP_WAIT_POLICY=PASSIVE then only matters where a run has 2+ threads, and
there it turns the shared-machine collapse (0.2-0.6x) into a gain; a run on 1 thread has no sibling to
wait for, so the demo configs run at the idle 1-thread speed whatever the policy.
"""
from __future__ import annotations

from skipexp.core import nets
from skipexp.core.config import RunConfig
from skipexp.core.machine import available_cores

# FLOPs of one block matmul per thread before a thread pays for itself (see the table above).
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
