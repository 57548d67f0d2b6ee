"""report.html of a comparison folder: its members side by side, their curves overlaid, a chip per member."""
from __future__ import annotations

import math
from html import escape
from pathlib import Path

from skipexp.core.fmt import number, value
from skipexp.core.stats import summarize
from skipexp.rundir import files, runio
from skipexp.views.html import page as P
from skipexp.views.html.curves import Member, read_run
from skipexp.views.html.run import SUMMARY_ROWS, charts, config_table, figures, run_facts


def member_key(name: str) -> str:
    return f"member={name}"


def stats_line(values: list[float], pct: bool = False, sci: bool = False) -> str:
    """``± sd · 95 % CI [lo, hi] · n = 3`` under a mean over seeds (from the finite values)."""
    got = summarize([v for v in values if isinstance(v, (int, float)) and math.isfinite(v)])
    if got["n"] < 2:
        return f"n = {got['n']}"

    def f(v: float) -> str:
        return number(v, pct, sci)

    return (f"± {f(got['sd'])}, n = {got['n']}" + (f" of {len(values)}" if got["n"] != len(values) else "")
            + f"\nCI [{f(got['ci_low'])}, {f(got['ci_high'])}]")


def seed_cell(m: dict, field: str, pct: bool, sci: bool) -> str:
    """A member's cell: its summary.json value (the mean over seeds where it has several) and, under it,
    the seeds' sd, 95 % t-interval and count."""
    s = m.get("summary", {})
    v = s.get(field)
    text = escape(number(v, pct, sci and isinstance(v, float)))
    seeds = m.get("seed_summaries")
    if seeds and field not in ("diverged_at_step",):
        vals = [x.get(field) for x in seeds if isinstance(x.get(field), (int, float))]
        text += "<br><small>" + escape(stats_line(vals, pct, sci)).replace("\n", "<br>") + "</small>"
    return P.cell(text, num=True, field=field, value=v)


def compare_page(cdir: Path, summary: dict, caption: str, notes: tuple[str, ...], version: str) -> str:
    members = summary.get("members", [])
    names = [m["name"] for m in members]
    statuses = {m.get("summary", {}).get("status", "-") for m in members}
    p = P.Page(" vs ".join(names), "comparison", statuses.pop() if len(statuses) == 1 else "mixed",
               escape(str(cdir.resolve())) + (f" · created {escape(summary['created'])}" if summary.get("created")
                                              else ""), version=version)
    p.toggles = [("members", [P.Toggle(member_key(n), n, i) for i, n in enumerate(names)])]
    dirs = {m["name"]: [cdir / rel for rel in (m["runs"] if "runs" in m else [m["run"]])] for m in members}
    logs = {n: [read_run(d) for d in ds if runio.is_run_dir(d)] for n, ds in dirs.items()}

    head = [""] + [f'<span class="sw c{i}"></span> {escape(n)}' for i, n in enumerate(names)]
    rows = [[P.cell("status")] + [P.cell(escape(m.get("summary", {}).get("status", "-")),
                                         cls=P.status_class(m.get("summary", {}).get("status")),
                                         field="status", value=m.get("summary", {}).get("status"))
                                  for m in members]]
    if any("seeds" in m for m in members):
        rows.append([P.cell("seeds")] + [P.cell(escape(", ".join(map(str, m.get("seeds", [])))) or "-")
                                         for m in members])
    for label, field, pct, sci in SUMMARY_ROWS:
        if field == "diverged_at_step" and all(m.get("summary", {}).get(field) is None for m in members):
            continue
        rows.append([P.cell(escape(label))] + [seed_cell(m, field, pct, sci) for m in members])
    overrides = summary.get("overrides") or []
    notes_html = ("".join(P.para(escape(n), "muted") for n in notes)
                  + (P.para("With several seeds a cell is the mean over them (summary.json's value) and, under it, "
                            "their sample standard deviation (±), how many seeds and the 95 % Student-t interval of "
                            "the mean (CI).", "muted") if any("seeds" in m for m in members) else "")
                  + (P.para("Overrides applied to every config: " + P.code(" ".join(overrides))) if overrides else ""))

    diffs = summary.get("differences", {})
    configs = {n: ls[0].config for n, ls in logs.items() if ls}
    diff_rows = [[P.cell(P.code(k), cls="" if k.startswith("model.") else "differ")]
                 + [P.cell(escape(value(v.get(n)))) for n in names] for k, v in sorted(diffs.items())]
    body = "<h3>Config differences</h3>" + (
        P.table(["key", *map(escape, names)], diff_rows) if diff_rows else
        P.para("The configs differ in nothing but their names.", "muted"))
    if summary.get("unfair"):
        body += P.para("⚠ Highlighted keys are not about the model: the members differ in more than the model.")
    if configs:
        body += P.details(f"all keys of every member's config ({len(configs)} members)", config_table(configs))
    table = P.table(head, rows, ident="summary", numeric=[False] + [True] * len(names))
    p.add("Summary", P.para(escape(caption)) + P.split(table, body + notes_html), "summary")

    chart_members = [Member(n, logs[n], i, (member_key(n),)) for i, n in enumerate(names) if logs[n]]
    if chart_members:
        p.add("Curves", charts(chart_members, "compare"), "curves")
    figs = figures(cdir)
    if figs:
        p.add("Figures", figs, "figures")

    member_rows = []
    for i, m in enumerate(members):
        reports = [f'<a href="{escape(rel)}/{files.REPORT}">{escape(Path(rel).name)}</a>'
                   if (cdir / rel / files.REPORT).is_file() else escape(Path(rel).name)
                   for rel in (m["runs"] if "runs" in m else [m["run"]])]
        member_rows.append((member_key(m["name"]), [P.cell(f'<span class="sw c{i}"></span> {escape(m["name"])}'),
                                                    P.cell(P.code(str(m.get("config", "-")))),
                                                    P.cell(", ".join(reports))]))
    p.add("Members", P.table(["member", "config file", "run folders (their reports)"], member_rows), "members")
    first = next((ls[0] for ls in logs.values() if ls), None)
    if first is not None:
        p.add("Run", P.para("As recorded by the first member's first run; every member's own report has its own.",
                            "muted") + run_facts(first.meta, first.summary), "run")
    p.add("Files", P.links([(files.SUMMARY, files.SUMMARY), (files.SUMMARY_MD, files.SUMMARY_MD)]
                           + [(f"{files.PLOTS}/{x.name}", f"{files.PLOTS}/{x.name}")
                              for x in sorted((cdir / files.PLOTS).glob("*.png"))], cdir), "files")
    return p.html()
