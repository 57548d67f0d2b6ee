"""Lesion study (Veit et al. 2016): remove units of a trained network at test time and measure the damage.

Removing a unit keeps what goes around it and drops what goes through it:

- a unit with a skip loses its residual branch and keeps its shortcut: ``identity`` -> ``out = x``;
  ``projection`` -> ``out = P(x)`` (x itself where the widths agree); ``rezero`` -> ``out = x``
  (``P(x)`` where widths differ), i.e. the branch output is zeroed;
- ``gated`` (highway) and ``shortcut-gated`` -> ``out = x`` (``P(x)`` where widths differ): the gate is closed, T = 0,
  as in the highway paper's own lesion experiment (Srivastava et al. 2015, Fig. 4). Merely zeroing
  F(x) would leave ``(1 - T(x)) * x``, which also shrinks the carried signal;
- ``dense`` -> the unit's block outputs are zeroed. Later blocks of the same dense segment still read
  the earlier boundaries through their concatenated input, but the head (and the next segment) reads
  only the last boundary, so removing the last dense unit of a segment cuts the network;
- a plain unit (no skip) is removed whole: ``out = x``, its input passes through. Where its input and
  output widths differ there is nothing to pass through, so it cannot be removed (the row says so).

The lesioned forward pass walks ``model.units`` itself, so the model's own forward stays untouched.
"""
from __future__ import annotations

import csv
import itertools
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from skipexp.core import config as config_mod
from skipexp.core import data as data_mod
from skipexp.core.errors import SkipexpError
from skipexp.core.models import SkipNet
from skipexp.rundir import files, runio
from skipexp.training.threads import choose_threads
from skipexp.views.style import formats_of

COLUMNS = ["k", "removed", "how", "test_loss", "test_acc"]


def removal(model: SkipNet, u: int) -> str | None:
    """How unit ``u`` is removed: 'branch' (shortcut kept), 'zero' (dense outputs zeroed), 'whole'
    (plain unit bypassed), or None where it cannot be removed (a plain unit that changes width)."""
    unit = model.units[u]
    kind = model.cfg.skip.kind if unit.bypassed else "none"
    if kind == "dense":
        return "zero"
    if kind != "none":
        return "branch"
    bw = model.boundary_widths
    return "whole" if bw[unit.blocks[0]] == bw[unit.blocks[-1] + 1] else None


def _shortcut(model: SkipNet, u: int, x: torch.Tensor) -> torch.Tensor:
    return model.skips[model.units[u].skip].shortcut(x)  # scale * P(x); P is x itself where there is none


def _finish(model: SkipNet, i: int, h: torch.Tensor) -> torch.Tensor:
    """What block i applies after its skip: a post-order conv block's act (He et al. 2016); nothing in an MLP."""
    finish = getattr(model.blocks[i], "finish", None)
    return h if finish is None else finish(h)


def forward_lesioned(model: SkipNet, x: torch.Tensor, removed: set[int]) -> torch.Tensor:
    """Logits of ``model`` with the units in ``removed`` taken out (see the module doc)."""
    hs = [model.input(x)]                                    # (N, width), a conv net's (N, C, H, W)
    for u, unit in enumerate(model.units):
        start = hs[-1]
        how = removal(model, u) if u in removed else None
        if u in removed and how is None:
            raise ValueError(f"unit {u} changes width and has no skip: it cannot be removed")
        if how in ("branch", "whole"):
            out = _finish(model, unit.blocks[-1], _shortcut(model, u, start)) if how == "branch" else start
            hs += [out] * len(unit.blocks)  # the unit's inner boundaries are read by nothing else
            continue
        for i, src in zip(unit.blocks, unit.sources):
            inp = hs[src[0]] if len(src) == 1 else torch.cat([hs[s] for s in src], dim=-1)
            out = model.blocks[i](inp)
            if unit.skip is not None and i == unit.blocks[-1]:
                out = model.skips[unit.skip](start, out)
            hs.append(torch.zeros_like(out) if how == "zero" else _finish(model, i, out))
    return model.head(hs[-1])


@torch.inference_mode()
def evaluate(model: SkipNet, x: torch.Tensor, y: torch.Tensor, removed: set[int],
             chunk: int = 8192) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the lesioned model over a whole split."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), chunk):
        logits = forward_lesioned(model, x[i:i + chunk], removed)
        loss_sum += nn.functional.cross_entropy(logits, y[i:i + chunk], reduction="sum").item()
        correct += int((logits.argmax(1) == y[i:i + chunk]).sum())
    return loss_sum / len(y), correct / len(y)


@dataclass
class LoadedRun:
    cfg: config_mod.RunConfig
    model: SkipNet
    splits: data_mod.Splits


def load_run(run_dir: Path, progress: data_mod.Progress | None = None) -> LoadedRun:
    """The run's resolved config, its model with the last checkpoint's weights (on the CPU), its data."""
    from skipexp.training.checkpoint import load_trained

    def splits_for(cfg: config_mod.RunConfig) -> data_mod.Splits:
        torch.set_num_threads(choose_threads(cfg))
        return data_mod.load(cfg.data, progress)

    cfg, model, splits, _ = load_trained(run_dir, splits_for)
    return LoadedRun(cfg, model, splits)


def lesion(run: LoadedRun, drop: int = 1, samples: int = 20, seed: int = 0,
           on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Rows of lesion.csv: the intact model (k=0), each unit alone (k=1), then ``samples`` seeded random
    sets of k removable units for each k in 2..drop (all sets where there are fewer than ``samples``)."""
    model, x, y = run.model, run.splits.x_test, run.splits.y_test
    removable = [u for u in range(len(model.units)) if removal(model, u) is not None]
    if drop > len(removable):
        raise SkipexpError(f"asks to remove {drop} units but the model has {len(removable)} removable units",
                           key="--drop")
    rows = []

    def add(k: int, removed: tuple[int, ...], how: str) -> None:
        loss, acc = evaluate(model, x, y, set(removed)) if how != "cannot" else (math.nan, math.nan)
        row = {"k": k, "removed": " ".join(map(str, removed)) or "-", "how": how, "test_loss": loss,
               "test_acc": acc}
        rows.append(row)
        if on_row is not None:
            on_row(row)

    add(0, (), "intact")
    for u in range(len(model.units)):
        add(1, (u,), removal(model, u) or "cannot")
    rng = random.Random(seed)
    for k in range(2, drop + 1):
        n_sets = math.comb(len(removable), k)
        if n_sets <= samples:
            sets = list(itertools.combinations(removable, k))
        else:
            chosen: set[tuple[int, ...]] = set()
            while len(chosen) < samples:
                chosen.add(tuple(sorted(rng.sample(removable, k))))
            sets = sorted(chosen)
        for s in sets:
            add(k, s, "+".join(sorted({removal(model, u) for u in s})))
    return rows


def write_csv(rows: list[dict], path: Path, columns: list[str] = COLUMNS) -> None:
    """All rows at once, atomically (runio.CsvLog is for step-keyed logs; these rows repeat k)."""
    files.write_csv(path, columns, rows)


def member_runs(folder: Path, where: list[str] = ()) -> list[Path]:
    """The run folders of a comparison (or sweep) folder: ``folder/runs/*`` or ``folder/*``; of a sweep with a
    ``select``, its chosen configurations' points only; with ``where`` (``key=value`` words, as point folders
    are named), the folders whose name holds every one of them."""
    inner = folder / files.RUNS if (folder / files.RUNS).is_dir() else folder
    dirs = sorted(p for p in inner.iterdir() if p.is_dir() and runio.is_run_dir(p))
    from skipexp.experiments.sweep.results import chosen_point_names
    from skipexp.experiments.sweep.spec import is_sweep_dir

    if is_sweep_dir(folder):
        chosen = chosen_point_names(folder)
        if chosen is not None:
            dirs = [d for d in dirs if d.name in chosen]
    return [d for d in dirs if all(w in d.name.split(",") for w in where)]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{**r, "k": int(r["k"]), "test_loss": float(r["test_loss"]), "test_acc": float(r["test_acc"])}
                for r in csv.DictReader(f)]


def plot(curves: list[tuple[str, list[list[dict]]]], out: Path, title: str, chance: float | None = None,
         formats: list[str] | tuple[str, ...] = ("png",)) -> Path:
    """The change in test accuracy (points) against the removed unit and the number removed, one line per net:
    ``curves`` holds (label, the lesion.csv rows of each of its seeds); labels are put into words
    (:func:`readable`). See :func:`skipexp.views.plots_science.lesion_figure`."""
    from skipexp.views.plots_science import plot_lesion

    return plot_lesion([(readable(label), seeds) for label, seeds in curves], out, title, chance, formats)


_MODEL_KEYS = ("depth", "width", "hidden", "activation", "norm", "order", "init", "skip")


def readable(label: str) -> str:
    """A member's label in words: ``skip.kind=none`` -> "plain (no skip)", ``net=residual (skip: identity)``
    -> "residual (identity skip)"; a name that is no ``key=value`` list keeps its name."""
    from skipexp.core.yamlio import parse
    from skipexp.views.style import SKIP_WORDS, words

    head, _, kind = label.partition(" (skip: ")
    kind_words = SKIP_WORDS.get(kind.rstrip(")"), kind.rstrip(")")) if kind else ""
    parts = [x.split("=", 1) for x in head.split(",")]
    if "=" not in head or any(len(x) != 2 for x in parts):
        return kind_words if head in kind_words else (f"{head} ({kind_words})" if kind_words else head)
    named, settings = [], {}
    for k, raw in parts:
        v = parse(raw)
        if k.split(".")[0] in _MODEL_KEYS:
            settings[f"model.{k}"] = v
        elif "." in k or k == "seed":
            settings[k] = v
        else:            # a named axis: its label is already a word
            named.append(v)
    text = ", ".join(named + ([words(settings)] if settings else []))
    return text if not kind_words or kind_words in text else f"{text} ({kind_words})"


_SEED = re.compile(r"(^|,)seed=\d+(?=[, ]|$)|-seed\d+(?=[, ]|$)")


def without_seed(label: str) -> str:
    """A member's label without its seed: a sweep point's ``seed=N``, a comparison member's ``-seedN``."""
    return _SEED.sub("", label).strip(",") or label


# --- the study ``skipexp lesion`` runs: every member of a folder, each written and plotted ---------

@dataclass
class MemberLesion:
    run_dir: Path
    name: str          # the run's config name
    kind: str          # its skip kind
    label: str         # its name in plots: the name, with the skip kind where the name lacks it
    rows: list[dict]   # lesion.csv
    csv: Path
    chance: float      # accuracy of a guess: 1 / classes

    def table(self) -> list[tuple[str, str, float, float | None]]:
        """(removed, how, test accuracy, change from intact): each single unit, and the mean over the
        random sets of each k >= 2."""
        intact = self.rows[0]["test_acc"]
        out = []
        for k in sorted({r["k"] for r in self.rows}):
            group = [r for r in self.rows if r["k"] == k]
            shown = group if k <= 1 else [{"removed": f"{len(group)} random sets of {k}", "how": "mean",
                                            "test_acc": sum(r["test_acc"] for r in group) / len(group)}]
            for r in shown:
                acc = r["test_acc"]
                out.append((r["removed"], r["how"], acc, None if k == 0 or acc != acc else acc - intact))
        return out


@dataclass
class LesionStudy:
    members: list[MemberLesion]
    overlay: Path | None   # plots/lesion.png of a folder of several runs, all overlaid


def study(folder: Path, drop: int = 1, samples: int = 20, seed: int = 0, progress: data_mod.Progress | None = None,
          on_member: Callable[[MemberLesion], None] | None = None, where: list[str] = ()) -> LesionStudy:
    """Lesion a run folder, or every run of a comparison or sweep folder: each gets lesion.csv and
    plots/lesion.png; a folder of several runs also gets plots/lesion.png with all of them overlaid.
    ``on_member`` hears each run as soon as it is done."""
    if not folder.is_dir():
        raise SkipexpError("no such folder", file=str(folder))
    dirs = [folder] if runio.is_run_dir(folder) else member_runs(folder, where)
    if not dirs:
        raise SkipexpError("neither a run folder nor a folder of run folders (runs/<member>/)" +
                           (f" whose names hold {','.join(where)}" if where else ""), file=str(folder))
    members = []
    # a sweep's points share their base config's name: there a point is named by what varies, its folder
    names = [files.read_config_dict(d).get("name") for d in dirs]
    for run_dir, config_name in zip(dirs, names):
        run = load_run(run_dir, progress=progress)
        rows = lesion(run, drop=drop, samples=samples, seed=seed)
        write_csv(rows, run_dir / files.LESION_CSV)
        name, kind = run.cfg.name, run.cfg.model.skip.kind
        if names.count(config_name) > 1:
            name = run_dir.name
        label = name if kind in name else f"{name} (skip: {kind})"
        chance = 1.0 / run.splits.num_classes
        dataset = run.cfg.data.dataset
        plot([(label, [rows])], run_dir / files.PLOTS / files.LESION_PNG, f"{name} ({dataset})", chance,
             formats_of(run_dir))
        member = MemberLesion(run_dir, name, kind, label, rows, run_dir / files.LESION_CSV, chance)
        members.append(member)
        if on_member is not None:
            on_member(member)
    overlay = None
    if len(members) > 1:
        # the seeds of one net are one line: their mean, with a band from the lowest to the highest
        nets: dict[str, list[list[dict]]] = {}
        for m in members:
            nets.setdefault(without_seed(m.label), []).append(m.rows)
        seeds = {len(v) for v in nets.values()}
        n = f", {seeds.pop()} seeds each" if len(seeds) == 1 and max(len(v) for v in nets.values()) > 1 else ""
        title = f"{folder.name} ({run.cfg.data.dataset}{n})"
        overlay = plot(list(nets.items()), folder / files.PLOTS / files.LESION_PNG, title, members[-1].chance,
                       formats_of(members[0].run_dir))
    return LesionStudy(members, overlay)
