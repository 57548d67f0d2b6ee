"""skipexp's performance, as ratios measured side by side in one process (``make bench``).

Every row repeats its measurement ``--reps`` times, interleaving the two sides, and reports the median
ratio with its min-max, so that a machine shared with other work shifts both sides alike. Absolute
timings are printed for context only. Writes benchmarks/results/<time>.json and latest.json.

    python benchmarks/bench.py [--reps 3] [--threads 1] [--quick]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from skipexp.core import config
from skipexp.core import data
from skipexp.rundir import runio
from skipexp.training import train
from skipexp.training import vectorized
from skipexp.core.models import SkipNet

REPO = Path(__file__).resolve().parent.parent
SKIPEXP = str(Path(sys.executable).parent / "skipexp") if (Path(sys.executable).parent / "skipexp").exists() \
    else shutil.which("skipexp") or "skipexp"

BASE = {
    "name": "bench", "seed": 0, "device": "cpu",
    "data": {"dataset": "synthetic", "n_train": 8192, "n_test": 512},
    "model": {"depth": 20, "width": 64, "skip": {"kind": "identity"}},
    "train": {"batch_size": 128, "lr": 0.01, "steps": 60},
    "log": {"every": 10, "checkpoint": "none"},
}


def cfg_for(width: int, steps: int, threads: int, **over) -> config.RunConfig:
    raw = copy.deepcopy(BASE)
    raw["model"]["width"] = width
    raw["train"].update(steps=steps, threads=threads)
    raw["log"]["eval_every"] = steps   # one evaluation, after the last timed step
    for dotted, value in over.items():
        node = raw
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return config.from_dict(raw)


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# --- the measured things -------------------------------------------------------------------------

def skipexp_step(cfg: config.RunConfig, out: Path) -> float:
    """Seconds per step of skipexp's own loop, from its metrics.csv (step 1's warm-up left out)."""
    run_dir = train.create_run(cfg, out)
    train.train(cfg, run_dir, plots=False)
    rows = runio.read_csv(run_dir / "metrics.csv")
    return (rows[-1]["elapsed_s"] - rows[0]["elapsed_s"]) / (rows[-1]["step"] - rows[0]["step"])


def matmul_roofline(cfg: config.RunConfig, iters: int) -> tuple[float, float]:
    """(seconds, GFLOP/s) of just the matmuls of one training step (forward, grad input, grad weight)."""
    model = SkipNet(cfg.model, *data.input_shape(cfg.data))
    B = cfg.train.batch_size
    work = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            x, w = torch.randn(B, m.in_features), torch.randn(m.out_features, m.in_features)
            g = torch.randn(B, m.out_features)
            work.append((x, w, g, torch.empty(B, m.out_features), torch.empty(B, m.in_features),
                         torch.empty(m.out_features, m.in_features)))
    flops = sum(6 * B * w.shape[0] * w.shape[1] for _, w, *_ in work)

    def one() -> None:
        for x, w, g, y, gx, gw in work:
            torch.mm(x, w.t(), out=y)
            torch.mm(g, w, out=gx)
            torch.mm(g.t(), x, out=gw)

    one()
    t = time.perf_counter()
    for _ in range(iters):
        one()
    sec = (time.perf_counter() - t) / iters
    return sec, flops / sec / 1e9


def examples_loop_step(cfg: config.RunConfig, steps: int) -> float:
    """A pytorch/examples-style loop: DataLoader, and per-layer .item() gradient norms every log step."""
    from torch.utils.data import DataLoader, TensorDataset

    splits = data.load(cfg.data)
    torch.manual_seed(0)
    model = SkipNet(cfg.model, splits.input_dim, splits.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum)
    loader = DataLoader(TensorDataset(splits.x_train, splits.y_train), batch_size=cfg.train.batch_size,
                        shuffle=True, drop_last=True)
    step, started, log = 0, None, []
    while step < steps:
        for x, y in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            if step % cfg.log.every == 0:
                log.append((loss.item(), {n: p.grad.norm().item() for n, p in model.named_parameters()}))
            opt.step()
            step += 1
            if step == 1:
                started = time.perf_counter()
            if step == steps:
                break
    return (time.perf_counter() - started) / (steps - 1)


def lightning_step(cfg: config.RunConfig, steps: int) -> float | str:
    """A Lightning Trainer with a per-layer gradient-norm callback (every log step)."""
    try:
        import lightning as L
    except ImportError:
        return "n/a: lightning is not installed (pip install -e '.[bench]')"
    import logging

    from lightning.pytorch.utilities import grad_norm
    from torch.utils.data import DataLoader, TensorDataset

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    splits = data.load(cfg.data)
    every = cfg.log.every

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.model = SkipNet(cfg.model, splits.input_dim, splits.num_classes)

        def training_step(self, batch, idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.model(x), y)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=cfg.train.lr, momentum=cfg.train.momentum)

    class GradNorms(L.Callback):
        def __init__(self) -> None:
            self.rows, self.t0, self.t1 = [], None, None

        def on_before_optimizer_step(self, trainer, module, optimizer):
            if trainer.global_step % every == 0:
                self.rows.append({k: v.item() for k, v in grad_norm(module, norm_type=2).items()})

        def on_train_batch_start(self, trainer, module, batch, idx):
            if trainer.global_step == 1 and self.t0 is None:
                self.t0 = time.perf_counter()

        def on_train_end(self, trainer, module):
            self.t1 = time.perf_counter()

    cb = GradNorms()
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[cb],
                        num_sanity_val_steps=0)
    loader = DataLoader(TensorDataset(splits.x_train, splits.y_train), batch_size=cfg.train.batch_size,
                        shuffle=True, drop_last=True)
    trainer.fit(Module(), loader)
    return (cb.t1 - cb.t0) / (steps - 1)


def seeds_together(cfg: config.RunConfig, k: int, out: Path) -> float:
    """Model-steps per second of k seeds trained together."""
    cfgs = [cfg.replace(seed=s, name=f"v{s}") for s in range(k)]
    dirs = [train.create_run(c, out) for c in cfgs]
    vectorized.train_seeds(cfgs, dirs, plots=False)
    seconds = runio.read_json(dirs[0] / "meta.json")["train_seconds"]
    return k * cfg.train.steps / seconds


def seeds_in_turn(cfg: config.RunConfig, k: int, out: Path) -> float:
    seconds = 0.0
    for s in range(k):
        one = cfg.replace(seed=s, name=f"s{s}")
        run_dir = train.create_run(one, out)
        train.train(one, run_dir, plots=False)
        seconds += runio.read_json(run_dir / "meta.json")["train_seconds"]
    return k * cfg.train.steps / seconds


def vmap_vs_bmm(cfg: config.RunConfig, k: int, steps: int) -> float:
    """Step time of torch.func vmap over stacked parameters divided by the stacked-bmm step's."""
    from torch.func import functional_call, stack_module_state, vmap

    models = []
    for s in range(k):
        torch.manual_seed(s)
        models.append(SkipNet(cfg.model, *data.input_shape(cfg.data)))
    stacked = vectorized.stack_models(models)
    params, _ = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    x = torch.randn(k, cfg.train.batch_size, cfg.data.input_dim)
    y = torch.randint(0, cfg.data.num_classes, (k, cfg.train.batch_size))
    opt_b = torch.optim.SGD(stacked.parameters(), lr=0.01, momentum=0.9)
    opt_v = torch.optim.SGD(params.values(), lr=0.01, momentum=0.9)

    def loss_one(p, xb, yb):
        return nn.functional.cross_entropy(functional_call(base, p, (xb,)), yb)

    def step_bmm() -> None:
        opt_b.zero_grad()
        nn.functional.cross_entropy(stacked(x).transpose(1, 2), y, reduction="none").mean(1).sum().backward()
        opt_b.step()

    def step_vmap() -> None:
        opt_v.zero_grad()
        vmap(loss_one)(params, x, y).sum().backward()
        opt_v.step()

    times = {}
    for name, fn in (("bmm", step_bmm), ("vmap", step_vmap)):
        fn()
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        times[name] = (time.perf_counter() - t) / steps
    return times["vmap"] / times["bmm"]


def wall(cmd: list[str], cwd: Path | None = None) -> tuple[float, int]:
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, env={**os.environ, "NO_COLOR": "1"})
    return time.perf_counter() - t, p.returncode


def has_command(name: str) -> bool:
    return wall([SKIPEXP, name, "--help"])[1] == 0


# --- the table -----------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every measurement")
    ap.add_argument("--threads", type=int, default=train.default_threads(), help="torch threads per run")
    ap.add_argument("--quick", action="store_true", help="skip the slow rows (width 1024, demo, sweep)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    R, T = args.reps, args.threads
    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="skipexp-bench-"))

    def row(name: str, values: list[float] | str, goal: str, ok: bool | None, unit: str = "x", **extra) -> None:
        entry = {"row": name, "goal": goal, "unit": unit, **extra}
        if isinstance(values, str):
            entry.update(value=values, met=None)
        else:
            entry.update(stats(values), met=ok)
        rows.append(entry)
        print(fmt(entry), flush=True)

    print(f"skipexp bench: {T} thread(s), {R} repetitions, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}", flush=True)

    # 1. step vs the matmul roofline of the same shapes
    for width, steps in ((64, 40), (256, 20), (1024, 6)):
        if args.quick and width == 1024:
            continue
        cfg = cfg_for(width, steps, T)
        fr, info = [], {}
        for _ in range(R):
            mm, gflops = matmul_roofline(cfg, max(3, steps // 2))
            step = skipexp_step(cfg, tmp)
            fr.append(mm / step)
            info = {"step_ms": round(step * 1e3, 2), "matmul_ms": round(mm * 1e3, 2), "gflops": round(gflops, 1)}
        med = statistics.median(fr)
        row(f"step / matmul roofline, width {width}", fr, ">= 0.80 (width >= 256)",
            med >= 0.80 if width >= 256 else None, unit="frac", **info)

    # 2. vs a pytorch/examples loop and a Lightning Trainer, width 64
    cfg = cfg_for(64, 60, T)
    ex, li, lnote = [], [], None
    for _ in range(R):
        mine = skipexp_step(cfg, tmp)
        ex.append(examples_loop_step(cfg, 60) / mine)
        other = lightning_step(cfg, 60)
        if isinstance(other, str):
            lnote = other
        else:
            li.append(other / mine)
    row("speed vs pytorch/examples loop, width 64", ex, ">= 1.2", statistics.median(ex) >= 1.2)
    row("speed vs Lightning Trainer, width 64", lnote or li, ">= 1.5", bool(li) and statistics.median(li) >= 1.5)

    # 3. logging overhead: norms every step / every 10 steps vs only at the first and last step.
    # 400-step runs: with 60, the run-to-run noise of a shared machine was larger than the effect.
    every1, every10 = [], []
    for _ in range(R):
        none = skipexp_step(cfg_for(64, 400, T, **{"log.every": 400}), tmp)
        every10.append(skipexp_step(cfg_for(64, 400, T, **{"log.every": 10}), tmp) / none - 1)
        every1.append(skipexp_step(cfg_for(64, 400, T, **{"log.every": 1}), tmp) / none - 1)
    row("logging overhead, every 10 steps", every10, "<= 0.02", statistics.median(every10) <= 0.02, unit="frac")
    row("logging overhead, every step", every1, "-", None, unit="frac")

    # 4. K=8 seeds together vs one after another
    cfg = cfg_for(64, 40, T)
    vec = []
    for _ in range(R):
        vec.append(seeds_together(cfg, 8, tmp) / seeds_in_turn(cfg, 8, tmp))
    row("8 seeds together vs in turn (model-steps/s)", vec, ">= 2.0", statistics.median(vec) >= 2.0)
    vm = [vmap_vs_bmm(cfg, 8, 20) for _ in range(R)]
    row("8 seeds: torch.func vmap step time / stacked bmm step time", vm, "-", None)

    # 5. sweep --jobs 2 vs --jobs 1
    if args.quick:
        row("sweep --jobs 2 vs --jobs 1", "n/a: --quick", ">= 1.5", None)
    elif not has_command("sweep"):
        row("sweep --jobs 2 vs --jobs 1", "n/a: sweep not available", ">= 1.5", None)
    else:
        sw = []
        for i in range(R):
            times = {}
            for jobs in (1, 2):
                d = tmp / f"sweep-{i}-{jobs}"
                d.mkdir()
                base = copy.deepcopy(BASE)
                base["train"].update(steps=120)
                base["model"]["width"] = 32
                (d / "base.yaml").write_text(json.dumps(base))
                (d / "sw.yaml").write_text(json.dumps({"name": f"j{jobs}", "base": "base.yaml",
                                                       "grid": {"seed": [0, 1, 2, 3]}}))
                times[jobs], rc = wall([SKIPEXP, "sweep", "sw.yaml", "--jobs", str(jobs)], cwd=d)
                if rc != 0:
                    times[jobs] = float("nan")
            sw.append(times[1] / times[2])
        row("sweep --jobs 2 vs --jobs 1 (4 runs)", sw, ">= 1.5", statistics.median(sw) >= 1.5)

    # 6. --help and the demo, wall seconds
    helps = [wall([SKIPEXP, "--help"])[0] for _ in range(max(5, R))]
    row("skipexp --help wall time", helps, "<= 0.2 s", statistics.median(helps) <= 0.2, unit="s")
    if args.quick:
        row("README demo wall time", "n/a: --quick", "<= 60 s", None)
    else:
        out = tmp / "demo"
        if has_command("compare"):
            how = "skipexp compare configs/plain.yaml configs/skip.yaml"
            sec, rc = wall([SKIPEXP, "compare", "configs/plain.yaml", "configs/skip.yaml", "--out", str(out)], REPO)
        else:
            how = "skipexp train configs/plain.yaml; skipexp train configs/skip.yaml"
            a, rc1 = wall([SKIPEXP, "train", "configs/plain.yaml", "--out", str(out)], REPO)
            b, rc2 = wall([SKIPEXP, "train", "configs/skip.yaml", "--out", str(out)], REPO)
            sec, rc = a + b, rc1 or rc2
        row("README demo wall time", [sec] if rc == 0 else f"failed (exit {rc})", "<= 60 s", sec <= 60,
            unit="s", command=how)

    shutil.rmtree(tmp, ignore_errors=True)
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    doc = {"time": datetime.now().isoformat(timespec="seconds"), "threads": T, "reps": R,
           "torch": torch.__version__, "cpus": os.cpu_count(), "load_after": os.getloadavg(), "rows": rows}
    text = json.dumps(doc, indent=2)
    (results / f"{datetime.now():%Y%m%d-%H%M%S}.json").write_text(text)
    (results / "latest.json").write_text(text)
    print(f"\nwritten: {results / 'latest.json'}")


def fmt(e: dict) -> str:
    if "median" not in e:
        value = str(e["value"])
    elif e["unit"] == "frac":
        value = f"{e['median']:.3f}  [{e['min']:.3f} - {e['max']:.3f}]"
    elif e["unit"] == "s":
        value = f"{e['median']:.2f} s  [{e['min']:.2f} - {e['max']:.2f}]"
    else:
        value = f"{e['median']:.2f}x  [{e['min']:.2f} - {e['max']:.2f}]"
    met = {True: "met", False: "MISSED", None: ""}[e["met"]]
    extra = {k: v for k, v in e.items() if k in ("step_ms", "matmul_ms", "gflops")}
    return f"{e['row']:<58} {value:<34} goal {e['goal']:<24} {met:<7} {extra or ''}"


if __name__ == "__main__":
    main()
