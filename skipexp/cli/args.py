"""Arguments shared by several commands: config files (with shell completion), overrides, options."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from skipexp.core.errors import SkipexpError

if TYPE_CHECKING:
    from skipexp.core.config import RunConfig


def complete_yaml(incomplete: str) -> list[str]:
    """Shell completion for config arguments: .yaml/.yml files and the folders that lead to them.

    A lone matching folder is opened at once: shells append a space after a single candidate,
    which would end the word at the folder.
    """
    def matches(text: str) -> list[str]:
        folder, slash, stem = text.rpartition("/")
        try:
            entries = sorted(Path(folder + slash or ".").iterdir())
        except OSError:
            return []
        return [f"{folder}{slash}{e.name}" + ("/" if e.is_dir() else "") for e in entries
                if e.name.startswith(stem) and not e.name.startswith(".")
                and (e.is_dir() or e.suffix in (".yaml", ".yml"))]

    found = matches(incomplete)
    for _ in range(8):
        if len(found) != 1 or not found[0].endswith("/") or not matches(found[0]):
            break
        found = matches(found[0])
    return found


ConfigArg = Annotated[Path, typer.Argument(
    help="YAML config file.", metavar="CONFIG", show_default=False, autocompletion=complete_yaml)]
OverridesArg = Annotated[Optional[list[str]], typer.Argument(
    help="Dotted KEY=VALUE overrides, e.g. model.depth=64 model.skip.kind=none.", metavar="KEY=VALUE",
    show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder that receives the run folder.")]
DeviceOpt = Annotated[Optional[str], typer.Option(
    "--device", metavar="DEVICE", help="auto | cpu | cuda | cuda:N (overrides device).")]


def load_config(path: Path, overrides: list[str] | None, device: str | None = None, name: str | None = None,
                threads: int | None = None) -> RunConfig:
    """CONFIG with its KEY=VALUE overrides, then the options that stand for overrides."""
    from skipexp.core import config

    return config.load(path, list(overrides or []) + config.option_overrides(name=name, device=device, threads=threads))


def check_device(cfg: RunConfig, file: Path) -> None:
    """Refuse a device this machine lacks (``--device cuda`` without CUDA) before any folder is made."""
    if not cfg.device.startswith("cuda"):  # cpu and auto always exist; asking torch costs its import (~1 s)
        return
    from skipexp.training.setup import resolve_device  # torch: only for a CUDA device

    try:
        resolve_device(cfg.device)
    except SkipexpError as e:
        raise e.with_file(str(file)) from None


@contextmanager
def no_folder_left_on_error(folder: Path) -> Iterator[None]:
    """Remove ``folder`` (and the parents made with it) again if a bad input stops the command and they are
    still empty: an error leaves the disk as it found it."""
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        yield
    except SkipexpError:
        for p in made:  # innermost first; rmdir refuses a folder that got anything in it
            try:
                p.rmdir()
            except OSError:
                break
        raise


def at_least_one(**options: int) -> None:
    for name, value in options.items():
        if value < 1:
            raise SkipexpError(f"must be >= 1, got {value}", key=f"--{name}")


def int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SkipexpError(f"expected comma-separated integers like 1,2,4, got {text!r}", key=option) from None
    if not values or min(values) < 1:
        raise SkipexpError(f"expected positive integers like 1,2,4, got {text!r}", key=option)
    return values


def split_configs(args: list[str]) -> tuple[list[Path], list[str]]:
    """CONFIG files and KEY=VALUE overrides from one argument list (a file that exists is a config)."""
    configs, overrides = [], []
    for a in args:
        (overrides if "=" in a and not Path(a).exists() else configs).append(a)
    return [Path(c) for c in configs], overrides

