"""What the report's charts draw, read from run folders: a run's logs, a member's mean over its seeds, and
the charts every kind of report shares (loss, accuracy, gradient norm against depth)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skipexp.rundir import files, runio
from skipexp.rundir.summary import smooth, summarize
from skipexp.views.html.svg import Chart, Series
from skipexp.views.ticks import layer_keys


@dataclass
class RunLogs:
    """Everything a report reads from one run folder."""
    path: Path
    meta: dict
    summary: dict
    config: dict
    metrics: list[dict]
    evals: list[dict]
    grads: list[dict]
    acts: list[dict]

    @property
    def classes(self) -> int | None:
        data = self.config.get("data") or {}
        try:
            return int(data.get("num_classes", 10)) if data.get("dataset") == "synthetic" else 10
        except (TypeError, ValueError):
            return None


def read_run(run_dir: Path) -> RunLogs:
    """A run folder's logs; its summary.json where one exists, else computed from the CSVs."""
    summary_file = run_dir / files.SUMMARY
    summary = files.read_json(summary_file) if summary_file.is_file() else summarize(run_dir)
    try:
        config = files.read_config_dict(run_dir)
    except (OSError, ValueError):
        config = {}
    return RunLogs(run_dir, files.meta_or_empty(run_dir), summary, config if isinstance(config, dict) else {},
                   runio.read_csv(run_dir / files.METRICS), runio.read_csv(run_dir / files.EVAL),
                   runio.read_csv(run_dir / files.GRAD_NORMS), runio.read_csv(run_dir / files.ACT_GRAD_NORMS))


@dataclass
class Member:
    """A line of a chart: one run, or the seeds of one configuration (drawn as their mean and min - max)."""
    name: str
    runs: list[RunLogs]
    colour: int = 0
    keys: tuple[str, ...] = field(default_factory=tuple)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def over_seeds(curves: list[tuple[list[float], list[float]]]) -> tuple[list[float], list[float], list, list]:
    """(steps, mean, min, max) over seeds at the steps every seed logged; a seed whose value is not finite
    there (it diverged) is left out of that step, and a step no seed has a finite value at is nan."""
    if not curves:
        return [], [], [], []
    common = set(curves[0][0]).intersection(*(set(xs) for xs, _ in curves[1:]))
    steps = [x for x in curves[0][0] if x in common]
    by_step = [dict(zip(xs, ys)) for xs, ys in curves]
    mean, lo, hi = [], [], []
    for x in steps:
        vals = [d[x] for d in by_step if _finite(d[x])]
        mean.append(math.fsum(vals) / len(vals) if vals else math.nan)
        lo.append(min(vals) if vals else math.nan)
        hi.append(max(vals) if vals else math.nan)
    return steps, mean, lo, hi


def _series(m: Member, label: str, curves: list[tuple[list[float], list[float]]], style: str,
            dash: bool = False, band: bool = True) -> Series:
    xs, mean, lo, hi = over_seeds(curves)
    several = len(curves) > 1
    return Series(label, xs, mean, m.keys, m.colour, style, dash, lo if several and band else None,
                  hi if several and band else None)


def _train(r: RunLogs, col: str) -> tuple[list[float], list[float]]:
    return [row["step"] for row in r.metrics], smooth([row[col] for row in r.metrics])


def _test(r: RunLogs, col: str) -> tuple[list[float], list[float]]:
    return [row["step"] for row in r.evals], [row[col] for row in r.evals]


def _chance(members: list[Member]) -> int | None:
    return next((r.classes for m in members for r in m.runs if r.classes), None)


def _legend(members: list[Member], styles: list[tuple[str, str, bool]]) -> list | None:
    """Several members: a colour per member, then what each line style means (in the text colour)."""
    if len(members) == 1:
        return None
    return [(m.name, m.colour, "line", False, m.keys) for m in members] + \
        ([(label, -1, style, dash) for label, style, dash in styles] if len(styles) > 1 else [])


TRAIN_STYLE, TEST_STYLE = ("train (smoothed)", "line", False), ("test", "markers", True)


def _one_run(members: list[Member], series: list[Series]) -> None:
    """A single run's chart: its chips switch train and test, each in its own colour."""
    if len(members) == 1:
        for s in series:
            test = s.label.endswith("test")
            s.keys = (*members[0].keys, "series=test" if test else "series=train")
            s.colour = 1 if test else 0


def loss_chart(members: list[Member], ident: str, raw: bool = False, test: bool = True) -> Chart:
    """Smoothed train loss (solid) and test loss (dots) against step; ``raw`` adds each logged batch, faint."""
    series = []
    for m in members:
        name = f"{m.name}: " if len(members) > 1 else ""
        if raw and len(m.runs) == 1:
            r = m.runs[0]
            series.append(Series(f"{name}train, each logged batch", [x["step"] for x in r.metrics],
                                 [x["train_loss"] for x in r.metrics], m.keys + ("series=train",), m.colour, "faint",
                                 hover=False))
        series.append(_series(m, f"{name}train (smoothed)", [_train(r, "train_loss") for r in m.runs], "line"))
        if test:
            series.append(_series(m, f"{name}test", [_test(r, "test_loss") for r in m.runs], "markers", dash=True))
    _one_run(members, series)
    k = _chance(members)
    values = [y for s in series for y in s.ys if _finite(y) and y > 0] + ([math.log(k)] if k else [])
    log = bool(values) and max(values) / min(values) > 10
    return Chart("Loss" if test else "Training loss", "step", "cross-entropy loss" + (" (log scale)" if log else ""),
                 series, ident=ident,
                 y_log=log, rules=[(math.log(k), f"chance: ln {k} = {math.log(k):.2f}")] if k else [],
                 y_range=None if log else (0.0, max(values, default=1.0) * 1.1),
                 legend=_legend(members, [TRAIN_STYLE, TEST_STYLE] if test else [TRAIN_STYLE]),
                 caption=("Solid: the training loss, smoothed over the logged batches (an exponential moving "
                          "average over a twentieth of the run)" + ("; dots: the loss on the test set at each "
                                                                    "evaluation. " if test else ". ")
                          + ("Shaded: the lowest to the highest seed around their mean. " if _seeds(members) else "")
                          + (f"The dotted line is chance (ln {k}): a net that sits on it has learned nothing."
                             if k else "")))


def accuracy_chart(members: list[Member], ident: str, train: bool = True) -> Chart:
    series = []
    for m in members:
        name = f"{m.name}: " if len(members) > 1 else ""
        if train:
            series.append(_series(m, f"{name}train (smoothed)", [_train(r, "train_acc") for r in m.runs], "line"))
        series.append(_series(m, f"{name}test", [_test(r, "test_acc") for r in m.runs], "markers", dash=train))
    _one_run(members, series)
    k = _chance(members)
    return Chart("Accuracy" if train else "Test accuracy", "step", "accuracy", series, ident=ident, y_pct=True,
                 y_range=(0.0, 1.02), rules=[(1 / k, f"chance: {1 / k:.0%}")] if k else [],
                 legend=_legend(members, [TRAIN_STYLE, TEST_STYLE] if train else [TEST_STYLE]),
                 caption=("Solid: training accuracy, smoothed; dots: test accuracy at each evaluation" if train else
                          "Test accuracy at each evaluation")
                 + (", the mean over seeds with the lowest to the highest shaded" if _seeds(members) else "")
                 + (f"; dotted: chance ({1 / k:.0%})." if k else "."))


def _seeds(members: list[Member]) -> bool:
    return any(len(m.runs) > 1 for m in members)


def _pick(n: int, k: int) -> list[int]:
    return sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(min(k, n))})


GRADIENTS = {
    "grads": ("Weight-gradient norm per layer", "layer (input → head)",
              "The L2 norm of each layer's weight gradient, input on the left, head on the right (log scale). "),
    "acts": ("Activation-gradient norm per block boundary", "boundary h_i (input → output)",
             "The norm of the loss gradient at each block boundary h0 … h_L (log scale). "),
}


def depth_chart(members: list[Member], which: str, ident: str) -> Chart | None:
    """Gradient norm against depth. One run: a line per logged step picked across the run (dark early);
    several members: each one's first (dashed) and last (solid) logged step, seeds averaged."""
    title, xlabel, about = GRADIENTS[which]
    rows_of = {m.name: [getattr(r, which) for r in m.runs if getattr(r, which)] for m in members}
    if not any(rows_of.values()):
        return None
    cols = sorted({k for rows in rows_of.values() for rs in rows[:1] for k in layer_keys(_columns(rs))})
    pos = {k[-1]: i for i, k in enumerate(cols)}
    labels = [k[-1].replace("blocks.", "b").replace("skips.", "s") for k in cols]
    series: list[Series] = []
    single = len(members) == 1 and len(members[0].runs) == 1
    for m in members:
        per_seed = rows_of[m.name]
        if not per_seed:
            continue
        n = min(len(rs) for rs in per_seed)
        picks = _pick(n, 4) if single else ([0, n - 1] if n > 1 else [0])
        for j, i in enumerate(picks):
            step = int(per_seed[0][i]["step"])
            curves = [([pos[c] for c in _columns(rs)], [rs[i][c] for c in _columns(rs)]) for rs in per_seed]
            xs, mean, lo, hi = _at_layers(curves)
            last = j == len(picks) - 1
            if single:
                series.append(Series(f"step {step}", xs, mean, (*m.keys, f"step={j}"), j, "markers"))
            else:
                series.append(Series(f"{m.name}: step {step}", xs, mean, m.keys, m.colour, "markers",
                                     dash=not last, lo=lo if len(curves) > 1 and last else None,
                                     hi=hi if len(curves) > 1 and last else None))
    how = ("One line per logged step picked across the run, from the first to the last. " if single else
           "Dashed: the first logged step, solid: the last" + (", the mean over seeds with their min – max "
                                                                "shaded" if _seeds(members) else "") + ". ")
    legend = None if single else _legend(members, [("first logged step", "markers", True),
                                                   ("last logged step", "markers", False)])
    return Chart(title, xlabel, "L2 norm (log scale)", series, ident=ident, y_log=True, categories=labels,
                 legend=legend,
                 caption=about + how + "A line that falls towards the input is a gradient that vanishes on its way "
                                       "back; a flat one reaches the first layers.")


def _columns(rows: list[dict]) -> list[str]:
    return [c for c in rows[0] if c != "step"]


def _at_layers(curves: list[tuple[list[int], list[float]]]) -> tuple[list[float], list[float], list, list]:
    xs = sorted({x for c in curves for x in c[0]})
    by = [dict(zip(*c)) for c in curves]
    mean, lo, hi = [], [], []
    for x in xs:
        vals = [d[x] for d in by if x in d and _finite(d[x])]
        mean.append(math.fsum(vals) / len(vals) if vals else math.nan)
        lo.append(min(vals) if vals else math.nan)
        hi.append(max(vals) if vals else math.nan)
    return xs, mean, lo, hi
