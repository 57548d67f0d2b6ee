"""Where a training step's time goes: torch ops per step and Python hot spots, skipexp vs a hand loop.

Runs ``configs/skip.yaml`` (or CONFIG) through the training API in this process under torch.profiler
(CPU) and cProfile, and the hand loop of benchmarks/baselines/ on the same model shape, one thread
each, so that op counts compare like for like. Op counts do not depend on the machine's load; the
times printed do.

    python benchmarks/profile_step.py [--steps 600] [--hand-steps 100] [--config configs/skip.yaml] [--cprofile]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent / "baselines"))


def skipexp_run(config: str, steps: int) -> None:
    from skipexp.core import config as config_mod
    from skipexp.training.fit import train_config
    cfg = config_mod.load(REPO / config, [f"train.steps={steps}", "log.plots=false"])
    with tempfile.TemporaryDirectory() as tmp:
        train_config(cfg, Path(tmp), Path(tmp) / "run")


def hand_run(steps: int) -> None:
    from common import data, model
    (x, y), _ = data()
    torch.manual_seed(0)
    net = model(20, 64)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    done = 0
    while done < steps:
        order = torch.randperm(len(y))
        for i in range(len(y) // 128):
            idx = order[i * 128:(i + 1) * 128]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break


def ops(fn, steps: int, top: int) -> None:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        fn()
        sec = time.perf_counter() - t
    events = [e for e in prof.events() if e.device_type.name == "CPU"]
    top_level = Counter(e.name for e in events if e.cpu_parent is None)
    every = Counter(e.name for e in events)
    print(f"  {len(events) / steps:.1f} ops/step ({sum(top_level.values()) / steps:.1f} top-level), "
          f"{sec:.2f} s under the profiler")
    for name, n in top_level.most_common(top):
        print(f"    {n / steps:7.2f}  {name}")
    return every


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--hand-steps", type=int, default=100,
                    help="steps of the hand loop (its per-parameter optimizer makes ~2600 ops a step: memory)")
    ap.add_argument("--config", default="configs/skip.yaml")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--cprofile", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    skipexp_run(a.config, 20)   # warm-up: imports, first optimizer
    print("skipexp (top-level ops per step, incl. set-up and log steps):")
    ops(lambda: skipexp_run(a.config, a.steps), a.steps, a.top)
    print("hand loop:")
    ops(lambda: hand_run(a.hand_steps), a.hand_steps, a.top)
    if a.cprofile:
        pr = cProfile.Profile()
        pr.runcall(skipexp_run, a.config, a.steps)
        pstats.Stats(pr).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
