"""``skipexp diff``: two runs, comparison members, sweep configurations or sweeps side by side."""
from __future__ import annotations

import json
from typing import Annotated

import typer

from skipexp.cli.app import app
from skipexp.cli.console import out_console
from skipexp.core.errors import SkipexpError

FORMATS = ("table", "md", "json")


@app.command(short_help="What differs between two runs, members, sweep points or sweeps.")
def diff(
    a: Annotated[str, typer.Argument(help="A run folder, COMPARISON/MEMBER, SWEEP/KEY=V,... or a sweep folder.",
                                     metavar="A", show_default=False)],
    b: Annotated[str, typer.Argument(help="The other side, of the same kind of thing.", metavar="B",
                                     show_default=False)],
    everything: Annotated[bool, typer.Option("--all", help="Every config key, not only those that differ.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table (the terminal), md (Markdown) or json.")] = "table",
) -> None:
    """Config keys that differ, the summary side by side with B − A, and the per-layer gradient ratios.

    A side with several seeds (a comparison member, a sweep configuration without its seed) shows the mean
    ± sd with the 95 % t-interval; the difference gets Welch's interval and p-value. Two comparison or sweep
    folders are compared entry by entry. Nothing is written.

    \b
    Examples:
      skipexp diff runs/compare-20260101-120000/runs/plain runs/compare-20260101-120000/runs/skip
      skipexp diff runs/sweep-depth/depth=8,skip.kind=none runs/sweep-depth/depth=8,skip.kind=identity
      skipexp diff runs/sweep-depth runs/sweep-depth-adam --format md
    """
    from skipexp.experiments import diff as diff_mod

    if fmt not in FORMATS:
        raise SkipexpError(f"must be one of {', '.join(FORMATS)}, got {fmt!r}", key="--format")
    d = diff_mod.diff(a, b, everything)
    if fmt == "json":
        from skipexp.rundir.files import jsonable

        typer.echo(json.dumps(jsonable(d), indent=2, allow_nan=False))
        return
    if fmt == "md":
        typer.echo(diff_mod.markdown(d))
        return
    from rich.table import Table

    head, tables = diff_mod.tables(d)
    for line in head:
        out_console.print(line, markup=False, highlight=False, soft_wrap=True)
    for title, cols, rows in tables:
        out_console.print(title, style="bold", markup=False, highlight=False)
        t = Table()
        for i, c in enumerate(cols):
            t.add_column(c, justify="left" if i == 0 or title.startswith(("config", "swept")) else "right")
        for row in rows:
            t.add_row(*row, style="yellow" if title.startswith("config (every") and not row[0].startswith(" ")
                      else None)
        out_console.print(t)
    out_console.print(diff_mod.NOTE, style="dim", markup=False, highlight=False, soft_wrap=True)
