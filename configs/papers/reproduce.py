"""Run one paper reproduction: every point of a sweep file through ``skipexp train``, then its plot.

    python configs/papers/reproduce.py configs/papers/highway.yaml [--out runs] [--plot docs/papers/highway.png]

The sweep file has the sweep format (name, base, grid). Each point becomes one run folder
``<out>/sweep-<name>/<point>/`` (e.g. ``depth=25,skip.kind=none``); points already completed are
skipped, so running the script again only redoes what is missing. The plot puts the first grid key on
the x axis, one line per value of the others (seeds averaged), and the training-loss curves beside it
(``plots/training.png``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


def point_name(point: dict) -> str:
    # model.depth -> depth, model.skip.kind -> skip.kind: the section name adds nothing to a folder name
    return ",".join(f"{k.split('.', 1)[1] if k.startswith('model.') else k}={v}" for k, v in point.items())


def expand(grid: dict) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def skipexp() -> str:
    here = Path(sys.executable).parent / "skipexp"
    return str(here) if here.exists() else (shutil.which("skipexp") or "skipexp")


def completed(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "meta.json").read_text())["status"] == "completed"
    except (OSError, ValueError, KeyError):
        return False


def late_train_loss(run_dir: Path, fraction: float = 0.1) -> float:
    """Mean logged training loss over the last ``fraction`` of logged steps: less noisy than the last batch."""
    import csv

    with open(run_dir / "metrics.csv") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    tail = losses[-max(1, int(len(losses) * fraction)):]
    return sum(tail) / len(tail)


def final_test_acc(run_dir: Path) -> float:
    return json.loads((run_dir / "summary.json").read_text()).get("final_test_acc") or float("nan")


def plot(sweep: dict, points: list[dict], folder: Path, target: Path) -> None:
    import csv

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(sweep["grid"])
    xkey = keys[0]
    series_keys = [k for k in keys[1:] if k != "seed"]
    fig, (ax, ax_acc, ax_curve) = plt.subplots(1, 3, figsize=(15, 4.2))
    groups: dict[tuple, dict] = {}
    for p in points:
        g = groups.setdefault(tuple(p[k] for k in series_keys), {})
        run = folder / point_name(p)
        g.setdefault(p[xkey], []).append((late_train_loss(run), final_test_acc(run)))
    styles = ["-", "--", ":", "-."]
    xs_all = list(dict.fromkeys(p[xkey] for p in points))  # grid order
    categorical = any(isinstance(x, str) for x in xs_all)
    from skipexp.views.plots import STEP_CMAP  # viridis without its yellow end, which vanishes on white

    def cmap(i: int) -> tuple:
        return STEP_CMAP(i / max(1, len(xs_all) - 1))

    seeds = len({p.get("seed") for p in points})
    for label, by_x in groups.items():
        name = (", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(series_keys, label))
                or (f"mean over {seeds} seeds" if seeds > 1 else sweep["name"]))
        xs = list(by_x)
        pos = [xs_all.index(x) for x in xs] if categorical else xs
        fmt = "o" if categorical else "o-"  # categories have no order to join with lines
        ax.plot(pos, [sum(v[0] for v in by_x[x]) / len(by_x[x]) for x in xs], fmt, ms=8, label=name)
        ax_acc.plot(pos, [sum(v[1] for v in by_x[x]) / len(by_x[x]) for x in xs], fmt, ms=8, label=name)
    for p in points:
        if p.get("seed", 0) != points[0].get("seed", 0):
            continue
        with open(folder / point_name(p) / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        si = list(groups).index(tuple(p[k] for k in series_keys))
        ax_curve.plot([float(r["step"]) for r in rows], [float(r["train_loss"]) for r in rows],
                      styles[si % len(styles)], color=cmap(xs_all.index(p[xkey])), lw=1,
                      label=point_name({k: p[k] for k in keys if k != "seed"}))
    xname = xkey.split(".")[-1]
    for a in (ax, ax_acc):
        a.set_xlabel(xname)
        if categorical:
            a.set_xticks(range(len(xs_all)), xs_all)
        elif min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 8:  # depths spread over decades
            a.set_xscale("log", base=2)
            a.set_xticks(xs_all, [str(x) for x in xs_all])
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    with open(folder / point_name(points[0]) / "config.yaml") as f:
        dataset = yaml.safe_load(f)["data"]["dataset"]
    seed_note = f", {seeds} seeds" if seeds > 1 else ", one seed"
    ax.set_ylabel("training loss (mean of the last 10% of logged steps)")
    ax.set_yscale("log")
    fig.suptitle(f"{sweep['name']} ({dataset}{seed_note})")
    ax.set_title("training loss at the end")
    ax_acc.set_ylabel("final test accuracy")
    ax_acc.set_title("test accuracy at the end")
    ax_curve.set_xlabel("step")
    ax_curve.set_ylabel("training loss")
    ax_curve.set_yscale("log")
    ax_curve.set_title("training loss during training")
    ax_curve.grid(alpha=0.3)
    # beside the panel: ten curves' names inside it would cover them
    ax_curve.legend(fontsize=6, ncol=1, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=80, bbox_inches="tight")
    plt.close(fig)


def write_summary(sweep: dict, points: list[dict], folder: Path) -> Path:
    keys = list(sweep["grid"])
    lines = [",".join(keys + ["late_train_loss", "final_test_acc"])]
    for p in points:
        run = folder / point_name(p)
        lines.append(",".join([str(p[k]) for k in keys]
                              + [f"{late_train_loss(run):.6g}", f"{final_test_acc(run):.6g}"]))
    (folder / "summary.csv").write_text("\n".join(lines) + "\n")
    return folder / "summary.csv"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs"))
    ap.add_argument("--plot", type=Path, default=None, help="also copy the plot here (e.g. under docs/)")
    args = ap.parse_args()
    sweep = yaml.safe_load(args.sweep.read_text())
    base = (args.sweep.parent / sweep["base"]).resolve()
    points = expand(sweep["grid"])
    folder = args.out / f"sweep-{sweep['name']}"
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(points, 1):
        run_dir = folder / point_name(p)
        if completed(run_dir):
            print(f"[{i}/{len(points)}] {run_dir} already completed", flush=True)
            continue
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an unfinished point is redone from scratch
        print(f"[{i}/{len(points)}] {run_dir}", flush=True)
        cmd = [skipexp(), "train", str(base), *(f"{k}={v}" for k, v in p.items()),
               "--name", point_name(p).replace("skip.", ""), "--run-dir", str(run_dir)]
        code = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
        if code != 0:
            print(f"failed ({code}): {' '.join(cmd)}", file=sys.stderr)
            return code
    (folder / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    print(write_summary(sweep, points, folder).read_text(), end="")
    target = folder / "plots" / "training.png"
    plot(sweep, points, folder, target)
    if args.plot is not None:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, args.plot)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
