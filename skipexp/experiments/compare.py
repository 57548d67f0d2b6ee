"""Compare: train several configs on the same data, seed and batch order, and put them side by side.

A comparison folder ``<out>/compare-<time>[-n]/`` holds the member runs in ``runs/<member>/``, plus
``summary.json`` (written before training starts and rewritten at the end, so an interrupted comparison
can still be reported), ``summary.md`` (the table) and overlaid plots in ``plots/``.

With several seeds (``seed: [0, 1, 2]``, or the override ``seed=[0,1,2]``) every member trains all its
seeds together (one ordinary run folder per seed, ``runs/<member>-seed<N>/``, so ``runs/`` stays a flat
folder of run folders) and the table and plots show the mean over seeds with its min-max spread. Members
must then list the same seeds, so that seed i of every member sees the same batches; a member whose seed
list differs is a config error on ``seed``. (One seed each may differ, as before: the table flags it.)

The batch order is a pure function of (seed, epoch) and the data of the data config, so members that
share those see exactly the same batches; the table says when members differ in anything but the model.

Members (and seeds) whose models share a shape and differ only in per-model values
(:mod:`skipexp.training.stackable`: seed, lr, init, ..., and skip kind none beside identity) train together
in one stack, one progress bar per group; each still gets its ordinary run folder, equal (to the bit on
the CPU) to a lone ``skipexp train`` of it, and its meta.json names the members it trained with.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from skipexp.core import config as config_mod
from skipexp.core.config import RunConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import number
from skipexp.experiments.html import write_compare
from skipexp.experiments.seeds import CI_FIELDS, MEAN_FIELDS, against_baseline, healthy, mean_summary  # noqa: F401
from skipexp.rundir import files, runio
from skipexp.rundir import summary as summary_mod
from skipexp.rundir.reuse import config_differences, flatten
from skipexp.rundir.summary import summarize, write_summary

SMALL_N = 5   # fewer seeds than this: the caption warns that intervals are wide

# Keys that may differ between members without making the comparison unfair.
NEUTRAL = ("name", "train.threads")


@dataclass(frozen=True)
class Member:
    name: str        # the member's folder name in runs/
    source: str      # the config file it came from
    cfg: RunConfig


def plan(paths: list[Path], overrides: list[str]) -> list[Member]:
    """Load every config with the shared overrides; member names are the config names, made unique."""
    members: list[Member] = []
    used: set[str] = set()
    for path in paths:
        cfg = config_mod.load(path, overrides)
        if members and (len(cfg.seeds) > 1 or len(members[0].cfg.seeds) > 1) \
                and cfg.seeds != members[0].cfg.seeds:
            # seed i of every member must see the same batches, or the mean compares different draws
            raise SkipexpError(f"every config must list the same seeds to compare means over seeds; "
                               f"{members[0].source} has {members[0].cfg.seeds}, this one {cfg.seeds}",
                               file=str(path), key="seed")
        name, n = cfg.name, 1
        while name in used:
            n += 1
            name = f"{cfg.name}-{n}"
        used.add(name)
        members.append(Member(name, str(path), cfg.replace(name=name)))
    return members


def create_dir(out: Path) -> Path:
    """``out/compare-<time>[-n]``, created exclusively."""
    return runio.create_exclusive(out, f"compare-{runio.timestamp()}")


def is_compare_dir(path: Path) -> bool:
    try:
        s = files.read_json(path / files.SUMMARY)
    except SkipexpError:
        return False
    return s.get("tool") == "skipexp" and s.get("kind") == "compare"


def _plan_entry(m: Member) -> dict:
    if len(m.cfg.seeds) == 1:
        return {"name": m.name, "config": m.source, "run": f"runs/{m.name}"}
    return {"name": m.name, "config": m.source, "seeds": list(m.cfg.seeds),
            "runs": [f"runs/{files.seed_run_name(m.name, s)}" for s in m.cfg.seeds]}


def member_runs(m: dict) -> list[str]:
    """The run folders (relative to the comparison folder) of one member entry of summary.json."""
    return list(m["runs"]) if "runs" in m else [m["run"]]


def write_plan(cdir: Path, members: list[Member], overrides: list[str], baseline: str | None = None) -> None:
    files.write_json(cdir / files.SUMMARY, {
        "tool": "skipexp", "kind": "compare", "created": datetime.now().isoformat(timespec="seconds"),
        "overrides": list(overrides), "baseline": baseline or members[0].name,
        "members": [_plan_entry(m) for m in members],
    })


def check_baseline(members: list[Member], baseline: str | None) -> None:
    """``--baseline`` names a member (its config's name, as the table heads it)."""
    names = [m.name for m in members]
    if baseline is not None and baseline not in names:
        raise SkipexpError(f"{baseline!r} is not a member; the members are {', '.join(names)}", key="--baseline")


def member_configs(m: Member) -> list[tuple[RunConfig, str]]:
    """One-seed configs of a member and their folder names in ``runs/``: the member's own name, or
    ``<member>-seed<N>`` per seed where it lists several (the folders ``skipexp train`` would make)."""
    if len(m.cfg.seeds) == 1:
        return [(m.cfg, m.name)]
    return [(m.cfg.replace(seed=s, name=files.seed_run_name(m.name, s)), files.seed_run_name(m.name, s))
            for s in m.cfg.seeds]


@dataclass(frozen=True)
class MemberGroup:
    """Members (and their seeds) that train together in one stack."""
    members: list[Member]
    cfgs: list[RunConfig]   # one per model: a member's seeds in order, members in order
    dirs: list[str]         # each model's folder name in runs/
    owners: list[str]       # each model's member (its name)

    @property
    def label(self) -> str:
        """What its progress bar says: the members, with their number of seeds where they list several."""
        return " + ".join(m.name if len(m.cfg.seeds) == 1 else f"{m.name} ×{len(m.cfg.seeds)} seeds"
                          for m in self.members)


def groups(members: list[Member]) -> list[MemberGroup]:
    """The members' models split into groups that train together
    (:func:`skipexp.training.stackable.group_configs`), in member order.

    A member's seeds always share its group: they differ only in the seed, a per-model value.
    """
    from skipexp.training.stackable import group_configs

    models = [(i, cfg, name) for i, m in enumerate(members) for cfg, name in member_configs(m)]
    out = []
    for idx in group_configs([cfg for _, cfg, _ in models]):
        owners = sorted({models[j][0] for j in idx})
        out.append(MemberGroup([members[i] for i in owners], [models[j][1] for j in idx], [models[j][2] for j in idx],
                         [members[models[j][0]].name for j in idx]))
    return out


def run(members: list[Member], cdir: Path, *,
        group_reporter: Callable[[str, list[str]], Any] | None = None, should_stop: Callable[[], bool] = lambda: False,
        progress: Any = None) -> list:
    """Train the members into ``cdir/runs``, those that can stack together in one process
    (:func:`groups`), one group after the other; stop early once a group is interrupted (then every
    model of it has checkpointed and ends ``interrupted``).

    ``group_reporter(label, owners)`` gives the reporter of a group's one progress bar, labelled with its
    members; ``owners`` names each model's member, so that the bar can show each member's own loss.
    A bad input found while setting up the first group (data files, device) leaves no folder behind.
    """
    from skipexp.training.fit import create_run, fit
    from skipexp.views.run_views import RunViews

    results: list = []
    for g in groups(members):
        reporter = group_reporter(g.label, g.owners) if group_reporter is not None else None
        try:
            dirs = [create_run(cfg, cdir / files.RUNS, cdir / files.RUNS / name) for cfg, name in zip(g.cfgs, g.dirs)]
            got = fit(g.cfgs, dirs, reporter=reporter, should_stop=should_stop, progress=progress, views=RunViews())
        except SkipexpError:
            if not results:
                shutil.rmtree(cdir, ignore_errors=True)
            raise
        finally:
            if reporter is not None and hasattr(reporter, "close"):   # the library closes what it asked for
                reporter.close()
        results += got
        if any(r.status == "interrupted" for r in got):
            break
    return results


# --- from disk: summary.json, summary.md, plots --------------------------------------------------

def rebuild(cdir: Path, refresh: bool = True, html: bool = True) -> dict:
    """Recompute the comparison from its folder: member summaries, differences, table, plots and (unless
    ``html`` is False) report.html."""
    from skipexp.views import plots_compare

    s = files.read_json(cdir / files.SUMMARY)
    configs: dict[str, dict] = {}
    for m in s.get("members", []):
        per_seed = []
        for rel in member_runs(m):
            run_dir = cdir / rel
            if runio.is_run_dir(run_dir):
                per_seed.append(write_summary(run_dir) if refresh else summarize(run_dir))
                # the first seed stands for the member: seeds are equal across members by construction
                if m["name"] not in configs:
                    configs[m["name"]] = files.read_config_dict(run_dir)
                cfg = configs[m["name"]]
                wants = (cfg.get("log") or {}).get("plots", True)   # log.plots: false is CSVs only, as for train
                if refresh and wants and not (run_dir / files.PLOTS / "loss.png").exists():
                    from skipexp.views import plots

                    plots.plot_run(run_dir)  # a run killed before its end has no plots yet
            else:
                per_seed.append({"name": Path(rel).name, "status": "not started"})
        if "runs" in m:
            m["seed_summaries"] = per_seed
            m["summary"] = mean_summary(m["name"], per_seed)
        else:
            m["summary"] = per_seed[0]
    s["differences"] = differences(configs)
    s["unfair"] = sorted(k for k in s["differences"] if not k.startswith("model."))
    against_baseline(s)
    files.write_json(cdir / files.SUMMARY, s)
    files.atomic_write(cdir / files.SUMMARY_MD, markdown(s))
    member_dirs = [(m["name"], [cdir / r for r in member_runs(m) if runio.is_run_dir(cdir / r)])
                   for m in s["members"]]
    member_dirs = [(name, dirs) for name, dirs in member_dirs if dirs]
    if member_dirs:
        plots_compare.plot_compare(member_dirs, cdir / files.PLOTS)
    if html:
        write_compare(cdir, s, table(s)[2], NOTES, [cdir / r for m in s["members"] for r in member_runs(m)])
    return s


def differences(configs: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """Dotted key -> {member: value} for every key on which some members disagree (name aside)."""
    names = list(configs)
    keys: set[str] = set()
    for other in names[1:]:
        keys |= set(config_differences(configs[names[0]], configs[other], NEUTRAL))
    flat = {n: flatten(c) for n, c in configs.items()}
    return {k: {n: flat[n].get(k) for n in names} for k in sorted(keys)}


def _pair(s: dict, a: str, b: str, **kw: bool) -> str:
    return f"{number(s.get(a), **kw)} / {number(s.get(b), **kw)}"


def table(s: dict) -> tuple[list[str], list[tuple[str, list[str]]], str]:
    """(member names, rows of (label, one cell per member), caption) for the console and summary.md."""
    members = s.get("members", [])
    sums = [m.get("summary", {}) for m in members]
    diffs = s.get("differences", {})
    rows: list[tuple[str, list[str]]] = [("status", [x.get("status", "-") + (
        f" at step {x['diverged_at_step']}" if x.get("diverged_at_step") is not None else "") for x in sums])]
    rows.append(("config", [m.get("config", "-") for m in members]))
    multi = any("seeds" in m for m in members)
    if multi:
        rows.append(("seeds (mean below)", [", ".join(map(str, m.get("seeds", []))) or "-"
                                                      for m in members]))
    for k in sorted(diffs, key=lambda k: (not k.startswith("model."), k)):
        mark = "" if k.startswith("model.") else "⚠ "
        rows.append((f"{mark}{k}", [number(diffs[k].get(m["name"])) for m in members]))
    params = [int(p) if isinstance(p, float) and p.is_integer() else p for p in (x.get("params") for x in sums)]
    mismatch = len({p for p in params if p is not None}) > 1
    rows += [
        (("⚠ " if mismatch else "") + "parameters", [number(p) for p in params]),
        ("steps", [number(x.get("steps")) for x in sums]),
        ("train loss final / best", [_pair(x, "final_train_loss", "best_train_loss") for x in sums]),
        ("train acc final / best", [_pair(x, "final_train_acc", "best_train_acc", pct=True) for x in sums]),
        ("test loss final / best", [_pair(x, "final_test_loss", "best_test_loss") for x in sums]),
        ("test acc final / best", [_pair(x, "final_test_acc", "best_test_acc", pct=True) for x in sums]),
        ("steps/s", [number(x.get("steps_per_s")) for x in sums]),
        ("weight-grad first/last layer, start → end",
         [f"{number(x.get('grad_ratio_first_last_start'), sci=True)} → "
          f"{number(x.get('grad_ratio_first_last_end'), sci=True)}" for x in sums]),
        ("act-grad h0/h_last, start → end",
         [f"{number(x.get('act_grad_ratio_first_last_start'), sci=True)} → "
          f"{number(x.get('act_grad_ratio_first_last_end'), sci=True)}" for x in sums]),
    ]
    if multi:
        def span(x: dict, f: str, **kw: bool) -> str:
            lo_hi = x.get("spread", {}).get(f)
            return f"{number(lo_hi[0], **kw)} – {number(lo_hi[1], **kw)}" if lo_hi else "-"

        def ci(x: dict, f: str, **kw: bool) -> str:
            lo_hi = x.get("ci", {}).get(f)
            return f"[{number(lo_hi[0], **kw)}, {number(lo_hi[1], **kw)}]" if lo_hi else "-"

        base = s.get("baseline")

        def delta(m: dict, f: str, pct: bool = False) -> str:
            d = m.get("against_baseline", {}).get(f)
            if m.get("name") == base:
                return "(baseline)"
            if not d or d.get("diff") is None:
                return "-"
            k, unit = (100.0, " pp") if pct else (1.0, "")
            interval = "" if d["ci_low"] is None else f" [{d['ci_low'] * k:+.3g}, {d['ci_high'] * k:+.3g}]"
            p = "" if d["p"] is None else (", p < 0.001" if d["p"] < 0.001 else f", p = {d['p']:.3f}")
            return f"{d['diff'] * k:+.3g}{interval}{unit}{p}"

        at = next(i for i, (label, _) in enumerate(rows) if label == "steps/s")
        rows[at:at] = [("train loss final, seed min – max", [span(x, "final_train_loss") for x in sums]),
                       ("train loss final, 95% CI", [ci(x, "final_train_loss") for x in sums]),
                       ("test acc final, seed min – max", [span(x, "final_test_acc", pct=True) for x in sums]),
                       ("test acc final, 95% CI", [ci(x, "final_test_acc", pct=True) for x in sums]),
                       (f"Δ train loss vs {base} [95% CI], Welch p",
                        [delta(m, "final_train_loss") for m in members]),
                       (f"Δ test acc vs {base} [95% CI], Welch p",
                        [delta(m, "final_test_acc", pct=True) for m in members])]
    unfair = s.get("unfair", [])
    caption = ("same data, seed and batch order; only the model differs" if not unfair else
               f"⚠ the configs also differ in {', '.join(unfair)}: not only the model changes")
    if mismatch:
        caption += "; ⚠ the members differ in parameter count"
    if multi:
        caption += "; every figure is the mean over the member's seeds (seed i of every member: same batches)"
        n = [x.get("n", {}).get("final_test_acc", 0) for x in sums]
        if any(0 < k < SMALL_N for k in n):
            caption += f"; ⚠ fewer than {SMALL_N} seeds: wide intervals, rough p-values"
    return [m["name"] for m in members], rows, caption


# what the table's words mean, under it on the console and in summary.md
SEEDS_NOTE = ("95% CI = the 95 % confidence interval of the mean over the seeds that did not diverge "
              "(Student t); Δ = the member's mean minus the baseline member's, its 95 % CI and the p-value of "
              "Welch's t-test (accuracy in percentage points).")
NOTES = (summary_mod.FINAL_BEST, summary_mod.STEPS,
         "A ratio far below 1 means the first layer gets a much smaller gradient than the last: "
         "the signal dies on its way back to the input.")


def notes(s: dict) -> list[str]:
    """What the table's words mean: :data:`NOTES`, and with seeds what its intervals and differences are."""
    multi = any("seeds" in m for m in s.get("members", []))
    return list(NOTES[:2]) + ([SEEDS_NOTE] if multi else []) + list(NOTES[2:])


def markdown(s: dict) -> str:
    names, rows, caption = table(s)
    lines = [f"# comparison ({s.get('created', '')})", "", caption, "",
             "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    lines += [""] + [f"- {n}" for n in notes(s)] + [""]
    if s.get("overrides"):
        lines.insert(3, f"overrides applied to every config: `{' '.join(s['overrides'])}`\n")
    return "\n".join(lines)
