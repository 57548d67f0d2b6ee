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

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. With spinning (the default),
# a 2-thread run on 2 cores shared with other busy processes ran 18x slower than with 1 thread (2.4 vs
# 43 steps/s, configs/skip.yaml); sleeping threads gave 46 steps/s. Set OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from skipexp.errors import SkipexpError

if TYPE_CHECKING:
    from skipexp.config import RunConfig

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


class LazyConsole:
    """A rich Console made on first use, since importing rich.console costs ~0.1 s that --help need not pay."""

    def __init__(self, **kwargs: object) -> None:
        self._kwargs = kwargs
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.console, name)


out_console = LazyConsole()
err_console = LazyConsole(stderr=True)

EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
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
        # every file in a run folder is written atomically or row by row, so leaving now corrupts nothing;
        # last.pt is the one from the last epoch end, and resume skips the rows already on disk
        if self.run_dir is not None:
            try:
                from skipexp import runio

                meta = runio.read_json(self.run_dir / "meta.json")
                if meta.get("status") in ("running", "interrupted"):  # a finished run keeps its status
                    meta["status"] = "interrupted"
                    runio.write_json(self.run_dir / "meta.json", meta)
                    sys.stderr.write(f"interrupted; continue with: skipexp resume {self.run_dir}\n")
                    sys.stderr.flush()
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
                console=err_console.console, transient=False,
            )
            self.task = None
            self.last = None
            self.started = False  # a bar that never started must not print its blank line on close

        def on_start(self, run_dir, total_steps, start_step):
            if stop is not None:
                stop.run_dir = run_dir
            self.progress.start()
            self.started = True
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
            self.close()

        def close(self):
            if self.started:
                self.progress.stop()
                self.started = False

    return RichReporter()


def download_progress():
    """A progress callback for dataset downloads, drawn on stderr."""
    state: dict = {}

    def progress(done: int, total: int | None, name: str) -> None:
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        if "p" not in state:
            state["p"] = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                                  console=err_console.console, transient=True)
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
        # one line however narrow the terminal, so it can be copied and run
        if (result.run_dir / "checkpoints" / "last.pt").is_file():
            hint = f"interrupted; continue with: skipexp resume {result.run_dir}"
        else:
            hint = f"interrupted; {result.run_dir} has no checkpoint (log.checkpoint: none), so it cannot be resumed"
        err_console.print(hint, markup=False, highlight=False, soft_wrap=True)
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
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, help="torch intra-op threads (overrides train.threads; default: all cores).")] = None,
) -> None:
    """Train one model and write one run folder (one per seed where the config lists several seeds).

    Example: skipexp train configs/skip.yaml model.depth=64 --device cpu
    """
    extra = list(overrides or []) + ([f"train.threads={threads}"] if threads is not None else [])
    cfg = load_config(config, extra, device, name)
    from skipexp import runio

    runio.check_writable(out if run_dir is None else run_dir.parent)  # before torch loads: fail in a second
    stop = StopFlag().install()
    try:
        results = [run_one(cfg, out, run_dir, stop)] if len(cfg.seeds) == 1 else run_seeds(cfg, out, run_dir, stop)
    except SkipexpError as e:  # a config value found wrong only at run time (device, data sizes)
        raise e.with_file(str(config)) from None
    for result in results:
        print_summary(result.summary, result.run_dir)
        out_console.print(str(result.run_dir), soft_wrap=True, markup=False, highlight=False)  # one line, as is
    for result in results:
        finish(result)


def run_seeds(cfg: "RunConfig", out: Path, run_dir: Path | None, stop: StopFlag, label: str | None = None):
    """One run folder per seed of ``cfg``, the seeds trained together where the model allows."""
    from skipexp import train as train_mod
    from skipexp import vectorized

    cfgs = [cfg.replace(seed=seed, name=f"{cfg.name}-seed{seed}") for seed in cfg.seeds]
    dirs = [train_mod.create_run(one, out, None if run_dir is None else run_dir.parent / f"{run_dir.name}-seed{s}")
            for one, s in zip(cfgs, cfg.seeds)]
    reporter = make_reporter(label or f"{cfg.name} ×{len(cfgs)} seeds", stop)
    try:
        return vectorized.train_seeds(cfgs, dirs, reporter=reporter, should_stop=stop, progress=download_progress())
    finally:
        reporter.close()


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="A run folder with checkpoints/last.pt.", show_default=False)],
) -> None:
    """Continue an interrupted or crashed run from its last checkpoint, appending to its files.

    Example: skipexp resume runs/20260101-120000-skip
    """
    from skipexp import runio

    runio.check_resumable(run_dir)  # refusals come before torch loads
    from skipexp import train as train_mod

    stop = StopFlag().install()
    reporter = make_reporter(run_dir.name, stop)
    try:
        result = train_mod.resume(run_dir, reporter=reporter, should_stop=stop, progress=download_progress())
    except SkipexpError as e:
        raise e.with_file(str(run_dir / "config.yaml")) from None
    finally:
        reporter.close()
    print_summary(result.summary, result.run_dir)
    out_console.print(str(result.run_dir), soft_wrap=True, markup=False, highlight=False)  # one line, as is
    finish(result)


@app.command()
def validate(
    config: ConfigArg,
    overrides: OverridesArg = None,
) -> None:
    """Check a config; print it resolved, with one row per layer. Trains nothing.

    Example: skipexp validate configs/plain.yaml model.depth=8
    """
    cfg = load_config(config, overrides)  # before importing torch: a bad config fails in a blink

    from rich.syntax import Syntax
    from rich.table import Table

    from skipexp import config as config_mod
    from skipexp.data import input_shape
    from skipexp.models import SkipNet

    out_console.print(Syntax(config_mod.dump(cfg), "yaml", background_color="default"))
    model = SkipNet(cfg.model, *input_shape(cfg.data))
    t = Table(title=f"{cfg.name}: {sum(p.numel() for p in model.parameters()):,} parameters")
    for col, just in (("layer", "left"), ("shape", "left"), ("params", "right"), ("skip", "left")):
        t.add_column(col, justify=just)
    for row in model.describe():
        t.add_row(row["name"], row["shape"], f"{row['params']:,}", row["skip"])
    out_console.print(t)


# --- entry point ---------------------------------------------------------------------------------

def error(message: str) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    try:  # recent typer carries its own copy of click, whose exceptions are not click's classes
        from typer._click import exceptions as click_exceptions
    except ImportError:
        from click import exceptions as click_exceptions
    try:
        code = app(args=argv, standalone_mode=False)
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
        error(f"{e.__class__.__name__}: {e}".splitlines()[0] + " (traceback in the run folder's train.log)")
        if os.environ.get("SKIPEXP_DEBUG"):
            raise
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else 0)
