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
    resume_existing: Annotated[bool, typer.Option(
        "--resume", help="With --run-dir, if the folder exists: leave a completed or diverged run as it is, "
        "continue an interrupted one, move anything else aside and train afresh (safe to re-run).")] = False,
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
        if resume_existing and target is not None and target.exists():
            result = settle_and_run(one, target, stop)
        else:
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


# --- compare, sweep, report: many runs side by side -------------------------------------------

def settle_and_run(cfg: "RunConfig", run_dir: Path, stop: StopFlag):
    """``train --run-dir D --resume`` when D exists: what :func:`skipexp.sweep.settle` decides."""
    import yaml

    from skipexp import config as config_mod
    from skipexp import sweep as sweep_mod
    from skipexp import train as train_mod
    from skipexp.summary import write_summary

    state, moved = sweep_mod.settle(run_dir, yaml.safe_load(config_mod.dump(cfg)))
    if state == "done":
        # rewritten, not trusted: a run stopped while it was writing its summary or plots lacks them
        summary = write_summary(run_dir)
        if not (run_dir / "plots" / "grad_heatmap.png").is_file():
            from skipexp import plots

            plots.plot_run(run_dir)
        err_console.print(f"{run_dir}: already {summary['status']}; nothing to do")
        return train_mod.RunResult(run_dir, summary["status"], summary)
    if state == "resume":
        err_console.print(f"{run_dir}: resuming the interrupted run")
        reporter = make_reporter(run_dir.name, stop)
        try:
            return train_mod.resume(run_dir, reporter=reporter, should_stop=stop, progress=download_progress())
        finally:
            reporter.close()
    if moved is not None:
        err_console.print(f"{run_dir}: nothing to resume there; moved it to {moved.name} and training afresh")
    return run_one(cfg, run_dir.parent, run_dir, stop)


def split_configs(args: list[str]) -> tuple[list[Path], list[str]]:
    """CONFIG files and KEY=VALUE overrides from one argument list (a file that exists is a config)."""
    configs, overrides = [], []
    for a in args:
        (overrides if "=" in a and not Path(a).exists() else configs).append(a)
    return [Path(c) for c in configs], overrides


def print_compare(summary: dict) -> None:
    from rich.table import Table

    from skipexp import compare as compare_mod

    names, rows, caption = compare_mod.table(summary)
    t = Table(title="comparison", caption=caption, title_justify="left", caption_justify="left")
    t.add_column("")
    for n in names:
        t.add_column(n, justify="right")
    for label, cells in rows:
        t.add_row(label, *cells, style="yellow" if label.startswith("⚠") else None)
    out_console.print(t)


@app.command()
def compare(
    args: Annotated[list[str], typer.Argument(
        help="Two or more config files, then KEY=VALUE overrides applied to every one.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder that receives compare-<time>/.")] = Path("runs"),
) -> None:
    """Train configs on the same data, seed and batch order; print them side by side.

    Writes OUT/compare-<time>/ with the member runs in runs/, summary.json, summary.md and plots/.
    Example: [bold]skipexp compare configs/plain.yaml configs/skip.yaml train.epochs=4[/]
    """
    from skipexp import compare as compare_mod

    configs, overrides = split_configs(args)
    if len(configs) < 2:
        raise SkipexpError("needs at least two config files to compare", key="compare")
    members = compare_mod.plan(configs, overrides)
    cdir = compare_mod.create_dir(out)
    compare_mod.write_plan(cdir, members, overrides)
    stop = StopFlag().install()
    results = compare_mod.run(
        members, cdir, should_stop=stop, progress=download_progress(),
        reporter_for=lambda m, i: make_reporter(f"{m.name} ({i + 1}/{len(members)})", stop))
    summary = compare_mod.finish(cdir)
    print_compare(summary)
    out_console.print(str(cdir))
    if results and results[-1].status == "interrupted":
        err_console.print(f"interrupted: resume with [bold]skipexp resume {results[-1].run_dir}[/]; "
                          f"then [bold]skipexp report {cdir}[/]")
        raise typer.Exit(EXIT_INTERRUPTED)


def print_sweep(rows: list[dict], grid: dict, title: str) -> None:
    from rich.table import Table

    from skipexp.report import sweep_table

    head, body = sweep_table(rows, grid)
    t = Table(title=title, title_justify="left")
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i < len(grid) or h == "status" else "right")
    for cells in body:
        style = {"diverged": "red", "completed": None}.get(cells[len(grid)].split(" ")[0], "yellow")
        t.add_row(*cells, style=style)
    out_console.print(t)


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML: name, base, grid.", show_default=False)],
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1,
                                      help="Points run at once; each gets cores // jobs torch threads.")] = 1,
    list_only: Annotated[bool, typer.Option("--list", help="Print one command per point; run nothing.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="With --list: shell (one line per point) or make.")] = "shell",
    out: Annotated[Path, typer.Option("--out", help="Folder that receives sweep-<name>/.")] = Path("runs"),
    backend: Annotated[str, typer.Option("--backend", help="Where points run: local (subprocesses here).")] = "local",
) -> None:
    """Run every point of a grid over a base config into OUT/sweep-<name>/, then summarize and plot.

    Points already completed (or diverged) are skipped and interrupted ones resumed, so running it again
    finishes an interrupted sweep. Example: [bold]skipexp sweep configs/sweeps/depth.yaml --jobs 2[/]
    """
    from skipexp import sweep as sweep_mod

    sw = sweep_mod.load(sweep_file)
    if list_only:
        if fmt not in ("shell", "make"):
            raise SkipexpError(f"must be shell or make, got {fmt!r}", key="--format")
        pts = sweep_mod.points(sw, out, jobs)
        sweep_mod.write_sweep_file(sw, out)  # so that `skipexp report` can read the folder at any time
        # plain text, not the console: make needs its tabs, and a pipe must get exact lines
        if fmt == "make":
            typer.echo(sweep_mod.make_file(sw, pts, out, jobs))
        else:
            typer.echo("\n".join(sweep_mod.shell_line(p) for p in pts))
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    n_points = len(sweep_mod.points(sw, out, jobs))
    progress = Progress(TextColumn("[bold]sweep {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[now]}"), TimeElapsedColumn(), console=err_console)

    class Listener(sweep_mod.Listener):
        def __init__(self) -> None:
            self.running: list[str] = []

        def on_start(self, point):
            self.running.append(point.name)
            progress.update(task, now=f"running {', '.join(self.running)}")

        def on_done(self, result):
            self.running.remove(result.point.name)
            colour = {"completed": "green", "diverged": "red"}.get(result.status, "yellow")
            progress.console.print(f"[{colour}]{result.status:>11}[/] {result.point.name} "
                                   f"({result.seconds:.1f} s)", highlight=False)
            progress.update(task, advance=1, now=f"running {', '.join(self.running)}" if self.running else "")

    stop = StopFlag().install()
    task = progress.add_task(sw.name, total=n_points, now="")
    with progress:
        outcome = sweep_mod.run(sw, out, jobs, backend, Listener(), should_stop=stop)
        if outcome.skipped:
            progress.console.print(f"{len(outcome.skipped)} point(s) already done, skipped")
        progress.update(task, advance=len(outcome.skipped))
    _, rows, plots_ = sweep_mod.finish(outcome.root)
    print_sweep(rows, sw.grid, f"sweep {sw.name}: {len(rows)} points")
    out_console.print(str(outcome.root))
    bad = [r for r in outcome.ran if r.status not in ("completed", "diverged")]
    for p in outcome.busy:
        err_console.print(f"{p.name}: running in another process; report the sweep when it ends")
    if stop.requested or any(r.status == "interrupted" for r in bad):
        err_console.print("interrupted: run the same command again to resume the sweep")
        raise typer.Exit(EXIT_INTERRUPTED)
    for r in bad:
        last = r.output.strip().splitlines()[-1] if r.output.strip() else ""
        err_console.print(f"{r.point.name}: {r.status} (exit {r.returncode}) {last}", markup=False)
    if bad:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def report(
    dirs: Annotated[list[Path], typer.Argument(help="Run, comparison or sweep folders.", show_default=False)],
) -> None:
    """Rewrite the summaries and plots of finished or interrupted folders and print their tables.

    Example: [bold]skipexp report runs/sweep-depth[/]
    """
    from skipexp import report as report_mod

    kinds = [report_mod.kind_of(d) for d in dirs]  # check every folder before rewriting any
    for d, _ in zip(dirs, kinds):
        r = report_mod.report(d)
        if r.kind == "run":
            print_summary(r.summary, d)
        elif r.kind == "compare":
            print_compare(r.summary)
        else:
            print_sweep(r.summary, r.extra["sweep"].grid, f"sweep {r.extra['sweep'].name}: {len(r.summary)} points")
        out_console.print(str(d))


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
