"""The ``skipexp`` command. It owns the console, the progress bar, signals and exit codes.

One file per command group, each adding its commands to :data:`app`: :mod:`.run` (train, resume,
validate), :mod:`.science` (lesion, shatter), :mod:`.mechanisms`
(landscape, sharpness, jacobian, paths), :mod:`.experiments` (compare, sweep, report, tensorboard), :mod:`.diff`,
:mod:`.listing` (list). A command parses its arguments, calls one library function and renders what it
returns (:mod:`.render`). Heavy imports (torch, matplotlib) happen inside the commands, so
``skipexp --help`` stays instant.
"""
from __future__ import annotations

import os
import sys

import typer

# each command file adds its commands to app; --help lists them in the order imported
# isort: off
from skipexp.cli import run  # noqa: F401
from skipexp.cli import science  # noqa: F401
from skipexp.cli import mechanisms  # noqa: F401
from skipexp.cli import experiments  # noqa: F401
from skipexp.cli import diff  # noqa: F401
from skipexp.cli import listing  # noqa: F401
# isort: on
from skipexp.cli.app import app
from skipexp.cli.args import complete_yaml
from skipexp.cli.console import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    StopFlag,
    error,
    reset_consoles,
    restore_signals,
)
from skipexp.core.errors import SkipexpError
from skipexp.core.machine import openmp_wait

__all__ = ["app", "complete_yaml", "main", "StopFlag"]


def main(argv: list[str] | None = None) -> None:
    try:  # recent typer carries its own copy of click, whose exceptions are not click's classes
        from typer._click import exceptions as click_exceptions
    except ImportError:
        from click import exceptions as click_exceptions
    openmp_wait()  # before any command loads torch
    reset_consoles()
    try:
        code = app(args=argv, prog_name="skipexp", standalone_mode=False)
    except SkipexpError as e:
        error(str(e))
        code = EXIT_BAD_INPUT
    except click_exceptions.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `skipexp`: the help, as a usage error
            print(e.ctx.get_help() if e.ctx is not None else "Usage: skipexp [OPTIONS] COMMAND [ARGS]...")
            sys.exit(EXIT_BAD_INPUT)
        where = f"{e.ctx.command_path}: " if e.ctx is not None else ""
        if e.format_message():  # empty when the help was just shown (no arguments at all)
            error(f"{where}{e.format_message()}".replace("\n", " "))
        code = EXIT_BAD_INPUT
    except typer.Abort:
        code = EXIT_INTERRUPTED
    except typer.Exit as e:
        code = e.exit_code
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Exception as e:  # a bug or an environment failure: one line here, the traceback in train.log
        logs = getattr(e, "train_logs", None)   # where training wrote it (skipexp.training.setup.logged_in)
        where = f"traceback in {logs[0]}" if logs else "SKIPEXP_DEBUG=1 shows the traceback"
        error(f"{e.__class__.__name__}: {e}".splitlines()[0] + f" ({where})")
        if os.environ.get("SKIPEXP_DEBUG"):
            raise
        code = EXIT_FAILED
    finally:
        restore_signals()
    sys.exit(code if isinstance(code, int) else 0)
