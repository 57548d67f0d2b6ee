"""How long the measurements of trained runs take on the demo's nets (configs/plain.yaml, configs/skip.yaml:
20 blocks, width 64, synthetic data).

Two kinds of row, each for plain and skip: the measurement alone (the library function, in this process,
data and model loaded, torch imported: what a notebook pays), and the whole command (``skipexp landscape
RUN`` etc. as its own process with its users' environment: import, data, init and trained model, files,
figures). Median and min-max over the repetitions; the load average before and after.

    python benchmarks/bench_mechanisms.py [--reps 3] [--compare runs/compare-...]

Without --compare it first trains the pair (``skipexp compare``, ~10 s idle).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from skipexp.core.machine import openmp_wait

REPO = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).parent / "skipexp"
SKIPEXP = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "skipexp"]

COMMANDS = {   # the defaults of each command, spelled out
    "landscape": ["--dims", "2", "--points", "31", "--samples", "2048"],
    "sharpness": ["--samples", "1024", "--iterations", "20", "--probes", "20"],
    "jacobian": ["--samples", "32"],
    "paths": ["--samples", "256", "--sets", "32"],
}


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "KMP_", "GOMP_"))}
    env.update(NO_COLOR="1", TERM="dumb")
    return env


def train_pair(out: Path) -> Path:
    subprocess.run([*SKIPEXP, "compare", "configs/plain.yaml", "configs/skip.yaml", "--out", str(out)], cwd=REPO,
                   env=user_env(), check=True, capture_output=True)
    return next(out.glob("compare-*"))


def measurements(run_dir: Path) -> dict:
    """Each measurement's core on one run, as the commands call it (threads as the commands choose)."""
    import torch

    from skipexp.core.curvature import hessian_vector_product, lanczos
    from skipexp.science import jacobian, landscape, members, paths

    run = members.load(run_dir)

    def grid() -> None:
        x, y = run.sample(2048)
        members.set_threads(run.cfg, landscape.CHUNK * len(y))
        s = landscape.Settings()
        theta = landscape.parameters(run.trained)
        axis = s.axis()
        landscape.Evaluator(run.trained, x, y).grid(theta, landscape.directions(theta, 2, 0),
                                                    torch.cartesian_prod(axis, axis))

    def top_eigenvalue() -> None:
        x, y = run.sample(1024)
        members.set_threads(run.cfg, len(y))
        params = list(run.trained.parameters())
        loss = torch.nn.functional.cross_entropy(run.trained(x), y)
        lanczos(hessian_vector_product(loss, params), sum(p.numel() for p in params), 20, 1e-3,
                torch.Generator().manual_seed(0))

    def spectrum() -> None:
        x, _ = run.sample(32)
        jacobian.spectrum_rows(jacobian.jacobians(run.trained, x), "trained")

    def path_lengths() -> None:
        x, y = run.sample(256)
        members.set_threads(run.cfg, paths.CHUNK * len(y))
        paths.measure_model(run.trained, x, y, 32, 0, "trained")

    return {"landscape 2D 31x31, 2048 examples": grid, "Hessian top eigenvalue (Lanczos), 1024 examples":
            top_eigenvalue, "Jacobian spectrum, 20 boundaries, 32 examples": spectrum,
            "paths, 21 lengths x 32 sets, 256 examples": path_lengths}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--compare", type=Path, help="a comparison folder of configs/plain.yaml and configs/skip.yaml")
    ap.add_argument("--no-commands", action="store_true", help="only the in-process rows")
    args = ap.parse_args()
    openmp_wait()   # as the command chooses it, before torch loads
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-mech-"))
    folder = args.compare or train_pair(tmp)
    runs = {name: folder / "runs" / name for name in ("plain", "skip")}
    times: dict[tuple[str, str], list[float]] = {}
    cores = {name: measurements(d) for name, d in runs.items()}
    for rep in range(args.reps):
        for name in runs:
            for what, fn in cores[name].items():
                t = time.perf_counter()
                fn()
                times.setdefault((what, name), []).append(time.perf_counter() - t)
            if args.no_commands:
                continue
            for cmd, opts in COMMANDS.items():
                t = time.perf_counter()
                subprocess.run([*SKIPEXP, cmd, str(runs[name]), *opts], env=user_env(), check=True,
                               capture_output=True)
                times.setdefault((f"`skipexp {cmd} RUN` (init and trained, files, figure)", name), []).append(
                    time.perf_counter() - t)
        print(f"repetition {rep + 1}/{args.reps} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    print("| | plain | skip |\n|---|---|---|")
    for what in dict.fromkeys(w for w, _ in times):
        cells = []
        for name in runs:
            v = times[(what, name)]
            cells.append(f"{statistics.median(v):.2f} s [{min(v):.2f} – {max(v):.2f}]")
        print(f"| {what} | {' | '.join(cells)} |")
    wait = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ)
    print(f"\nload average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}; "
          f"{args.reps} repetitions, median [min – max]; OpenMP wait of the in-process rows: {wait or 'default'}")


if __name__ == "__main__":
    main()
