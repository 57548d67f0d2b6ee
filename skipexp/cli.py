"""The ``skipexp`` command. It owns the console, the progress bar, signals and exit codes.

Heavy imports (torch, matplotlib) happen inside the commands, so ``skipexp --help`` stays instant.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from skipexp.errors import SkipexpError

if TYPE_CHECKING:
    from skipexp.config import RunConfig

app = typer.Typer(
    name="skipexp",
    help="Show, measure and explain why skip connections let deep networks train where plain ones fail.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
out_console = Console()
err_console = Console(stderr=True)

EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130

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


ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False, autocompletion=complete_yaml)]
OverridesArg = Annotated[Optional[list[str]], typer.Argument(
    help="Dotted KEY=VALUE overrides, e.g. model.depth=64 model.skip.kind=none.", show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", help="Folder that receives the run folder.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda | cuda:N (overrides device).")]


# --- signals: the first Ctrl-C stops after the current step, the second at once -------------------

class StopFlag:
    def __init__(self) -> None:
        self.requested = False
        self.run_dir: Path | None = None

    def __call__(self) -> bool:
        return self.requested

    def install(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if not self.requested:
            self.requested = True
            err_console.print("[yellow]stopping after this step (again to quit at once)...[/]")
            return
        # every file in a run folder is written atomically or row by row, so leaving now corrupts nothing
        if self.run_dir is not None:
            try:
                from skipexp import runio

                meta = runio.read_json(self.run_dir / "meta.json")
                meta["status"] = "interrupted"
                runio.write_json(self.run_dir / "meta.json", meta)
            except Exception:
                pass
        os._exit(EXIT_INTERRUPTED)


# --- progress ------------------------------------------------------------------------------------

def make_reporter(label: str, stop: StopFlag | None = None):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from skipexp.train import Reporter

    class RichReporter(Reporter):
        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} steps/s"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=err_console, transient=False,
            )
            self.task = None
            self.last = None

        def on_start(self, run_dir, total_steps, start_step):
            if stop is not None:
                stop.run_dir = run_dir
            self.progress.start()
            self.task = self.progress.add_task(label, total=total_steps, completed=start_step, loss="-", rate="-")
            self.last = (start_step, None)

        def on_log(self, row):
            step, elapsed = int(row["step"]), row["elapsed_s"]
            rate = "-"
            if self.last[1] is not None and elapsed > self.last[1]:
                rate = f"{(step - self.last[0]) / (elapsed - self.last[1]):.0f}"
            self.last = (step, elapsed)
            self.progress.update(self.task, completed=step, loss=f"{row['train_loss']:.4f}", rate=rate)

        def on_eval(self, row):
            self.progress.update(self.task, completed=int(row["step"]))

        def on_end(self, status, summary):
            self.progress.stop()

        def close(self):
            self.progress.stop()

    return RichReporter()


def download_progress():
    """A progress callback for dataset downloads, drawn on stderr."""
    state: dict = {}

    def progress(done: int, total: int | None, name: str) -> None:
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        if "p" not in state:
            state["p"] = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                                  console=err_console, transient=True)
            state["p"].start()
        p = state["p"]
        if name not in state:
            state[name] = p.add_task(f"download {name}", total=total)
        p.update(state[name], completed=done)
        if total is not None and done >= total:
            p.update(state[name], visible=False)

    return progress


# --- shared helpers ------------------------------------------------------------------------------

def load_config(path: Path, overrides: list[str] | None, device: str | None = None,
                name: str | None = None) -> "RunConfig":
    from skipexp import config

    extra = list(overrides or [])
    if device is not None:
        extra.append(f"device={device}")
    if name is not None:
        extra.append(f"name={name}")
    return config.load(path, extra)


def print_summary(summary: dict, run_dir: Path) -> None:
    from rich.table import Table

    t = Table(title=f"{summary.get('name')}: {summary.get('status')}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")

    def fmt(v, pct=False):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.1%}" if pct else (f"{v:.4g}")
        return str(v)

    rows = [("steps", summary.get("steps")), ("steps/s", summary.get("steps_per_s")),
            ("final train loss", summary.get("final_train_loss")),
            ("final train acc", fmt(summary.get("final_train_acc"), True)),
            ("final test loss", summary.get("final_test_loss")),
            ("final test acc", fmt(summary.get("final_test_acc"), True)),
            ("best test acc", fmt(summary.get("best_test_acc"), True)),
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


def run_one(cfg: "RunConfig", out: Path, run_dir: Path | None, stop: StopFlag, label: str | None = None):
    """Create the folder, train, and turn the outcome into the result (exit codes stay with the caller)."""
    from skipexp import train as train_mod

    run_dir = train_mod.create_run(cfg, out, run_dir)
    reporter = make_reporter(label or cfg.name, stop)
    try:
        return train_mod.train(cfg, run_dir, reporter=reporter, should_stop=stop, progress=download_progress())
    finally:
        reporter.close()


def finish(result) -> None:
    """Print the outcome of one run and exit with its code."""
    if result.status == "interrupted":
        err_console.print(f"interrupted: resume with [bold]skipexp resume {result.run_dir}[/]")
        raise typer.Exit(EXIT_INTERRUPTED)


# --- commands ------------------------------------------------------------------------------------

@app.command()
def train(
    config: ConfigArg,
    overrides: OverridesArg = None,
    out: OutOpt = Path("runs"),
    device: DeviceOpt = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Run name (default: the config's name).")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(
        "--run-dir", help="Write into exactly this new folder instead of OUT/<time>-<name> (sweeps use it).")] = None,
) -> None:
    """Train one model and write one run folder.

    Example: [bold]skipexp train configs/skip.yaml model.depth=64 --device cpu[/]
    """
    cfg = load_config(config, overrides, device, name)
    stop = StopFlag().install()
    results = []
    for seed in cfg.seeds:
        one = cfg.replace(seed=seed, name=f"{cfg.name}-seed{seed}" if len(cfg.seeds) > 1 else cfg.name)
        target = run_dir if len(cfg.seeds) == 1 or run_dir is None else run_dir.parent / f"{run_dir.name}-seed{seed}"
        result = run_one(one, out, target, stop)
        results.append(result)
        print_summary(result.summary, result.run_dir)
        out_console.print(str(result.run_dir))
        finish(result)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="A run folder with checkpoints/last.pt.", show_default=False)],
) -> None:
    """Continue an interrupted or crashed run from its last checkpoint, appending to its files.

    Example: [bold]skipexp resume runs/20260101-120000-skip[/]
    """
    from skipexp import train as train_mod

    stop = StopFlag().install()
    reporter = make_reporter(run_dir.name, stop)
    try:
        result = train_mod.resume(run_dir, reporter=reporter, should_stop=stop, progress=download_progress())
    finally:
        reporter.close()
    print_summary(result.summary, result.run_dir)
    out_console.print(str(result.run_dir))
    finish(result)


@app.command()
def validate(
    config: ConfigArg,
    overrides: OverridesArg = None,
) -> None:
    """Check a config; print it resolved, with one row per layer. Trains nothing.

    Example: [bold]skipexp validate configs/plain.yaml model.depth=8[/]
    """
    from rich.syntax import Syntax
    from rich.table import Table

    from skipexp import config as config_mod
    from skipexp.data import input_shape
    from skipexp.models import SkipNet

    cfg = load_config(config, overrides)
    out_console.print(Syntax(config_mod.dump(cfg), "yaml", background_color="default"))
    model = SkipNet(cfg.model, *input_shape(cfg.data))
    t = Table(title=f"{cfg.name}: {sum(p.numel() for p in model.parameters()):,} parameters")
    for col, just in (("layer", "left"), ("shape", "left"), ("params", "right"), ("skip", "left")):
        t.add_column(col, justify=just)
    for row in model.describe():
        t.add_row(row["name"], row["shape"], f"{row['params']:,}", row["skip"])
    out_console.print(t)


@app.command("tensorboard")
def tensorboard_cmd(
    dirs: Annotated[list[Path], typer.Argument(
        help="Run, comparison or sweep folders, or folders holding them.", show_default=False)],
    histograms: Annotated[bool, typer.Option(help="Also write per-step histograms over layers.")] = True,
) -> None:
    """Export runs to TensorBoard: event files in each run folder's tensorboard/, from its CSVs.

    Then: [bold]tensorboard --logdir runs/[/]
    """
    from skipexp.tensorboard import export_tree

    written = [p for d in dirs for p in export_tree(d, histograms)]
    for p in written:
        out_console.print(str(p), markup=False, highlight=False)
    err_console.print(f"{len(written)} run(s) exported; view with: tensorboard --logdir "
                      f"{' '.join(str(d) for d in dirs)}", markup=False, highlight=False)


@app.command("list")
def list_cmd(
    what: Annotated[Optional[str], typer.Argument(
        help="Only this registry, e.g. skip (kinds), activation, dataset.", show_default=False)] = None,
) -> None:
    """List the registered kinds (skip kinds, activations, norms, inits, optimizers, schedules, datasets)."""
    from rich.table import Table

    from skipexp import registry

    regs = registry.ALL
    if what is not None:
        regs = tuple(r for r in registry.ALL if what.rstrip("s") in (r.what, r.what.split()[0]))
        if not regs:
            raise SkipexpError(f"unknown registry {what!r}; choose from "
                               f"{', '.join(r.what.split()[0] for r in registry.ALL)}", key="list")
    for reg in regs:
        t = Table(title=f"{reg.what}s", title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 1))
        t.add_column(style="bold cyan", no_wrap=True)
        t.add_column()
        for name, doc in reg.docs.items():
            t.add_row(name, doc)
        out_console.print(t)
        out_console.print()


# --- entry point ---------------------------------------------------------------------------------

def error(message: str) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    import click

    try:
        code = app(args=argv, standalone_mode=False)
    except SkipexpError as e:
        error(str(e))
        code = EXIT_BAD_INPUT
    except click.exceptions.UsageError as e:
        where = f"{e.ctx.command_path}: " if e.ctx is not None else ""
        error(f"{where}{e.format_message()}".replace("\n", " "))
        code = EXIT_BAD_INPUT
    except click.exceptions.Abort:
        code = EXIT_INTERRUPTED
    except click.exceptions.Exit as e:
        code = e.exit_code
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Exception as e:  # a bug or an environment failure: one line here, the traceback in train.log
        error(f"{e.__class__.__name__}: {e}".splitlines()[0] + " (traceback in the run folder's train.log)")
        if os.environ.get("SKIPEXP_DEBUG"):
            raise
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else 0)
