"""How idle OpenMP threads should wait, on this machine idle and shared: the data behind
skipexp.core.machine.openmp_wait.

Two runs that get 2 threads by skipexp's rule (an MLP of width 256 at batch 256, ResNet-20 at 16 channels
on Fashion-MNIST), each through ``skipexp train`` in its own process, under five settings: 1 thread, and 2
threads with a passive wait (sleep at once), a short spin (GOMP_SPINCOUNT=10000), OpenMP's default spin
(GOMP_SPINCOUNT=300000) and whatever skipexp chooses with nothing set. Repetitions interleave the
settings; then the same again beside ``--busy`` processes that spin on the CPU. Prints the median steps/s
(the loop's own seconds, meta.json) and each setting's ratio to the passive wait.

    python benchmarks/openmp_wait.py [--reps 3] [--busy 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CONV_BASE, SKIPEXP, checked, user_env  # noqa: E402

MLP = ["configs/skip.yaml", "model.width=256", "model.depth=4", "train.batch_size=256", "train.steps=300"]
SETTINGS = {   # name: (overrides, environment)
    "1 thread": (["train.threads=1"], {"OMP_WAIT_POLICY": "PASSIVE"}),
    "passive": ([], {"OMP_WAIT_POLICY": "PASSIVE"}),
    "short spin": ([], {"GOMP_SPINCOUNT": "10000"}),
    "default": ([], {"GOMP_SPINCOUNT": "300000"}),   # libgomp's own default, set so skipexp keeps it
    "skipexp's choice": ([], {}),                     # nothing set: skipexp.core.machine.openmp_wait chooses
}


def steps_per_s(tmp: Path, model: str, setting: str) -> float:
    overrides, env = SETTINGS[setting]
    out = tmp / f"{model}-{time.monotonic_ns()}"
    config = MLP if model == "mlp" else [str(tmp / "resnet20.yaml")]
    p = subprocess.run(SKIPEXP + ["train", *config, *overrides, "--out", str(out)], cwd=REPO,
                       env={**user_env(), **env}, capture_output=True, text=True)
    checked(p, f"skipexp train ({model}, {setting})")
    meta = json.loads(next(out.glob("*/meta.json")).read_text())
    return meta["steps_done"] / meta["train_seconds"]


def measure(tmp: Path, reps: int) -> dict[tuple[str, str], float]:
    got: dict[tuple[str, str], list[float]] = {}
    for _ in range(reps):
        for model in ("mlp", "conv"):
            for setting in SETTINGS:
                got.setdefault((model, setting), []).append(steps_per_s(tmp, model, setting))
    return {key: statistics.median(v) for key, v in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--busy", type=int, default=3, help="busy processes beside the shared measurements")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-wait-"))
    (tmp / "resnet20.yaml").write_text(json.dumps(CONV_BASE))
    print(f"load before: {os.getloadavg()[0]:.2f}")
    idle = measure(tmp, args.reps)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(1)
        shared = measure(tmp, args.reps)
    finally:
        for p in busy:
            p.kill()
    print(f"| run | setting | idle steps/s | x passive | beside {args.busy} busy | x passive |")
    print("|---|---|---|---|---|---|")
    for model in ("mlp", "conv"):
        for setting in SETTINGS:
            a, b = idle[model, setting], shared[model, setting]
            print(f"| {model} | {setting} | {a:.1f} | {a / idle[model, 'passive']:.2f} | {b:.1f} | "
                  f"{b / shared[model, 'passive']:.2f} |")


if __name__ == "__main__":
    main()
