"""skipexp's speed against the loops its users would otherwise write (``make bench``).

Every measurement is a separate process, run as its user runs it: skipexp through its command (the
console script next to this interpreter, so whatever code is installed or on PYTHONPATH), each baseline
as a plain script with torch's defaults. No OMP_* / MKL_* variable reaches any of them. Repetitions
interleave the sides, so a machine shared with other work slows both alike; rows give the median and
the min-max over repetitions of the per-repetition ratio (or wall time). Writes
benchmarks/results/<time>.json and latest.json.

    python benchmarks/bench.py [--reps 5] [--quick]
    python benchmarks/bench.py --device cuda     # the CUDA rows alone, at the demo's 8 epochs
    python benchmarks/bench.py --conv --reps 2   # the ResNet-20 rows alone (about 4 minutes on 2 shared cores)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINES = Path(__file__).resolve().parent / "baselines"
_SCRIPT = Path(sys.executable).parent / "skipexp"
SKIPEXP = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "skipexp"]

# the 12-point sweep: depth 8, width 32, 300 steps; skip none/identity x lr 0.05/0.1 x seeds 0, 1, 2
SWEEP_BASE = {
    "name": "bench-base", "seed": 0, "data": {"dataset": "synthetic"},
    "model": {"depth": 8, "width": 32, "skip": {"kind": "identity"}},
    "train": {"steps": 300, "batch_size": 128, "lr": 0.05, "momentum": 0.9}, "log": {"every": 8},
}
SWEEP_GRID = {"model.skip.kind": ["none", "identity"], "train.lr": [0.05, 0.1], "seed": [0, 1, 2]}


# ResNet-20 (16 channels, batch norm, option A) on Fashion-MNIST: one epoch of 16 steps at batch 32, a test
# evaluation at its end (both sides); short, as the machine is shared. benchmarks/baselines/conv_hand_loop.py
# is the same model and loop by hand.
CONV_STEPS, CONV_BATCH, CONV_TEST = 16, 32, 512
CONV_BASE = {
    "name": "bench-resnet20", "seed": 0,
    "data": {"dataset": "fashion-mnist", "train_size": CONV_STEPS * CONV_BATCH, "test_size": CONV_TEST},
    "model": {"block": "conv", "depth": 9, "width": 16, "norm": "batchnorm", "skip": {"kind": "identity"}},
    "train": {"steps": CONV_STEPS, "batch_size": CONV_BATCH, "lr": 0.05, "momentum": 0.9},
    "log": {"every": 8, "train_eval_size": 0, "plots": False, "html": False},
}


def user_env() -> dict[str, str]:
    """The environment a user's shell gives a process: ours, less every threading knob."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "KMP_", "GOMP_"))}
    env.update(NO_COLOR="1", TERM="dumb")
    return env


def run(cmd: list[str], cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=user_env(), capture_output=True, text=True)
    return time.perf_counter() - t, p


class Failed(Exception):
    pass


def checked(p: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
        raise Failed(f"{what} failed (exit {p.returncode}): {tail[0][:120]}")
    return p


# --- the measured things: each returns a number or raises Failed ------------------------------------

def skipexp_train(tmp: Path, epochs: int, device: str = "cpu", *overrides: str) -> float:
    """Steps/s of ``skipexp train configs/skip.yaml``: steps over the loop's own seconds (meta.json)."""
    run_dir = tmp / f"train-{time.monotonic_ns()}"
    _, p = run(SKIPEXP + ["train", "configs/skip.yaml", f"train.epochs={epochs}", f"device={device}", *overrides,
                          "--run-dir", str(run_dir)], cwd=REPO)
    checked(p, "skipexp train")
    meta = json.loads((run_dir / "meta.json").read_text())
    return meta["steps_done"] / meta["train_seconds"]


def baseline(script: str, epochs: int, device: str = "cpu") -> float | str:
    """Steps/s of a baseline script (its own loop time, as skipexp's), or its n/a reason."""
    _, p = run([sys.executable, str(BASELINES / script), "--epochs", str(epochs), "--device", device], BASELINES)
    out = json.loads(checked(p, script).stdout.strip().splitlines()[-1])
    return out.get("na") or out["steps_per_s"]


def skipexp_conv(tmp: Path, seeds: str = "0") -> float:
    """Model-steps/s of ``skipexp train`` on CONV_BASE with ``seed=[seeds]``: every seed's steps over the loop's
    own seconds (seeds trained together share them)."""
    d = tmp / f"conv-{time.monotonic_ns()}"
    d.mkdir()
    (d / "resnet20.yaml").write_text(json.dumps(CONV_BASE))
    _, p = run(SKIPEXP + ["train", str(d / "resnet20.yaml"), f"seed=[{seeds}]", "--out", str(d / "runs")])
    checked(p, "skipexp train (ResNet-20)")
    metas = [json.loads(m.read_text()) for m in (d / "runs").glob("*/meta.json")]
    return sum(m["steps_done"] for m in metas) / max(m["train_seconds"] for m in metas)


def conv_baseline() -> float:
    _, p = run([sys.executable, str(BASELINES / "conv_hand_loop.py"), "--steps", str(CONV_STEPS), "--batch-size",
                str(CONV_BATCH), "--train-size", str(CONV_STEPS * CONV_BATCH), "--test-size", str(CONV_TEST)],
               BASELINES)
    return json.loads(checked(p, "conv_hand_loop.py").stdout.strip().splitlines()[-1])["steps_per_s"]


def one_step_wall(tmp: Path) -> float:
    sec, p = run(SKIPEXP + ["train", "configs/skip.yaml", "train.steps=1", "device=cpu",
                            "--run-dir", str(tmp / f"one-{time.monotonic_ns()}")], cwd=REPO)
    checked(p, "skipexp train train.steps=1")
    return sec


def sweep_wall(tmp: Path, jobs: int) -> float:
    d = tmp / f"sweep-{time.monotonic_ns()}"
    d.mkdir()
    (d / "base.yaml").write_text(json.dumps(SWEEP_BASE))
    (d / "sweep.yaml").write_text(json.dumps({"name": "bench", "base": "base.yaml", "grid": SWEEP_GRID}))
    sec, p = run(SKIPEXP + ["sweep", "sweep.yaml", "--jobs", str(jobs), "--out", str(d / "runs")], cwd=d)
    checked(p, "skipexp sweep")
    return sec


def help_wall() -> float:
    sec, p = run(SKIPEXP + ["--help"])
    checked(p, "skipexp --help")
    return sec


def cuda_available() -> bool:
    p = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                       env=user_env(), capture_output=True, text=True)
    return p.stdout.strip() == "True"


# --- rows -------------------------------------------------------------------------------------------

class Row:
    """One table row: a value per repetition (a ratio or seconds), a goal and whether the median meets it."""

    def __init__(self, name: str, goal: str, unit: str, meets: Callable[[float], bool] | None):
        self.name, self.goal, self.unit, self.meets = name, goal, unit, meets
        self.values: list[float] = []
        self.context: dict[str, list[float]] = {}   # absolute numbers behind a ratio
        self.note: str | None = None                # n/a or failure: shown instead of a value

    def add(self, value: float, **context: float) -> None:
        self.values.append(value)
        for k, v in context.items():
            self.context.setdefault(k, []).append(v)

    def cell(self) -> tuple[str, str, str]:
        if not self.values:
            return self.note or "n/a", "", ""
        med, lo, hi = statistics.median(self.values), min(self.values), max(self.values)
        u = "x" if self.unit == "x" else " s"
        value = f"{med:.2f}{u} [{lo:.2f}-{hi:.2f}]"
        ctx = ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in self.context.items())
        met = "" if self.meets is None else ("met" if self.meets(med) else "MISSED")
        return value, met, ctx

    def to_json(self) -> dict:
        return {"row": self.name, "goal": self.goal, "unit": self.unit, "values": self.values,
                "median": statistics.median(self.values) if self.values else None,
                "context": self.context, "note": self.note, "met": self.cell()[1] or None}


def attempt(row: Row, fn: Callable[[], None]) -> None:
    """Run one repetition of a row; a failure becomes the row's note instead of ending the bench."""
    if row.note:
        return
    try:
        fn()
    except Failed as e:
        row.note = str(e)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, help="repetitions of every measurement (default 5; --quick: 2)")
    ap.add_argument("--quick", action="store_true", help="1 epoch instead of 3, 2 repetitions, no --jobs 1 sweep")
    ap.add_argument("--conv", action="store_true", help="the ResNet-20 rows alone")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cpu: every row (and the CUDA rows where CUDA is there); cuda: the CUDA rows alone")
    args = ap.parse_args()
    reps = args.reps or (2 if args.quick else 5)
    epochs = 1 if args.quick else 3
    cuda_only = args.device == "cuda"
    if cuda_only and not cuda_available():
        sys.exit("bench: --device cuda, but torch sees no CUDA device")
    tmp = Path(tempfile.mkdtemp(prefix="skipexp-bench-"))
    load_before = os.getloadavg()
    print(f"skipexp bench: {reps} repetitions, {os.cpu_count()} cpus ({platform.machine()}), command "
          f"{' '.join(SKIPEXP)}, load {load_before[0]:.1f}", file=sys.stderr, flush=True)

    ge = lambda goal: lambda v: v >= goal  # noqa: E731
    le = lambda goal: lambda v: v <= goal  # noqa: E731
    hand = Row(f"`skipexp train configs/skip.yaml train.epochs={epochs}` vs hand loop (steps/s)", ">= 1.0x",
               "x", ge(1.0))
    examples = Row("vs pytorch/examples loop with grad norms (steps/s)", "-", "x", None)
    lightning = Row("vs Lightning Trainer with grad-norm callback (steps/s)", ">= 2.0x", "x", ge(2.0))
    sweep2 = Row("12-point sweep, `skipexp sweep --jobs 2`, wall", "<= 8 s", "s", le(8.0))
    sweep1 = Row("12-point sweep, `skipexp sweep --jobs 1`, wall", "-", "s", None)
    one = Row("1-step `skipexp train`, wall", "<= 2.5 s", "s", le(2.5))
    helps = Row("`skipexp --help`, wall", "<= 0.2 s", "s", le(0.2))
    conv_hand = Row("ResNet-20 (16 ch) on Fashion-MNIST, `skipexp train` vs hand loop (steps/s)", ">= 1.0x", "x",
                    ge(1.0))
    conv_stack = Row("ResNet-20: 3 seeds together vs the same 3 seeds in turn (model-steps/s)", ">= 1.5x", "x",
                     ge(1.5))
    conv_rows = [conv_hand, conv_stack]
    rows = [] if cuda_only else conv_rows if args.conv else [hand, examples, lightning, sweep2, sweep1, one, helps,
                                                             *conv_rows]
    gpu = cuda_only or cuda_available()
    gpu_epochs = 8   # configs/skip.yaml's own: the demo's run
    if gpu:
        gpu_demo = Row("CUDA: `skipexp train configs/skip.yaml` steps/s vs 116 (before)", ">= 5.0x", "x", ge(5.0))
        gpu_hand = Row("CUDA: `skipexp train` vs hand loop (steps/s)", ">= 1.0x", "x", ge(1.0))
        gpu_graphs = Row("CUDA: `skipexp train` vs itself with train.cuda_graphs=false (steps/s)", "-", "x", None)
        rows += [gpu_demo, gpu_hand, gpu_graphs]

    def vs(row: Row, script: str, device: str = "cpu", epochs: int = epochs) -> Callable[[], None]:
        def go() -> None:
            if len(row.values) % 2:  # every other repetition, the baseline goes first
                theirs = baseline(script, epochs, device)
                mine = skipexp_train(tmp, epochs, device)
            else:
                mine = skipexp_train(tmp, epochs, device)
                theirs = baseline(script, epochs, device)
            if isinstance(theirs, str):
                row.note = f"n/a: {theirs}"
            else:
                row.add(mine / theirs, skipexp=mine, baseline=theirs)
        return go

    def conv_vs_hand() -> None:
        first, second = (conv_baseline, lambda: skipexp_conv(tmp)) if len(conv_hand.values) % 2 else \
            (lambda: skipexp_conv(tmp), conv_baseline)
        a, b = first(), second()
        mine, theirs = (b, a) if len(conv_hand.values) % 2 else (a, b)
        conv_hand.add(mine / theirs, skipexp=mine, baseline=theirs)

    def conv_stacked() -> None:
        def in_turn() -> float:   # model-steps over the three runs' loop seconds
            rates = [skipexp_conv(tmp, str(s)) for s in range(3)]
            return 3 / sum(1 / r for r in rates)
        sides = [lambda: skipexp_conv(tmp, "0,1,2"), in_turn][::-1 if len(conv_stack.values) % 2 else 1]
        got = [f() for f in sides][::-1 if len(conv_stack.values) % 2 else 1]
        conv_stack.add(got[0] / got[1], together=got[0], in_turn=got[1])

    for rep in range(reps):
        # one pass over every row per repetition
        if not cuda_only:
            attempt(conv_hand, conv_vs_hand)
            attempt(conv_stack, conv_stacked)
        if not cuda_only and not args.conv:
            attempt(hand, vs(hand, "hand_loop.py"))
            attempt(examples, vs(examples, "examples_loop.py"))
            attempt(lightning, vs(lightning, "lightning_loop.py"))
            attempt(one, lambda: one.add(one_step_wall(tmp)))
            attempt(sweep2, lambda: sweep2.add(sweep_wall(tmp, 2)))
            if not args.quick:
                attempt(sweep1, lambda: sweep1.add(sweep_wall(tmp, 1)))
            attempt(helps, lambda: helps.add(help_wall()))
        if gpu:
            def demo() -> None:
                sps = skipexp_train(tmp, gpu_epochs, "cuda")
                gpu_demo.add(sps / 116.0, skipexp=sps)
            attempt(gpu_demo, demo)
            attempt(gpu_hand, vs(gpu_hand, "hand_loop.py", "cuda", gpu_epochs))

            def graphs_off() -> None:
                sides = [(), ("train.cuda_graphs=false",)]   # every other repetition, eager goes first
                sps = {o: skipexp_train(tmp, gpu_epochs, "cuda", *o) for o in sides[::-1 if rep % 2 else 1]}
                gpu_graphs.add(sps[sides[0]] / sps[sides[1]], graphs=sps[sides[0]], eager=sps[sides[1]])
            attempt(gpu_graphs, graphs_off)
        print(f"repetition {rep + 1}/{reps} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    if args.quick and not cuda_only:
        sweep1.note = "n/a: --quick"

    load_after = os.getloadavg()
    print(f"\n{os.cpu_count()} cpus, torch defaults in every process, {reps} repetitions, median [min-max]; "
          f"load (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print("| row | median [range] | goal | | absolute (steps/s) |")
    print("|---|---|---|---|---|")
    for r in rows:
        value, met, ctx = r.cell()
        print(f"| {r.name} | {value} | {r.goal} | {met} | {ctx} |")

    shutil.rmtree(tmp, ignore_errors=True)
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    doc = {"time": datetime.now().isoformat(timespec="seconds"), "reps": reps, "quick": args.quick,
           "cpus": os.cpu_count(), "command": SKIPEXP, "load_before": load_before, "load_after": load_after,
           "rows": [r.to_json() for r in rows]}
    text = json.dumps(doc, indent=2)
    (results / f"{datetime.now():%Y%m%d-%H%M%S}.json").write_text(text)
    (results / "latest.json").write_text(text)
    print(f"\nwritten: {results / 'latest.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
