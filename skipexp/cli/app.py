"""The typer app every command file adds its commands to."""
from __future__ import annotations

import os

import typer

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. With spinning (the default),
# a 2-thread run on 2 cores shared with other busy processes ran 18x slower than with 1 thread (2.4 vs
# 43 steps/s, configs/skip.yaml); sleeping threads gave 46 steps/s. Set OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    name="skipexp",
    help="Show, measure and explain why skip connections let deep networks train where plain ones fail.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # plain help: typer's rich help formatter imports rich.markdown, pygments and markdown-it (~0.3 s),
    # which `skipexp --help` cannot afford; tables and progress bars below still use rich
    rich_markup_mode=None,
)

