"""Commands on one run: train, resume, validate."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from skipexp.cli.app import app
from skipexp.cli.args import (
    ConfigArg,
    DeviceOpt,
    OutOpt,
    OverridesArg,
    check_device,
    load_config,
    no_folder_left_on_error,
)
from skipexp.cli.console import StopFlag, download_progress, err_console, make_reporter, out_console, run_name
from skipexp.cli.render import exit_if_interrupted, print_seeds, print_summary, print_theory, print_theory_answer
from skipexp.core.errors import SkipexpError


@app.command(short_help="Train a config into a run folder (one per seed).")
def train(
    config: ConfigArg,
    overrides: OverridesArg = None,
    out: OutOpt = Path("runs"),
    device: DeviceOpt = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", metavar="NAME", help="Run name (default: the config's name).")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(
        "--run-dir", metavar="DIR",
        help="Write into exactly this new folder instead of OUT/<time>-<name> (sweeps use it).")] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, metavar="N",
        help="torch intra-op threads (overrides train.threads; default: chosen from the model size).")] = None,
    resume_existing: Annotated[bool, typer.Option(
        "--resume", help="With --run-dir, if the folder exists: leave a completed or diverged run as it is, "
        "continue an interrupted one, move anything else aside and train afresh (safe to re-run).")] = False,
) -> None:
    """Train one model and write one run folder (one per seed where the config lists several seeds).

    Example: skipexp train configs/skip.yaml model.depth=64 --device cpu
    """
    cfg = load_config(config, overrides, device, name, threads)
    check_device(cfg, config)
    from skipexp.rundir import runio

    folder = out if run_dir is None else run_dir.parent
    with no_folder_left_on_error(folder):
        runio.check_writable(folder)  # before torch loads (but for a CUDA check): fail in a second
        from skipexp.training import fit
        from skipexp.views.run_views import RunViews

        stop = StopFlag().install()
        label = cfg.name if len(cfg.seeds) == 1 else f"{cfg.name} ×{len(cfg.seeds)} seeds"
        reporter = make_reporter(label, stop)
        hooks = {"reporter": reporter, "should_stop": stop, "progress": download_progress(), "views": RunViews()}
        try:
            if resume_existing and run_dir is not None and len(cfg.seeds) == 1:
                results = [fit.train_or_resume(cfg, run_dir, notify=err_console.print, **hooks)]
            else:
                results = fit.train_config(cfg, out, run_dir, **hooks)
        except SkipexpError as e:  # a config value found wrong only at run time (data sizes, files)
            raise e.with_file(str(config)) from None
        finally:
            reporter.close()
    for result in results:
        print_summary(result.summary, result.run_dir)
    if len(results) > 1:
        print_seeds(cfg.name, [r.summary for r in results])
    for result in results:  # the folders last, one line each, as is: `tail -n 1` finds a run
        out_console.print(str(result.run_dir), soft_wrap=True, markup=False, highlight=False)
    exit_if_interrupted(*results)


@app.command(short_help="Continue interrupted or crashed runs from their checkpoints.")
def resume(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run folders, each with checkpoints/last.pt; several are resumed one after another.",
        metavar="RUN_DIR...", show_default=False)],
) -> None:
    """Continue interrupted or crashed runs from their last checkpoints, appending to their files.

    Several folders (a config's seeds) are resumed one after another, each alone. Every folder's status and
    config are checked before the first one trains. A Ctrl-C stops the one training and names, in one command,
    it and those not yet resumed; an error in one stops the command and names those not resumed.

    Example: skipexp resume runs/20260101-120000-skip
    """
    from skipexp.rundir import runio

    unique: dict[Path, Path] = {}   # a folder named twice, however spelled, is resumed once
    for d in run_dirs:
        unique.setdefault(d.resolve(), d)
    run_dirs = list(unique.values())
    for run_dir in run_dirs:
        runio.check_resumable(run_dir)  # refusals come before torch loads, and before any folder trains
    from skipexp.rundir import files
    from skipexp.training import fit
    from skipexp.views.run_views import RunViews

    stop = StopFlag().install()
    results = []
    for i, run_dir in enumerate(run_dirs):
        stop.run_dirs, stop.pending = [], run_dirs[i:]   # a second Ctrl-C names this folder and the rest
        reporter = make_reporter(run_name(run_dir), stop)
        try:
            result = fit.resume(run_dir, reporter=reporter, should_stop=stop, progress=download_progress(),
                                views=RunViews())
        except SkipexpError as e:
            rest = f" (not resumed: {' '.join(map(str, run_dirs[i + 1:]))})" if run_dirs[i + 1:] else ""
            raise SkipexpError(e.message + rest, file=e.file or str(run_dir / files.CONFIG), key=e.key) from None
        finally:
            reporter.close()
        print_summary(result.summary, result.run_dir)
        out_console.print(str(result.run_dir), soft_wrap=True, markup=False, highlight=False)  # one line, as is
        results.append(result)
        if stop():
            break
    exit_if_interrupted(*results, pending=run_dirs[len(results):])


@app.command(short_help="Check a config and show its layers; trains nothing.")
def validate(
    config: ConfigArg,
    overrides: OverridesArg = None,
    theory: Annotated[bool, typer.Option(
        "--theory", help="Also predict the activation-gradient ratio h0/h_last at init and measure it.")] = False,
) -> None:
    """Check a config; print it resolved, with one row per layer. Trains nothing.

    Example: skipexp validate configs/plain.yaml model.depth=8 --theory
    """
    cfg = load_config(config, overrides)  # before importing torch: a bad config fails in a blink
    report = None
    if theory:  # its answer leads; the config and the layer table follow
        from skipexp.science import theory as theory_mod

        report = theory_mod.report(cfg, progress=download_progress())
        print_theory_answer(report)
        out_console.print()

    from rich.syntax import Syntax
    from rich.table import Table

    from skipexp.core import config as config_mod
    from skipexp.core import nets
    from skipexp.core.data import input_shape
    from skipexp.training import memory
    from skipexp.training.setup import resolve_device

    try:
        device = resolve_device(cfg.device)
    except SkipexpError:   # a CUDA config read where there is none: what it needs, against this machine
        import torch

        device = torch.device("cpu")
    try:   # before the model is built: one too big for this machine is refused, not allocated
        need = memory.check_fits([cfg.replace(seed=s) for s in cfg.seeds], device)
    except SkipexpError as e:
        raise e.with_file(str(config)) from None
    out_console.print(Syntax(config_mod.dump(cfg), "yaml", background_color="default"))
    model = nets.build(cfg, *input_shape(cfg.data))
    t = Table(title=f"{cfg.name}: {need}")
    for col, just in (("layer", "left"), ("shape", "left"), ("params", "right"), ("skip", "left")):
        t.add_column(col, justify=just)
    for row in model.describe():
        t.add_row(row["name"], row["shape"], f"{row['params']:,}", row["skip"])
    out_console.print(t)
    if report is not None:
        print_theory(report)

