"""Steps/s of the skipexp model shape for torch threads 1 vs 2 (and OMP_WAIT_POLICY), one process each.

The data behind skipexp.training.threads: every (threads, wait policy, width) runs in a fresh process
(OpenMP reads its environment once, at start), repetitions interleave the configurations, and the
table shows the median. The training step is a plain SGD step of SkipNet, as skipexp takes it.

    python benchmarks/threads_grid.py [--reps 3] [--widths 16,64,256] [--seconds 0.25]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BATCHES = (64, 128, 256)
DEPTHS = (4, 20)
# one thread never waits on another, so its wait policy does not matter (measured: within noise)
ENVS = (("1", None), ("2", None), ("2", "PASSIVE"))


def child(width: int, threads: int, seconds: float) -> None:
    """In the measured process: steps/s of every (batch, depth) for one width."""
    import torch
    from torch import nn

    from skipexp.core import config
    from skipexp.core.models import SkipNet

    torch.set_num_threads(threads)
    out = {}
    for depth in DEPTHS:
        for batch in BATCHES:
            cfg = config.from_dict({"model": {"depth": depth, "width": width, "skip": {"kind": "identity"}}})
            torch.manual_seed(0)
            model = SkipNet(cfg.model, 32, 10)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True)
            x, y = torch.randn(batch, 32), torch.randint(0, 10, (batch,))

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()

            for _ in range(2):
                step()
            n, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < seconds or n < 2:
                step()
                n += 1
            out[f"{batch},{depth}"] = n / elapsed
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--widths", default="64,1024,16,256,32,512,128", help="in the order they run")
    ap.add_argument("--seconds", type=float, default=0.25, help="timed seconds per shape")
    ap.add_argument("--jsonl", type=Path, help="append every process's result here as it ends")
    ap.add_argument("--child", nargs=2, type=int, metavar=("WIDTH", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child, args.seconds)
    widths = [int(w) for w in args.widths.split(",")]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "KMP_"))}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                       os.environ.get("PYTHONPATH")]))
    raw: dict[str, list[float]] = {}
    loads = []
    for rep in range(args.reps):
        loads.append(os.getloadavg()[0])
        for width in widths:
            for threads, policy in ENVS:
                env = dict(base, **({"OMP_WAIT_POLICY": policy} if policy else {}))
                p = subprocess.run([sys.executable, __file__, "--child", str(width), threads,
                                    "--seconds", str(args.seconds)], env=env, capture_output=True, text=True)
                if p.returncode:
                    sys.exit(p.stderr)
                for shape, sps in json.loads(p.stdout).items():
                    raw.setdefault(f"{width},{shape},{threads},{policy or '-'}", []).append(sps)
                if args.jsonl:
                    with args.jsonl.open("a") as f:
                        f.write(json.dumps({"width": width, "threads": threads, "policy": policy, "rep": rep,
                                            "load": os.getloadavg()[0], "sps": json.loads(p.stdout)}) + "\n")
        print(f"rep {rep + 1}/{args.reps} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    loads.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in raw.items()}
    print(f"load (1 min) during the run: {min(loads):.2f} - {max(loads):.2f}; {os.cpu_count()} cpus\n")
    print("| width | batch | depth | 1 thr | 2 thr | 2 thr PASSIVE | 2/1 | 2P/1 |")
    print("|---|---|---|---|---|---|---|---|")
    for width in sorted(widths):
        for depth in DEPTHS:
            for batch in BATCHES:
                k = f"{width},{batch},{depth}"
                a, b, c = (med[f"{k},{t},{p or '-'}"] for t, p in ENVS)
                print(f"| {width} | {batch} | {depth} | {a:.0f} | {b:.0f} | {c:.0f} | {b / a:.2f} | {c / a:.2f} |")


if __name__ == "__main__":
    main()
