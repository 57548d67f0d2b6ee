"""Tables the commands print: what a library function returned, drawn for people."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from skipexp.cli.console import EXIT_INTERRUPTED, err_console, out_console, resume_hint
from skipexp.core.fmt import number


def print_summary(summary: dict, run_dir: Path) -> None:
    from rich.table import Table

    t = Table(title=f"{summary.get('name')}: {summary.get('status')}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    fmt = number
    rows = [("steps", summary.get("steps")), ("steps/s", summary.get("steps_per_s")),
            ("parameters", summary.get("params")),
            (f"final train loss{_train_from(summary)}", summary.get("final_train_loss")),
            (f"final train acc{_train_from(summary)}", fmt(summary.get("final_train_acc"), True)),
            ("final test loss", summary.get("final_test_loss")),
            ("final test acc", fmt(summary.get("final_test_acc"), True)),
            ("best test acc", fmt(summary.get("best_test_acc"), True)),
            *([("final validation loss", summary.get("final_val_loss")),
               ("final validation acc", fmt(summary.get("final_val_acc"), True))]
              if summary.get("final_val_loss") is not None else []),
            ("weight-grad ratio first/last, start → end",
             f"{fmt(summary.get('grad_ratio_first_last_start'))} → {fmt(summary.get('grad_ratio_first_last_end'))}"),
            ("act-grad ratio h0/h_last, start → end",
             f"{fmt(summary.get('act_grad_ratio_first_last_start'))} → "
             f"{fmt(summary.get('act_grad_ratio_first_last_end'))}")]
    if summary.get("diverged_at_step") is not None:
        rows.insert(0, ("diverged at step", summary["diverged_at_step"]))
    for k, v in rows:
        t.add_row(k, v if isinstance(v, str) else fmt(v))
    out_console.print(t)


def _train_from(summary: dict) -> str:
    """What a summary's train figures were measured on."""
    return {"evaluation": " (training data)", "batches": " (logged batches)"}.get(summary.get("train_from"), "")


# (label, summary field, as a percentage) of the table over seeds
SEED_ROWS = (("steps", "steps", False), ("steps/s", "steps_per_s", False),
             ("final train loss", "final_train_loss", False), ("final train acc", "final_train_acc", True),
             ("final test loss", "final_test_loss", False), ("final test acc", "final_test_acc", True),
             ("best test acc", "best_test_acc", True),
             ("final validation loss", "final_val_loss", False), ("final validation acc", "final_val_acc", True),
             ("weight-grad ratio first/last, end", "grad_ratio_first_last_end", False),
             ("act-grad ratio h0/h_last, end", "act_grad_ratio_first_last_end", False))


def print_seeds(name: str, summaries: list[dict]) -> None:
    """The runs of one config over several seeds: mean and min – max, as ``compare`` averages a member."""
    from rich.table import Table

    from skipexp.experiments.compare import mean_summary

    agg = mean_summary(name, summaries)
    t = Table(title=f"{name}: {agg['status']}, mean over {agg['seeds']} seeds", title_justify="left")
    for col, just in (("", "left"), ("mean", "right"), ("min – max", "right"), ("95% CI (n)", "right")):
        t.add_column(col, justify=just)
    if agg.get("diverged_at_step") is not None:
        t.add_row("first divergence at step", str(agg["diverged_at_step"]), "", "")
    for label, field, pct in SEED_ROWS:
        if field not in agg:   # a field no seed has (validation without a validation split)
            continue
        lo_hi, ci = agg["spread"].get(field), agg["ci"].get(field)
        t.add_row(label, number(agg.get(field), pct),
                  "-" if lo_hi is None else f"{number(lo_hi[0], pct)} – {number(lo_hi[1], pct)}",
                  "" if ci is None else f"[{number(ci[0], pct)}, {number(ci[1], pct)}] ({agg['n'][field]})")
    out_console.print(t)
    out_console.print("95% CI: of the mean over the seeds that did not diverge (Student t)", style="dim",
                      markup=False, highlight=False)


def exit_if_interrupted(*results, pending: Sequence[Path] = ()) -> None:
    """Print the outcome of runs (a config's seeds) and exit 130 if any was interrupted, with one line that
    resumes every one of them and the ``pending`` folders a stop left unstarted."""
    from skipexp.rundir import files

    interrupted = [r.run_dir for r in results if r.status == "interrupted"]
    stopped = interrupted + list(pending)
    if not stopped:
        return
    # one line however narrow the terminal, so it can be copied and run
    lost = [d for d in interrupted if not files.last_checkpoint(d).is_file()]
    if lost:
        hint = (f"interrupted; {', '.join(map(str, lost))} {'has' if len(lost) == 1 else 'have'} no checkpoint "
                "(log.checkpoint: none), so it cannot be resumed")
    else:
        hint = resume_hint(stopped)
    err_console.print(hint, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INTERRUPTED)


def print_compare(summary: dict) -> None:
    from rich.table import Table

    from skipexp.experiments import compare as compare_mod

    names, rows, caption = compare_mod.table(summary)
    t = Table(title="comparison", caption=caption, title_justify="left", caption_justify="left")
    t.add_column("")
    for n in names:
        t.add_column(n, justify="right")
    for label, cells in rows:
        t.add_row(label, *cells, style="yellow" if label.startswith("⚠") else None)
    out_console.print(t)
    for note in compare_mod.notes(summary):
        out_console.print(f"  {note}", style="dim", markup=False, highlight=False)


def print_sweep(rows: list[dict], sweep, title: str) -> None:
    """A sweep's table (:func:`skipexp.experiments.report.sweep_table`): a row per point, or per configuration
    over its seeds, with the note that says what the cells mean; over seeds, the differences after it."""
    from skipexp.experiments.report import differences_table, sweep_table

    _print_table(sweep_table(rows, sweep.grid, sweep.select), title)
    diffs = differences_table(rows, sweep)
    if diffs is not None:
        against = (", ".join(f"{k}={v}" for k, v in sweep.baseline.items()) if sweep.baseline
                   else "the configuration before it")
        _print_table(diffs, f"differences against {against}")


def _print_table(st, title: str) -> None:
    from rich.table import Table

    t = Table(title=f"{title} = {st.rows_are}" if st.rows_are else title, title_justify="left")
    for i, h in enumerate(st.head):
        t.add_column(h, justify="left" if i < st.keys or h in ("status", "seeds") else "right")
    for cells, state in zip(st.body, st.states):
        t.add_row(*cells, style={"diverged": "red", "completed": None}.get(state, "yellow"))
    out_console.print(t)
    if st.note:  # one line however narrow the terminal: it is the table's legend
        out_console.print(st.note, style="dim", markup=False, highlight=False, soft_wrap=True)


def print_theory_answer(r) -> None:
    """The answer of ``validate --theory`` in two lines, printed before the config and the layer table."""
    ratio = f"||dL/dh0|| / ||dL/dh{r.depth}|| at init"
    if r.predicted is None:
        out_console.print(f"theory: {ratio}: measured {r.measured[0]:.4g}; no prediction: {r.reason}",
                          markup=False, highlight=False)
        return
    out_console.print(f"theory: {ratio}: predicted {r.predicted[0]:.4g}, measured {r.measured[0]:.4g} "
                      f"(measured / predicted = {r.measured[0] / r.predicted[0]:.3f})", markup=False,
                      highlight=False)
    out_console.print(f"  on {r.examples} training examples; per boundary in the table at the end",
                      markup=False, highlight=False, style="dim")


def print_theory(r) -> None:
    """``validate --theory``'s details: a :class:`skipexp.science.theory.TheoryReport`, after its answer."""
    from rich.table import Table

    if r.predicted is None:
        print_theory_jacobian(r)
        return
    b0 = r.blocks[0]
    block = (f"{r.activation} -> Linear -> {r.activation} -> Linear" if r.order == "pre"
             else f"Linear -> {r.activation} -> Linear")
    out_console.print(
        f"theory (mean field, per block {block}, init {r.init}): "
        f"sigma_w^2 = {b0.sigma_w2:.3g}, sigma_b^2 = {b0.sigma_b2:.3g}, E[phi'(z)^2] = {b0.dphi2:.3g}, "
        f"chi per block = {b0.chi_branch:.4g}, per unit with its skip = {b0.chi_unit:.4g}", markup=False)
    t = Table(title=f"||dL/dh_i|| / ||dL/dh{r.depth}|| at init, on {r.examples} training examples",
              title_justify="left")
    for col in ("boundary", "predicted", "measured", "measured / predicted"):
        t.add_column(col, justify="right")
    for i in r.shown():
        t.add_row(f"h{i}", f"{r.predicted[i]:.4g}", f"{r.measured[i]:.4g}", f"{r.measured[i] / r.predicted[i]:.3f}")
    out_console.print(t)
    out_console.print("the theory assumes wide layers: at width 512 expect agreement within ~10-20%; narrow "
                      "nets drift further, a few % per block")
    print_theory_jacobian(r)


def print_theory_jacobian(r) -> None:
    """``validate --theory``'s Jacobian table: singular values s of dh_i/dh_0 at init, with the mean-field
    mean s^2 where the theory has one."""
    from rich.table import Table

    if not r.jacobian:
        return
    t = Table(title=f"singular values s of dh_i/dh_0 at init, on {r.jacobian_examples} training examples "
                    "(dynamical isometry: mean s² = 1, spread 0)", title_justify="left")
    cols = ["boundary", "mean s², predicted", "mean s², measured", "spread var(s²)/mean(s²)²", "s max", "s min"]
    for col in cols:
        t.add_column(col, justify="right")
    by = {row["boundary"]: row for row in r.jacobian}
    for i in r.shown():
        if i not in by:
            continue
        row, pred = by[i], r.predicted_s2(i)
        t.add_row(f"h{i}", "-" if pred is None else f"{pred:.4g}", f"{row['mean_s2']:.4g}", f"{row['spread']:.3g}",
                  f"{row['s_max']:.3g}", f"{row['s_min']:.3g}")
    out_console.print(t)


def points(change: float) -> str:
    """A change of an accuracy (a fraction) in percentage points, ``-1.2 pp``: not ``-1.2%``, which reads as
    relative; a change that rounds to nothing is ``0.0 pp``, never ``-0.0``."""
    pp = round(change * 100, 1)
    return "0.0 pp" if pp == 0 else f"{pp:+.1f} pp"


def print_lesion(m) -> None:
    """One run of ``lesion``: a :class:`skipexp.science.lesion.MemberLesion`."""
    from rich.table import Table

    t = Table(title=f"{m.name} ({m.kind}): lesion, test accuracy", title_justify="left")
    for col in ("removed", "how", "test acc", "change"):
        t.add_column(col, justify="left" if col in ("removed", "how") else "right")
    for removed, how, acc, change in m.table():
        t.add_row(removed, how, "-" if acc != acc else f"{acc:.1%}", "-" if change is None else points(change))
    out_console.print(t)
    out_console.print(str(m.csv), soft_wrap=True)


def print_shatter(study) -> None:
    """``shatter``: a :class:`skipexp.science.shatter.ShatterStudy`."""
    from rich.table import Table

    t = Table(title="lag-1 correlation of gradients along a line (mean ± half-width of its 95% CI)",
              title_justify="left")
    t.add_column("depth", justify="right")
    for state, kind in study.columns():
        t.add_column(kind if state == "init" else f"{kind} (trained)", justify="right")
    t.add_column("2^-L", justify="right")
    for d, cells in study.grid():
        t.add_row(str(d), *[f"{c[0]:.3f} ± {c[1]:.3f}" if c else "" for c in cells], f"{2.0 ** -d:.3g}")
    out_console.print(t)
    out_console.print(str(study.plot), soft_wrap=True)
    out_console.print(str(study.folder), soft_wrap=True)
