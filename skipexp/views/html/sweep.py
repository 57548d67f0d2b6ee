"""report.html of a sweep folder: the table over its grid, final values against each swept key, every
configuration's curves, a chip per value of each swept key (seeds aside) that switches lines and rows."""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from skipexp.core.fmt import number, short_key, value
from skipexp.rundir import files, runio
from skipexp.views.html import page as P
from skipexp.views.html.compare import stats_line
from skipexp.views.html.curves import Member, accuracy_chart, loss_chart, read_run
from skipexp.views.html.run import config_table, figures, run_facts
from skipexp.views.html.svg import Chart, Series, render

NOT_RUN = files.NOT_RUN


@dataclass
class SweepInfo:
    """What the page says about the sweep itself (from its sweep.yaml)."""
    name: str
    grid: dict[str, list]               # key (or named axis) -> values (labels)
    overrides: dict[str, Any]
    base: str
    command: str
    variants: dict[str, dict[str, dict[str, Any]]]


def token(key: str, v: Any) -> str:
    """A toggle key for one value of a swept key: ``skip.kind=none`` (no spaces: keys are space-separated)."""
    return f"{short_key(key)}={value(v)}".replace(" ", "")


def _keys(values: dict[str, Any]) -> tuple[str, ...]:
    return tuple(token(k, v) for k, v in values.items() if k != "seed")


def _healthy(rows: list[dict], field: str) -> list[float]:
    """The finite values of ``field`` over the points that ran and did not diverge (what the tables average)."""
    return [float(r[field]) for r in rows if r.get("status") not in ("diverged", *NOT_RUN)
            and isinstance(r.get(field), (int, float)) and math.isfinite(r[field])]


def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(values) > 1


def _label(values: dict[str, Any]) -> str:
    return ", ".join(f"{short_key(k)}={value(v)}" for k, v in values.items() if k != "seed") or "all points"


def key_charts(info: SweepInfo, configs: list[tuple[dict, list[dict]]]) -> list[Chart]:
    """Final test accuracy and train loss against each numeric swept key (else the first key, as categories):
    a line per combination of the other keys, the mean over seeds with the min - max band."""
    keys = [k for k in info.grid if k != "seed"]
    along = [k for k in keys if _numeric(info.grid[k])] or keys[:1]
    charts = []
    for key in along:
        xs_all = info.grid[key]
        numeric = _numeric(xs_all)
        others: dict[tuple, list[tuple[Any, list[dict]]]] = {}
        for values, rows in configs:
            rest = tuple((k, value(values.get(k))) for k in keys if k != key)
            others.setdefault(rest, []).append((values.get(key), rows))
        for field, label, pct in (("final_test_acc", "final test accuracy", True),
                                  ("final_train_loss", "final train loss", False)):
            series = []
            for i, (rest, pts) in enumerate(others.items()):
                xs, mean, lo, hi = [], [], [], []
                for x, rows in pts:
                    got = _healthy(rows, field)
                    xs.append(float(x) if numeric else float(xs_all.index(x)))
                    mean.append(math.fsum(got) / len(got) if got else math.nan)
                    lo.append(min(got) if got else math.nan)
                    hi.append(max(got) if got else math.nan)
                name = ", ".join(f"{short_key(k)}={v}" for k, v in rest) or field.replace("_", " ")
                several = any(len(rows) > 1 for _, rows in pts)
                series.append(Series(name, xs, mean, tuple(f"{short_key(k)}={v}".replace(" ", "") for k, v in rest),
                                     i, "markers" if numeric else "dots", lo=lo if several else None,
                                     hi=hi if several else None))
            log_x = numeric and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 8
            ys = [y for s in series for y in s.ys if isinstance(y, float) and math.isfinite(y) and y > 0]
            log_y = not pct and bool(ys) and max(ys) / min(ys) > 10
            charts.append(Chart(
                f"{label[0].upper()}{label[1:]} against {short_key(key)}", short_key(key),
                label + (" (log scale)" if log_y else ""), series, ident=f"sweep-{field}-{short_key(key)}",
                x_log=log_x, y_log=log_y, y_pct=pct, y_range=(0.0, 1.02) if pct else None,
                categories=None if numeric else [value(v) for v in xs_all],
                caption=f"The {label} of each point against {short_key(key)}"
                        + (", a line per value of the other keys: the mean over the seeds that did not diverge, "
                           "shaded from the lowest to the highest seed" if numeric else
                           ": the mean over the seeds that did not diverge, a bar from the lowest to the highest "
                           "seed, nothing joining the categories")
                        + " (hover for the numbers). A diverged point is left out of the mean; the table below "
                          "counts it."))
    return charts


def curve_members(root: Path, configs: list[tuple[dict, list[dict]]]) -> list[Member]:
    out = []
    for i, (values, rows) in enumerate(configs):
        runs = [read_run(root / str(r["point"])) for r in rows
                if r.get("status") not in NOT_RUN and runio.is_run_dir(root / str(r["point"]))]
        if runs:
            out.append(Member(_label(values), runs, i, _keys(values)))
    return out


def _point_link(root: Path, point: str, text: str | None = None) -> str:
    text = escape(point if text is None else text)
    if (root / point / files.REPORT).is_file():
        return f'<a href="{escape(point)}/{files.REPORT}" title="{escape(point)}">{text}</a>'
    return f'<span title="{escape(point)}">{text}</span>'


def _mean_cell(rows: list[dict], agg: dict, field: str, pct: bool = False) -> str:
    mean = agg.get(f"{field}_mean")
    vals = _healthy(rows, field)
    text = escape(number(mean, pct))
    if len(vals) > 1:
        text += "<br><small>" + escape(stats_line(vals, pct)).replace("\n", "<br>") + "</small>"
    return P.cell(text, num=True, field=f"{field}_mean", value=mean)


def table(root: Path, info: SweepInfo, rows: list[dict], configs: list[tuple[dict, list[dict]]],
          aggregated: list[dict] | None) -> str:
    keys = [k for k in info.grid if k != "seed"] if aggregated is not None else list(info.grid)
    head = [escape(short_key(k)) for k in keys]
    body = []
    if aggregated is not None:
        head += ["seeds", "final train loss", "final test acc", "w-grad first/last, end", "points (reports)"]
        for (values, pts), agg in zip(configs, aggregated):
            n_seeds = len(info.grid["seed"])
            counts = agg.get("statuses", {})
            odd = ", ".join(f"{n} {st}" for st, n in counts.items() if st != "completed")
            seeds = f"{agg.get('seeds', 0)}/{n_seeds}" + (f" ({odd})" if odd else "")
            body.append((" ".join(_keys(values)), [P.cell(escape(value(values.get(k)))) for k in keys] + [
                P.cell(escape(seeds), cls=P.status_class("completed" if set(counts) == {"completed"} else "mixed")),
                _mean_cell(pts, agg, "final_train_loss"), _mean_cell(pts, agg, "final_test_acc", True),
                P.cell(escape(number(agg.get("grad_ratio_first_last_end_mean"), sci=True)), num=True,
                       field="grad_ratio_first_last_end_mean", value=agg.get("grad_ratio_first_last_end_mean")),
                P.cell(" ".join(_point_link(root, str(r["point"]), f"seed {value(r.get('seed'))}") for r in pts))]))
        note = ("Each row is a configuration over its seeds: the mean over the seeds that did not diverge and, under "
                "it, their sample standard deviation (±), how many and the 95 % Student-t interval of the mean (CI) "
                "(summary-seeds.csv has the same means).")
        numeric = [False] * (len(keys) + 1) + [True] * 3 + [False]
    else:
        head += ["status", "final train loss", "final test acc", "w-grad first/last, end", "train s"]
        for r in rows:
            status = str(r.get("status", "-"))
            if r.get("diverged_at_step") is not None:
                status += f" at step {r['diverged_at_step']}"
            values = {k: r.get(k) for k in keys}
            body.append((" ".join(_keys(values)), [P.cell(escape(value(r.get(k)))) for k in keys] + [
                P.cell(_point_link(root, str(r["point"])) + f"<br><small>{escape(status)}</small>",
                       cls=P.status_class(r.get("status")), field="status", value=r.get("status")),
                P.cell(escape(number(r.get("final_train_loss"))), num=True, field="final_train_loss",
                       value=r.get("final_train_loss")),
                P.cell(escape(number(r.get("final_test_acc"), pct=True)), num=True, field="final_test_acc",
                       value=r.get("final_test_acc")),
                P.cell(escape(number(r.get("grad_ratio_first_last_end"), sci=True)), num=True,
                       field="grad_ratio_first_last_end", value=r.get("grad_ratio_first_last_end")),
                P.cell(escape(number(r.get("wall_s"))), num=True, field="wall_s", value=r.get("wall_s"))]))
        note = "One row per point (summary.csv has every field); a point's name opens its own report."
        numeric = [False] * (len(keys) + 1) + [True] * 4
    return P.table(head, body, ident="summary", numeric=numeric) + P.para(note, "muted")


def sweep_page(root: Path, info: SweepInfo, rows: list[dict], configs: list[tuple[dict, list[dict]]],
               aggregated: list[dict] | None, version: str) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
    status = next(iter(counts)) if len(counts) == 1 else "mixed"
    p = P.Page(f"sweep {info.name}", "sweep", status,
               escape(str(root.resolve())) + " · " + escape(", ".join(f"{n} {s}" for s, n in counts.items())),
               version=version)
    p.toggles = [(short_key(k), [P.Toggle(token(k, v), value(v), i if len(info.grid) - ("seed" in info.grid) == 1
                                          else -1) for i, v in enumerate(vs)])
                 for k, vs in info.grid.items() if k != "seed" and len(vs) > 1]
    over = f"{len(configs)} configurations × {len(info.grid['seed'])} seeds" if aggregated is not None else \
        f"{len(rows)} points"
    p.add(f"Summary: {over}", table(root, info, rows, configs, aggregated), "summary")
    made = key_charts(info, configs)
    members = curve_members(root, configs)
    if members:
        made += [loss_chart(members, "sweep-loss", test=False), accuracy_chart(members, "sweep-acc", train=False)]
    if made:
        p.add("Charts", '<div class="grid2">' + "".join(render(c) for c in made) + "</div>", "charts")
    figs = figures(root)
    if figs:
        p.add("Figures", figs, "figures")
    grid_rows = [[P.cell(P.code(k)), P.cell(escape(", ".join(value(v) for v in vs)))] for k, vs in info.grid.items()]
    body = P.table(["swept key", "values"], grid_rows)
    for axis, labels in info.variants.items():
        body += P.table([f"{escape(axis)}: label", "sets"], [[P.cell(escape(label)), P.cell(P.code(
            ", ".join(f"{k}={value(v)}" for k, v in keys.items()) or "(the base as it is)"))]
            for label, keys in labels.items()])
    if info.overrides:
        fixed = " ".join(f"{k}={value(v)}" for k, v in info.overrides.items())
        body += P.para("Fixed for every point: " + P.code(fixed))
    body += P.para("Base config: " + P.code(info.base)) + P.para("Run it again (finished points are kept): "
                                                                 + P.code(info.command))
    first = next((root / str(r["point"]) for r in rows if runio.is_run_dir(root / str(r["point"]))), None)
    if first is not None:
        cfg = read_run(first).config
        body += P.details(f"every key of a point's config ({first.name})", config_table({first.name: cfg}))
        p.add("Grid and config", body, "config")
        facts = read_run(first)
        p.add("Run", P.para(f"As recorded by {escape(first.name)}; each point's own report has its own.", "muted")
              + run_facts(facts.meta, facts.summary), "run")
    else:
        p.add("Grid and config", body, "config")
    p.add("Files", P.links([(files.SWEEP_FILE, files.SWEEP_FILE), (files.SUMMARY_CSV, files.SUMMARY_CSV),
                            (files.SUMMARY_SEEDS_CSV, files.SUMMARY_SEEDS_CSV)]
                           + [(f"{files.PLOTS}/{x.name}", f"{files.PLOTS}/{x.name}")
                              for x in sorted((root / files.PLOTS).glob("*.png"))], root), "files")
    return p.html()
