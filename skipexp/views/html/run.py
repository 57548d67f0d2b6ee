"""report.html of one run folder, and the pieces a comparison's and a sweep's reports reuse."""
from __future__ import annotations

from html import escape
from pathlib import Path

from skipexp.core.fmt import number, value
from skipexp.rundir import files
from skipexp.views.html import page as P
from skipexp.views.html.curves import Member, RunLogs, accuracy_chart, depth_chart, loss_chart, read_run
from skipexp.views.html.svg import render

# (label, summary field, as a percentage, scientific) of a run's summary table
SUMMARY_ROWS = (("steps", "steps", False, False), ("steps/s", "steps_per_s", False, False),
                ("training seconds", "wall_s", False, False),
                ("final train loss", "final_train_loss", False, False),
                ("best train loss", "best_train_loss", False, False),
                ("final train acc", "final_train_acc", True, False), ("best train acc", "best_train_acc", True, False),
                ("final test loss", "final_test_loss", False, False),
                ("best test loss", "best_test_loss", False, False),
                ("final test acc", "final_test_acc", True, False), ("best test acc", "best_test_acc", True, False),
                ("weight-grad first/last layer, start", "grad_ratio_first_last_start", False, True),
                ("weight-grad first/last layer, end", "grad_ratio_first_last_end", False, True),
                ("act-grad h0/h_last, start", "act_grad_ratio_first_last_start", False, True),
                ("act-grad h0/h_last, end", "act_grad_ratio_first_last_end", False, True),
                ("diverged at step", "diverged_at_step", False, False))

# how to read each figure a folder's plots/ may hold (file name -> caption)
CAPTIONS = {
    "loss.png": "Loss (left, log scale where it spans more than a decade) and accuracy (right) against step: "
                "the training curve smoothed over the logged batches, the test set at each evaluation as dots; "
                "the grey dotted lines are chance.",
    "grad_norms.png": "Gradient norm against depth, on a log scale: left, each layer's weight gradient; right, the "
                      "loss gradient at each block boundary h0 … h_L. A line that falls towards the input is a "
                      "gradient that dies on its way back.",
    "grad_heatmap.png": "log10 gradient norm per layer (rows, input at the bottom) and logged step (columns) on one "
                        "absolute colour scale: dark is a vanished gradient, equal colours are equal norms.",
    "curves.png": "Every configuration's smoothed training loss (log scale) and test accuracy against step: the "
                  "mean over its seeds with the min – max band shaded; colour follows the first numeric swept key.",
    "lesion.png": "Test accuracy after removing units of the trained model (lesion study): a residual net degrades "
                  "smoothly, a plain one collapses.",
}
SWEEP_KEY_CAPTION = ("Final training loss and test accuracy against {key}: the mean over seeds, a band from the "
                     "lowest to the highest seed, each seed a dot and a diverged run a red ✕.")

RUN_FILES = (files.CONFIG, files.META, files.SUMMARY, files.METRICS, files.EVAL, files.GRAD_NORMS,
             files.ACT_GRAD_NORMS, files.ACT_NORMS, files.TRAIN_LOG, files.LESION_CSV,
             f"{files.CHECKPOINTS}/{files.LAST_CHECKPOINT}")


def summary_cell(s: dict, field: str, pct: bool = False, sci: bool = False) -> str:
    v = s.get(field)
    return P.cell(escape(number(v, pct, sci and isinstance(v, float))), num=True, field=field, value=v)


def flat_config(cfg: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "."))
        else:
            out[key] = v
    return out


def config_table(configs: dict[str, dict], only_differences: bool = False) -> str:
    """Dotted keys × configs; a key whose values differ is marked. ``only_differences`` leaves the rest out."""
    flats = {n: flat_config(c) for n, c in configs.items()}
    keys = list(dict.fromkeys(k for f in flats.values() for k in f))
    rows = []
    for k in keys:
        vals = [value(f.get(k)) for f in flats.values()]
        differ = len(set(vals)) > 1
        if only_differences and not differ:
            continue
        rows.append([P.cell(P.code(k), cls="differ" if differ else "")] +
                    [P.cell(escape(v), cls="differ" if differ else "") for v in vals])
    if not rows:
        return P.para("none: every key is equal", "muted")
    return P.table(["key", *(escape(n) for n in configs)], rows)


def run_facts(meta: dict, summary: dict) -> str:
    versions = ", ".join(f"{k} {meta[f'{k}_version']}" for k in ("skipexp", "torch", "python")
                         if meta.get(f"{k}_version"))
    device = meta.get("device")
    if device and meta.get("device_name"):
        device = f"{device} ({meta['device_name']})"
    with_ = meta.get("trained_with")
    return P.facts([
        ("status", escape(str(summary.get("status") or meta.get("status") or "-"))
         + (f" at step {summary['diverged_at_step']}" if summary.get("diverged_at_step") is not None else "")),
        ("started", escape(str(meta.get("start_time") or ""))), ("ended", escape(str(meta.get("end_time") or ""))),
        ("training time", f"{meta['train_seconds']:.1f} s" if isinstance(meta.get("train_seconds"), (int, float))
         else None),
        ("steps", f"{summary.get('steps')} of {meta.get('total_steps')}" if meta.get("total_steps") else None),
        ("device", escape(str(device)) if device else None),
        ("threads", escape(str(meta.get("threads"))) if meta.get("threads") is not None else None),
        ("host", escape(str(meta.get("host") or ""))),
        ("parameters", f"{meta['params']:,}" if meta.get("params") else None),
        ("data", escape(str(meta.get("data_source") or ""))), ("versions", escape(versions)),
        ("git commit", P.code(str(meta["git_commit"])) if meta.get("git_commit") else None),
        ("trained with", escape(", ".join(map(str, with_))) if with_ and len(with_) > 1 else None),
        ("command", P.code(P.command_line(meta.get("command"))) if meta.get("command") else None),
    ])


def figures(folder: Path, rel: str = files.PLOTS, captions: dict[str, str] | None = None) -> str:
    """Every PNG in ``folder/plots`` inlined with its caption (and a link to the file)."""
    pngs = sorted((folder / rel).glob("*.png")) if (folder / rel).is_dir() else []
    if not pngs:
        return ""
    out = []
    for png in pngs:
        caption = (captions or {}).get(png.name) or CAPTIONS.get(png.name) or \
            SWEEP_KEY_CAPTION.format(key=png.stem.replace("_", "."))
        out.append(P.image(png, f'<a href="{escape(rel)}/{escape(png.name)}">{escape(png.name)}</a>: {caption}',
                           png.stem))
    return "".join(out)


def charts(members: list[Member], prefix: str, raw: bool = False) -> str:
    made = [loss_chart(members, f"{prefix}-loss", raw), accuracy_chart(members, f"{prefix}-acc"),
            depth_chart(members, "grads", f"{prefix}-grads"), depth_chart(members, "acts", f"{prefix}-acts")]
    return '<div class="grid2">' + "".join(render(c) for c in made if c is not None) + "</div>"


def run_page(run_dir: Path, version: str) -> str:
    r = read_run(run_dir)
    s = r.summary
    name = str(s.get("name") or r.meta.get("name") or run_dir.name)
    p = P.Page(name, "run", str(s.get("status") or "unknown"), escape(str(run_dir.resolve())), version=version)
    steps = [f"step={i}" for i in range(4)]
    p.toggles = [("curves", [P.Toggle("series=train", "train", 0), P.Toggle("series=test", "test", 1)]),
                 ("gradient steps", [P.Toggle(k, f"{['first', 'early', 'late', 'last'][i]} step", i)
                                     for i, k in enumerate(steps)])]
    rows = [[P.cell(escape(label)), summary_cell(s, f, pct, sci)] for label, f, pct, sci in SUMMARY_ROWS
            if f in s or f != "diverged_at_step"]
    p.add("Summary", P.split(P.table(["", "value"], rows, ident="summary", numeric=[False, True]),
                             "<h3>Run</h3>" + run_facts(r.meta, s) + P.para(
                                 "Final train values are the mean over the last tenth of the logged batches, best the "
                                 "best such mean; test values are the last evaluation and the best one. A gradient "
                                 "ratio far below 1 means the first layer gets a much smaller gradient than the "
                                 "last.", "muted")), "summary")
    p.add("Curves", charts([Member(name, [r])], "run", raw=True), "curves")
    figs = figures(run_dir)
    if figs:
        p.add("Figures", f'<div class="grid2">{figs}</div>', "figures")
    if r.config:
        p.add("Config", P.details(f"all {len(flat_config(r.config))} keys of config.yaml",
                                  config_table({name: r.config})), "config")
    p.add("Files", P.links(((f, f) for f in RUN_FILES), run_dir), "files")
    return p.html()


def member_of(name: str, runs: list[RunLogs], colour: int, key: str) -> Member:
    return Member(name, runs, colour, (key,))
