"""``skipexp diff A B``: what differs between two runs, comparison members or sweep points, or two sweeps.

A side is a run folder, a comparison member (``COMPARE_DIR/MEMBER``: all its seeds), or a sweep
configuration (``SWEEP_DIR/KEY=V,...`` with every swept key but ``seed``: all its seeds); a point with
its seed is a run folder. Where a side is several seeds, its numbers are their mean with sd, n and the
95 % t-interval (:mod:`skipexp.core.stats`), and the difference gets Welch's interval and p-value when
both sides are. Two comparison or sweep folders are diffed entry by entry (members, configurations).
Everything is read from disk; nothing is written.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skipexp.core.config import flatten
from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import number, value
from skipexp.core.stats import summarize, welch
from skipexp.experiments.sweep.spec import folder_points, is_sweep_dir, load_folder, point_name
from skipexp.rundir import files, runio
from skipexp.rundir.summary import summarize as summarize_run
from skipexp.views.ticks import layer_keys

# summary fields compared, in the order shown: (field, label, percentage)
FIELDS = (("status", "status", False), ("steps", "steps", False),
          ("final_train_loss", "final train loss", False), ("best_train_loss", "best train loss", False),
          ("final_train_acc", "final train acc", True), ("final_test_loss", "final test loss", False),
          ("final_test_acc", "final test acc", True), ("best_test_acc", "best test acc", True),
          ("grad_ratio_first_last_start", "weight-grad first/last, start", False),
          ("grad_ratio_first_last_end", "weight-grad first/last, end", False),
          ("act_grad_ratio_first_last_end", "act-grad h0/h_last, end", False),
          ("steps_per_s", "steps/s", False))
# what a folder diff shows per entry
ENTRY_FIELDS = ("final_train_loss", "final_test_acc", "grad_ratio_first_last_end")
IGNORED = ("name",)   # differs between any two runs; says nothing


@dataclass
class Side:
    label: str              # as given on the command line
    what: str               # what it is, for people: "run", "comparison member plain (3 seeds)", ...
    runs: list[Path]

    @property
    def summaries(self) -> list[dict]:
        return [_summary(d) for d in self.runs]

    def config(self) -> dict[str, Any]:
        """The first run's config as dotted keys; ``seed`` the list of seeds where there are several."""
        flat = flatten(files.read_config_dict(self.runs[0]))
        if len(self.runs) > 1:
            flat["seed"] = [flatten(files.read_config_dict(d)).get("seed") for d in self.runs]
        return flat


@dataclass
class Folder:
    label: str
    kind: str                                 # comparison | sweep
    entries: dict[str, Side] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)


def _summary(run_dir: Path) -> dict:
    p = run_dir / files.SUMMARY
    return files.read_json(p) if p.is_file() else summarize_run(run_dir)


def _seeds(n: int) -> str:
    return f" ({n} seeds)" if n > 1 else ""


def resolve(arg: str) -> Side | Folder:
    """A command-line argument as a side or a folder (see the module docstring); a clear error otherwise."""
    from skipexp.experiments import compare

    path = Path(arg)
    if path.is_dir() and runio.is_run_dir(path):
        runio.require_run_dir(path)
        return Side(arg, "run", [path])
    if path.is_dir() and compare.is_compare_dir(path):
        return Folder(arg, "comparison", _members(path, arg))
    if path.is_dir() and is_sweep_dir(path):
        sw = load_folder(path)
        return Folder(arg, "sweep", _configurations(path, arg), dict(sw.grid))
    parent = path.parent
    if not path.exists() and parent.is_dir() and compare.is_compare_dir(parent):
        members = _members(parent, arg)
        return _pick(members, path.name, arg, "member of the comparison")
    if not path.exists() and parent.is_dir() and is_sweep_dir(parent):
        return _pick(_configurations(parent, arg), path.name, arg, "configuration of the sweep (its keys but seed)")
    if not path.exists():
        raise SkipexpError("no such run, comparison or sweep folder, nor a COMPARISON/MEMBER or "
                           "SWEEP/KEY=VALUE,... inside one", file=arg)
    raise SkipexpError("not a skipexp run, comparison or sweep folder", file=arg)


def _pick(entries: dict[str, Side], name: str, arg: str, what: str) -> Side:
    if name in entries:
        side = entries[name]
        side.label = arg
        return side
    hint = difflib.get_close_matches(name, list(entries), n=1)
    raise SkipexpError(f"no {what} named {name!r}" + (f' (did you mean "{hint[0]}"?)' if hint else "")
                       + f"; it has {', '.join(list(entries)[:8])}" + (" ..." if len(entries) > 8 else ""), file=arg)


def _members(cdir: Path, label: str) -> dict[str, Side]:
    from skipexp.experiments.compare import member_runs

    plan = files.read_json(cdir / files.SUMMARY)
    out = {}
    for m in plan.get("members", []):
        runs = [cdir / rel for rel in member_runs(m) if runio.is_run_dir(cdir / rel)]
        if runs:
            out[m["name"]] = Side(f"{label}/{m['name']}", f"comparison member {m['name']}{_seeds(len(runs))}", runs)
    return out


def _configurations(root: Path, label: str) -> dict[str, Side]:
    """A sweep's configurations by name (its point name without ``seed``), each with the points that ran."""
    out: dict[str, list[Path]] = {}
    for _, values, run_dir in folder_points(root):
        name = point_name({k: v for k, v in values.items() if k != "seed"}) or "all"
        out.setdefault(name, [])
        if runio.is_run_dir(run_dir):
            out[name].append(run_dir)
    return {n: Side(f"{label}/{n}", f"sweep configuration {n}{_seeds(len(runs))}", runs)
            for n, runs in out.items() if runs}


# --- comparing ------------------------------------------------------------------------------------

def _numbers(summaries: list[dict], f: str) -> list[float]:
    return [float(s[f]) for s in summaries if isinstance(s.get(f), (int, float)) and not isinstance(s[f], bool)
            and math.isfinite(s[f])]


def compare_field(a: list[dict], b: list[dict], f: str) -> dict:
    """One summary field on both sides: each side's mean, sd, n and t-interval, and B - A with its interval
    (Welch where both sides have two values or more; the one group's interval, shifted, where the other is
    one run) and p-value (Welch only)."""
    xa, xb = _numbers(a, f), _numbers(b, f)
    sa, sb = summarize(xa), summarize(xb)
    out = {"field": f, "a": sa, "b": sb, "diff": None, "ci_low": None, "ci_high": None, "p": None}
    if not xa or not xb:
        return out
    out["diff"] = sb["mean"] - sa["mean"]
    if len(xa) > 1 and len(xb) > 1:
        w = welch(xb, xa)
        out.update(ci_low=w["ci_low"], ci_high=w["ci_high"], p=w["p"])
    elif len(xb) > 1:
        out.update(ci_low=sb["ci_low"] - sa["mean"], ci_high=sb["ci_high"] - sa["mean"])
    elif len(xa) > 1:
        out.update(ci_low=sb["mean"] - sa["ci_high"], ci_high=sb["mean"] - sa["ci_low"])
    return out


def _statuses(summaries: list[dict]) -> str:
    st = [str(s.get("status", "unknown")) for s in summaries]
    counts = {x: st.count(x) for x in dict.fromkeys(st)}
    return st[0] if len(counts) == 1 else ", ".join(f"{n} {x}" for x, n in counts.items())


def layer_ratios(runs: list[Path], csv_name: str) -> dict[str, float]:
    """Each column's norm over the last column's (the head, or h_last) at the last logged step, the mean
    over the runs that have a finite one."""
    per: dict[str, list[float]] = {}
    for d in runs:
        rows = runio.read_csv(d / csv_name)
        if not rows:
            continue
        cols = [c for c in rows[-1] if c != "step"]
        last = rows[-1][cols[-1]]
        for c in cols:
            r = rows[-1][c] / last if last and math.isfinite(last) else math.nan
            if math.isfinite(r):
                per.setdefault(c, []).append(r)
            else:
                per.setdefault(c, [])
    return {c: (math.fsum(v) / len(v) if v else math.nan) for c, v in per.items()}


def _layers(a: Side, b: Side, csv_name: str) -> list[dict]:
    ra, rb = layer_ratios(a.runs, csv_name), layer_ratios(b.runs, csv_name)
    names = [k[-1] for k in sorted(set(layer_keys(list(ra))) | set(layer_keys(list(rb))))]
    out = []
    for n in names:
        x, y = ra.get(n), rb.get(n)
        change = y / x if x and y is not None and math.isfinite(x) and math.isfinite(y) and x != 0 else None
        out.append({"layer": n, "a": x, "b": y, "b_over_a": change})
    return out


def config_rows(ca: dict, cb: dict, everything: bool) -> list[dict]:
    keys = list(dict.fromkeys([*ca, *cb]))
    rows = [{"key": k, "a": ca.get(k), "b": cb.get(k), "differs": ca.get(k) != cb.get(k)} for k in keys
            if k not in IGNORED]
    return rows if everything else [r for r in rows if r["differs"]]


def diff_sides(a: Side, b: Side, everything: bool = False) -> dict:
    sa, sb = a.summaries, b.summaries
    summary = []
    for f, label, pct in FIELDS:
        if f == "status":
            summary.append({"field": f, "label": label, "a": _statuses(sa), "b": _statuses(sb)})
        else:
            summary.append({**compare_field(sa, sb, f), "label": label, "pct": pct})
    return {"kind": "runs",
            "a": {"label": a.label, "what": a.what, "runs": [str(d) for d in a.runs]},
            "b": {"label": b.label, "what": b.what, "runs": [str(d) for d in b.runs]},
            "config": config_rows(a.config(), b.config(), everything), "summary": summary,
            "layers": {"weight": _layers(a, b, files.GRAD_NORMS), "activation": _layers(a, b, files.ACT_GRAD_NORMS)}}


def diff_folders(a: Folder, b: Folder, everything: bool = False) -> dict:
    common = [n for n in a.entries if n in b.entries]
    if not common:
        raise SkipexpError(f"shares no member or configuration with {a.label} (it has "
                           f"{', '.join(list(b.entries)[:6])}); name one side's entries: {a.label}/NAME",
                           file=b.label)
    first_a, first_b = next(iter(a.entries.values())), next(iter(b.entries.values()))
    varying = set(a.grid) | set(b.grid) | {"seed"}
    ca = {k: v for k, v in first_a.config().items() if k not in varying}
    cb = {k: v for k, v in first_b.config().items() if k not in varying}
    grid = [{"key": k, "a": a.grid.get(k), "b": b.grid.get(k), "differs": a.grid.get(k) != b.grid.get(k)}
            for k in dict.fromkeys([*a.grid, *b.grid])]
    entries = [{"name": n, **{f: compare_field(a.entries[n].summaries, b.entries[n].summaries, f)
                              for f in ENTRY_FIELDS}} for n in common]
    return {"kind": "folders", "a": {"label": a.label, "what": a.kind}, "b": {"label": b.label, "what": b.kind},
            "grid": grid if everything else [g for g in grid if g["differs"]],
            "config": config_rows(ca, cb, everything), "entries": entries,
            "only_a": [n for n in a.entries if n not in b.entries],
            "only_b": [n for n in b.entries if n not in a.entries]}


def diff(a_arg: str, b_arg: str, everything: bool = False) -> dict:
    """The diff of two command-line arguments, as plain data (what ``--format json`` prints)."""
    a, b = resolve(a_arg), resolve(b_arg)
    if isinstance(a, Side) and isinstance(b, Side):
        return diff_sides(a, b, everything)
    if isinstance(a, Folder) and isinstance(b, Folder):
        return diff_folders(a, b, everything)
    folder, side = (a, b) if isinstance(a, Folder) else (b, a)
    names = ", ".join(f"{folder.label}/{n}" for n in list(folder.entries)[:3])
    raise SkipexpError(f"is a {folder.kind} folder and {side.label} is one {side.what}: diff two folders, or "
                       f"name one of its entries ({names} ...)", file=folder.label)


# --- for people: tables (the console and --format md draw the same ones) ----------------------------

def _n(v: Any, pct: bool = False) -> str:
    if isinstance(v, float) and not pct and v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.3g}"
    return number(v, pct)


def _g(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.3g}"


def _side_cell(s: dict, pct: bool) -> str:
    """A side's mean; with several seeds ``mean ± sd [lo, hi] (n)``."""
    if s["n"] == 0:
        return "-"
    if s["n"] == 1:
        return _n(s["mean"], pct)
    return f"{_n(s['mean'], pct)} ± {_n(s['sd'], pct)} [{_n(s['ci_low'], pct)}, {_n(s['ci_high'], pct)}] (n={s['n']})"


def _delta(r: dict) -> tuple[str, str, str]:
    """(B - A, its 95 % interval, p) as text; percentages of accuracy as percentage points."""
    if r["diff"] is None:
        return "-", "", ""

    def f(v: float) -> str:
        return f"{v * 100:+.1f} pp" if r.get("pct") else (f"{v:+.3g}" if v else "0")

    ci = f"[{f(r['ci_low'])}, {f(r['ci_high'])}]" if r["ci_low"] is not None else ""
    return f(r["diff"]), ci, (f"{r['p']:.3g}" if r["p"] is not None else "")


def _value(v: Any) -> str:
    return value(v)


Table = tuple[str, list[str], list[list[str]]]


def tables(d: dict) -> tuple[list[str], list[Table]]:
    """(header lines, tables of (title, head, rows)) for the console and Markdown."""
    head = [f"A: {d['a']['label']} ({d['a']['what']})", f"B: {d['b']['label']} ({d['b']['what']})"]
    out: list[Table] = []
    if d["kind"] == "folders" and d["grid"]:
        out.append(("swept keys", ["key", "A", "B"], [[g["key"], _value(g["a"]), _value(g["b"])] for g in d["grid"]]))
    cfg = [[("" if r["differs"] else "  ") + r["key"], _value(r["a"]), _value(r["b"])] for r in d["config"]]
    out.append(("config keys that differ" if not any(not r["differs"] for r in d["config"]) else
                "config (every key; those that differ first)",
                ["key", "A", "B"], sorted(cfg, key=lambda row: row[0].startswith(" ")) or [["(none)", "", ""]]))
    if d["kind"] == "runs":
        rows = []
        for r in d["summary"]:
            if r["field"] == "status":
                rows.append([r["label"], r["a"], r["b"], "", "", ""])
                continue
            rows.append([r["label"], _side_cell(r["a"], r["pct"]), _side_cell(r["b"], r["pct"]), *_delta(r)])
        out.append(("summary", ["", "A", "B", "B − A", "95 % CI", "p (Welch)"], rows))
        for which, title in (("weight", "weight-gradient norm / head's, last logged step"),
                             ("activation", "activation-gradient norm / h_last's, last logged step")):
            layers = d["layers"][which]
            if layers:
                out.append((title, ["layer", "A", "B", "B / A"],
                            [[x["layer"], _g(x["a"]), _g(x["b"]), (f"×{_g(x['b_over_a'])}" if x["b_over_a"]
                                                                  is not None else "-")] for x in layers]))
    else:
        rows = []
        for e in d["entries"]:
            cells = [e["name"]]
            for f in ENTRY_FIELDS:
                r = {**e[f], "pct": f.endswith("acc")}
                delta, ci, _ = _delta(r)
                cells += [_n(r["a"]["mean"], r["pct"]), _n(r["b"]["mean"], r["pct"]), f"{delta} {ci}".strip()]
            rows.append(cells)
        labels = {"final_train_loss": "train loss", "final_test_acc": "test acc",
                  "grad_ratio_first_last_end": "w-grad ratio"}
        out.append(("entries in both (mean over seeds; B − A with its 95 % CI)",
                    ["entry"] + [f"{labels[f]} {s}" for f in ENTRY_FIELDS for s in ("A", "B", "B − A")], rows))
        for side in ("a", "b"):
            if d[f"only_{side}"]:
                head.append(f"only in {side.upper()}: {', '.join(d['only_' + side])}")
    return head, out


NOTE = ("Several seeds: mean ± sample sd [95 % Student-t interval] (n). B − A: Welch's interval and p where both "
        "sides have two seeds or more; where one side is a single run, the other side's interval shifted by it. "
        "Accuracies change in percentage points.")


def markdown(d: dict) -> str:
    head, ts = tables(d)
    lines = ["# skipexp diff", ""] + [f"- {h}" for h in head] + [""]
    for title, cols, rows in ts:
        lines += [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows] + [""]
    return "\n".join(lines + [NOTE, ""])
