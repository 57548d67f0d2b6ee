"""Listing what skipexp knows: the registered kinds."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from skipexp.cli.app import app
from skipexp.cli.console import out_console
from skipexp.core.errors import SkipexpError


@app.command("list", short_help="List the registered kinds: skips, activations, datasets and more.")
def list_cmd(
    what: Annotated[Optional[str], typer.Argument(
        help="Only this registry, e.g. skip (kinds), activation, dataset.", metavar="REGISTRY",
        show_default=False)] = None,
) -> None:
    """List the registered kinds (skip kinds, activations, norms, inits, optimizers, schedules, datasets)."""
    from rich.table import Table

    from skipexp.core import registry

    regs = registry.ALL
    if what is not None:
        regs = tuple(r for r in registry.ALL if what.rstrip("s") in (r.what, r.what.split()[0]))
        if not regs:
            import difflib

            names = [r.what.split()[0] for r in registry.ALL]
            hint = difflib.get_close_matches(what.rstrip("s"), names, n=1)
            did = f' (did you mean "{hint[0]}"?)' if hint else ""
            raise SkipexpError(f"unknown registry {what!r}{did}; choose from {', '.join(names)}", key="list")
    for reg in regs:
        t = Table(title=f"{reg.what}s", title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 1))
        t.add_column(style="bold cyan", no_wrap=True)
        t.add_column()
        for name, doc in reg.docs.items():
            t.add_row(name, doc)
        out_console.print(t)
        out_console.print()

