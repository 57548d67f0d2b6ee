"""The typer app every command file adds its commands to, and how its help reads."""
from __future__ import annotations

import typer
from typer.core import TyperArgument, TyperGroup


class PlainArgument(TyperArgument):
    """An argument as help shows it by convention: ``CONFIG`` and ``[KEY=VALUE]...`` in the usage line,
    ``CONFIG`` in the list. Typer's own help writes ``{config}`` and ``overrides... <list[str]>``."""

    def display_type_rich(self, ctx) -> None:
        return None

    def _usage_display_name(self) -> str:
        name = (self.metavar or self.name.upper()).removesuffix("...")
        return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")

    def get_usage_pieces(self, ctx) -> list[str]:
        """The usage line's piece, the same on every typer version (older ones print a metavar bare)."""
        return [self._usage_display_name()]


def readable_metavar(param) -> str:
    """A metavar for a parameter that names none: ``N`` for a count, else its name (``--format FORMAT``)."""
    from pathlib import Path

    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return {int: "N", float: "X", Path: "PATH"}.get(kind, param.name.upper())


class HelpGroup(TyperGroup):
    """The command group, with readable help: metavars instead of ``<int range>`` and ``{config}``, and
    each command listed with its ``short_help``, else its docstring's first paragraph, whole: click would
    cut it to fit with "..."."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            if not command.short_help and command.help:
                command.short_help = " ".join(command.help.strip().split("\n\n")[0].split())
            for param in command.params:
                if getattr(param, "is_flag", False) or param.name == "help":
                    continue
                if param.metavar is None:
                    param.metavar = readable_metavar(param)
                if isinstance(param, TyperArgument):
                    param.__class__ = PlainArgument


app = typer.Typer(
    name="skipexp",
    help="Show, measure and explain why skip connections let deep networks train where plain ones fail.",
    cls=HelpGroup,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # plain help: typer's rich help formatter imports rich.markdown, pygments and markdown-it (~0.3 s),
    # which `skipexp --help` cannot afford; tables and progress bars below still use rich
    rich_markup_mode=None,
)
