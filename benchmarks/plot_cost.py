"""What a run's plots cost at the end of `skipexp train`: the call that imports the plotting code, then
draws and writes the three PNGs of a run folder, each repetition in a fresh process that has imported the
training code (torch) first, as a training process has. A comparison or sweep folder is redrawn as
`skipexp report` redraws it (from disk, without refreshing the member runs' summaries), without torch.

    python benchmarks/plot_cost.py                      # trains configs/skip.yaml for 1 step, plots it
    python benchmarks/plot_cost.py FOLDER [FOLDER...]   # plots existing run, comparison or sweep folders
                                                        # (copies; never touched)
    python benchmarks/plot_cost.py --tree /other/checkout   # also the plotting code of another checkout,
                                                            # interleaved with this one (before/after)

Prints the median and the range over the repetitions, wall and CPU seconds. On a machine shared with other
work, compare only numbers from one invocation (the trees alternate, so a change in load falls on both), and
trust CPU seconds over wall seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# runs in the child: the seconds to import the plots modules and to draw one folder's plots
CHILD = """
import json, sys, time
from pathlib import Path
from skipexp.experiments import compare, report
from skipexp.experiments.sweep import results
folder = Path(sys.argv[1])
kind = report.kind_of(folder)
if kind == "run":
    from skipexp.core import config
    from skipexp.rundir import files
    import torch  # noqa: F401 - imported, as a training process has it
    from skipexp.views.run_views import RunViews
    cfg = config.load(folder / files.CONFIG, ["log.plots=true"])
    draw = lambda: RunViews().draw(cfg, folder)
else:
    draw = lambda: (compare if kind == "compare" else results).rebuild(folder, refresh=False)
w0, c0 = time.perf_counter(), time.process_time()
draw()
w1, c1 = time.perf_counter(), time.process_time()
print(json.dumps({"wall": w1 - w0, "cpu": c1 - c0}))
"""


def one_step_run(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "skipexp", "train", "configs/skip.yaml", "train.steps=1", "log.plots=false",
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return next(p for p in out.iterdir() if p.is_dir())


def measure(tree: Path, run_dir: Path) -> dict[str, float]:
    # run from the tree: `python -c` puts the working directory first on the path
    out = subprocess.run([sys.executable, "-c", CHILD, str(run_dir)], check=True, capture_output=True, text=True,
                         cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path,
                        help="run, comparison or sweep folders to plot (default: a fresh 1-step run)")
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to compare")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    trees = [ROOT, *args.tree]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_step_run(Path(tmp) / "runs")] if not args.runs else []
        for i, run in enumerate(args.runs):  # plot copies: a folder's own plots stay as they are
            runs.append(Path(shutil.copytree(run, Path(tmp) / f"{i}-{run.name}",
                                             ignore=shutil.ignore_patterns("plots"))))
        times: dict[tuple[Path, Path], list[dict[str, float]]] = {(t, r): [] for t in trees for r in runs}
        for _ in range(args.repeat):
            for run in runs:
                for tree in trees:
                    times[tree, run].append(measure(tree, run))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.repeat} repetitions, "
          "median (min-max) seconds")
    for (tree, run), rows in times.items():
        wall, cpu = ([r[key] for r in rows] for key in ("wall", "cpu"))
        print(f"{tree} {run.name}: wall {statistics.median(wall):.3f} ({min(wall):.3f}-{max(wall):.3f})  "
              f"cpu {statistics.median(cpu):.3f} ({min(cpu):.3f}-{max(cpu):.3f})")


if __name__ == "__main__":
    main()
