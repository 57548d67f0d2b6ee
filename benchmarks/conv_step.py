"""What a conv net's training step costs on the CPU, and what stacking or another layout could save: the data
behind the conv paragraph of README's Performance section.

ResNet-20 at 16 channels on 28x28 images, batch 32 (benchmarks/bench.py's CONV_BASE), an SGD step each, in
this one process (median milliseconds over repetitions, after a warm-up):

- the share of a step's CPU time spent in convolutions, forward and backward (torch.profiler);
- 3 models stacked (skipexp's stack) against one model's step, times 3;
- one grouped convolution (groups=3) against 3 separate ones, forward and backward, 48 channels;
- the hand-written ResNet-20 (benchmarks/baselines/conv_hand_loop.py) in NCHW against channels_last.

    python benchmarks/conv_step.py [--threads 2] [--steps 40]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def median_ms(fn, steps: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    from skipexp.core.machine import openmp_wait

    openmp_wait()   # as the command chooses it, before torch loads
    import torch
    from bench import CONV_BASE
    from torch.nn import functional as F
    from torch.profiler import profile

    from skipexp.core import config, nets
    from skipexp.training.stacked_conv import stack_conv_models

    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads, OpenMP wait: "
          f"{os.environ.get('GOMP_SPINCOUNT') and 'spin ' + os.environ['GOMP_SPINCOUNT'] or 'passive'}, "
          f"load {os.getloadavg()[0]:.2f}")
    cfg = config.from_dict(CONV_BASE)
    n = CONV_BASE["train"]["batch_size"]
    torch.manual_seed(0)
    x, y = torch.randn(n, 784), torch.randint(0, 10, (n,))

    def stepper(k: int):
        net = stack_conv_models([nets.build(cfg, 784, 10) for _ in range(k)])
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        xs, ys = x.expand(k, n, 784).contiguous(), y.expand(k, n).reshape(-1)

        def step():
            loss = F.cross_entropy(net(xs).reshape(-1, 10), ys)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    one, three = stepper(1), stepper(3)
    for _ in range(5):
        one()
    with profile() as prof:
        for _ in range(10):
            one()
    rows = prof.key_averages()
    total = sum(r.self_cpu_time_total for r in rows)
    conv = sum(r.self_cpu_time_total for r in rows if r.key in ("aten::mkldnn_convolution",
                                                                 "aten::convolution_backward"))
    print(f"convolutions, forward and backward: {100 * conv / total:.0f} % of a step's CPU time")
    a, b = median_ms(one, args.steps), median_ms(three, args.steps)
    print(f"one model {a:.1f} ms, 3 stacked {b:.1f} ms: 3 x one / stacked = {3 * a / b:.2f}x")

    c = 16
    xg = torch.randn(n, 3 * c, 28, 28, requires_grad=True)
    wg = torch.randn(3 * c, c, 3, 3, requires_grad=True)

    def grouped():
        F.conv2d(xg, wg, padding=1, groups=3).sum().backward()

    def separate():
        outs = [F.conv2d(xj.contiguous(), wj, padding=1) for xj, wj in zip(xg.split(c, 1), wg.split(c, 0))]
        torch.cat(outs, 1).sum().backward()

    print(f"3 x 16 channels, forward and backward: groups=3 {median_ms(grouped, args.steps):.2f} ms, "
          f"3 separate {median_ms(separate, args.steps):.2f} ms")

    source = (HERE / "baselines" / "conv_hand_loop.py").read_text().split("ap = argparse")[0]
    hand: dict = {"__name__": "conv_hand_loop"}
    exec(source, hand)   # the baseline's model, without its command line
    xi = x.view(n, 1, 28, 28)

    def hand_step(memory_format):
        torch.manual_seed(0)
        net = hand["ResNet"]().to(memory_format=memory_format)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        xm = xi.contiguous(memory_format=memory_format)

        def step():
            loss = F.cross_entropy(net(xm), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    nchw, nhwc = hand_step(torch.contiguous_format), hand_step(torch.channels_last)
    a, b = median_ms(nchw, args.steps), median_ms(nhwc, args.steps)
    print(f"hand ResNet-20: NCHW {a:.1f} ms, channels_last {b:.1f} ms ({100 * (a - b) / a:+.0f} % faster)")


if __name__ == "__main__":
    main()
