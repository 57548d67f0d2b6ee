"""2-thread / 1-thread steps/s of the skipexp model, alternating the two in short bursts in one process.

On a machine shared with other work, separate processes see different loads; alternating every 80 ms
lets the drift cancel. Run it once per OpenMP wait policy (read at process start):

    python benchmarks/threads_alternate.py
    OMP_WAIT_POLICY=PASSIVE python benchmarks/threads_alternate.py
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from skipexp.core import config  # noqa: E402
from skipexp.core.models import SkipNet  # noqa: E402


def main() -> None:
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    for width in (32, 64, 128, 256, 512, 1024):
        for batch in (64, 256):
            cfg = config.from_dict({"model": {"depth": 4, "width": width}})
            torch.manual_seed(0)
            model = SkipNet(cfg.model, 32, 10)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True)
            x, y = torch.randn(batch, 32), torch.randint(0, 10, (batch,))

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()

            ratios = []
            for it in range(8):
                sps = {}
                for threads in ((1, 2) if it % 2 else (2, 1)):
                    torch.set_num_threads(threads)
                    step()
                    n, t0 = 0, time.perf_counter()
                    while (elapsed := time.perf_counter() - t0) < 0.08 or n < 2:
                        step()
                        n += 1
                    sps[threads] = n / elapsed
                ratios.append(sps[2] / sps[1])
            print(f"{policy} width {width} batch {batch} ({2 * batch * width * width / 1e6:.1f} MFLOP a matmul): "
                  f"2/1 threads = {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}], "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
