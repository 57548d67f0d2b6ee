"""Commands over many runs: compare, sweep, report, tensorboard."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from skipexp.cli.app import app
from skipexp.cli.args import check_device, complete_yaml, no_folder_left_on_error, split_configs
from skipexp.cli.console import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    StopFlag,
    download_progress,
    err_console,
    make_reporter,
    out_console,
    reporter_for,
)
from skipexp.cli.render import print_compare, print_summary, print_sweep
from skipexp.core.errors import SkipexpError


@app.command(short_help="Train configs side by side on the same data and batches.")
def compare(
    args: Annotated[list[str], typer.Argument(
        help="Two or more config files, then KEY=VALUE overrides applied to every one.",
        metavar="CONFIG... [KEY=VALUE]", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", metavar="DIR", help="Folder that receives compare-<time>/.")] = Path("runs"),
    baseline: Annotated[Optional[str], typer.Option(
        "--baseline", metavar="NAME", help="The member the others' differences are taken against "
        "(default: the first).")] = None,
) -> None:
    """Train configs on the same data, seed and batch order; print them side by side.

    Writes OUT/compare-<time>/ with the member runs in runs/, summary.json, summary.md and plots/.
    With seed=[0,1,2] each member trains every seed (runs/<member>-seed<N>/) and the table shows means.
    Example: skipexp compare configs/plain.yaml configs/skip.yaml train.epochs=4
    """
    from skipexp.experiments import compare as compare_mod

    configs, overrides = split_configs(args)
    if len(configs) < 2:
        raise SkipexpError("needs at least two config files to compare", key="compare")
    members = compare_mod.plan(configs, overrides)
    compare_mod.check_baseline(members, baseline)
    for m in members:
        check_device(m.cfg, Path(m.source))
    with no_folder_left_on_error(out):
        cdir = compare_mod.create_dir(out)
        compare_mod.write_plan(cdir, members, overrides, baseline)
        stop = StopFlag().install()
        results = compare_mod.run(
            members, cdir, should_stop=stop, progress=download_progress(),
            group_reporter=lambda label, owners: make_reporter(label, stop, owners))
    summary = compare_mod.rebuild(cdir, html=any(m.cfg.log.html for m in members))
    print_compare(summary)
    out_console.print(str(cdir))
    stopped = [r.run_dir for r in results if r.status == "interrupted"]
    if stopped:
        resumes = "; ".join(f"skipexp resume {d}" for d in stopped)
        err_console.print(f"interrupted: resume with {resumes}; then skipexp report {cdir}",
                          markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(
        help="Sweep YAML (name, base, grid), or a run config with KEY=V1,V2,... overrides as the grid.",
        show_default=False, autocompletion=complete_yaml)],
    overrides: Annotated[Optional[list[str]], typer.Argument(
        help="KEY=VALUE for every point; KEY=V1,V2,... sweeps KEY (a new axis, or new values for a grid key).",
        show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="The sweep's name, its folder OUT/sweep-NAME/ (default: the sweep file's name; for a grid "
        "on the command line CONFIG-KEYS, e.g. skip-depth-seed).", show_default=False)] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help=(
        "Processes at once, each training a group of points together (default 1; with --backend ray: as many "
        "as the cluster has room for). With fewer groups than jobs, the biggest is split."),
        show_default=False)] = None,
    list_only: Annotated[bool, typer.Option(
        "--list", help="Print one command per group of points (with its points); run nothing.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="With --list: shell (one line per group), make, or sbatch "
                                     "(a Slurm job array script).")] = "shell",
    group: Annotated[Optional[int], typer.Option(
        "--group", min=1, help="Run only group N (as --list numbers them), here in this process.",
        show_default=False)] = None,
    part: Annotated[Optional[str], typer.Option(
        "--part", help="With --group: only part i of k of the group, as i/k (what --list prints with --jobs).",
        show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder that receives sweep-<name>/.")] = Path("runs"),
    backend: Annotated[str, typer.Option(
        "--backend", help="Where points run: local (subprocesses here), ray (Ray tasks, here or on a cluster) or "
        "slurm (a Slurm job array through submitit).")] = "local",
    address: Annotated[Optional[str], typer.Option(
        "--address", help="With --backend ray: auto (the cluster `ray start` runs here) or HOST:PORT; "
        "default: a private Ray on this machine.")] = None,
    cpus_per_point: Annotated[Optional[int], typer.Option(
        "--cpus-per-point", min=1, help="With --backend ray or slurm: CPUs reserved per task (one group's "
        "process; default 1).", show_default=False)] = None,
    partition: Annotated[Optional[str], typer.Option(
        "--partition", help="Slurm: the partition (sbatch --partition).", show_default=False)] = None,
    time_limit: Annotated[Optional[str], typer.Option(
        "--time", help="Slurm: each task's time limit, as sbatch takes it (90, 1:30:00, 2-00:00:00).",
        show_default=False)] = None,
    gpus: Annotated[Optional[int], typer.Option(
        "--gpus", min=0, help="Slurm: GPUs per task (sbatch --gpus-per-task).", show_default=False)] = None,
    mem: Annotated[Optional[str], typer.Option(
        "--mem", help="Slurm: memory per task, as sbatch takes it (8G, 16000).", show_default=False)] = None,
    sbatch: Annotated[Optional[list[str]], typer.Option(
        "--sbatch", metavar="KEY=VALUE", help="Slurm: any other sbatch option (repeatable), e.g. --sbatch "
        "account=lab.", show_default=False)] = None,
    executor: Annotated[str, typer.Option(
        "--executor", help="With --backend slurm: slurm (submit to the cluster) or local (submitit runs each "
        "task as a process here: the Slurm path without Slurm).")] = "slurm",
) -> None:
    """Run every point of a grid over a base config into OUT/sweep-<name>/, then summarize and plot.

    The grid comes from a sweep file, or from the command line: each KEY=V1,V2,... override of a run
    config is an axis (seed=[0,1] is one value, a list). Single values apply to every point, of a sweep
    file's grid too. Points that share a model shape train together, a group per process. Points already
    completed (or diverged) are skipped and interrupted ones resumed, so running it again finishes an
    interrupted sweep.

    \b
    Examples:
      skipexp sweep configs/sweeps/depth.yaml --jobs 2
      skipexp sweep configs/skip.yaml model.depth=2,4,8 seed=0,1 train.epochs=2   (runs/sweep-skip-depth-seed/)
    """
    from skipexp.experiments.sweep import backends, commands, local, results, spec
    from skipexp.experiments.sweep import overrides as sweep_overrides

    sw = sweep_overrides.resolve(sweep_file, list(overrides or []), name)
    from skipexp.rundir import runio

    runio.check_folder(out)   # a file given as --out: refused before anything is listed or run
    options: dict = {}
    slurm_flags = {"partition": partition, "time": time_limit, "gpus": gpus, "mem": mem, "sbatch": sbatch}
    slurm = _slurm_options(sw, backend, list_only and fmt == "sbatch", executor, slurm_flags, cpus_per_point)
    if backend == "ray":
        from skipexp.experiments.sweep import ray_backend

        ray_backend.require_ray()  # before any folder is made: no Ray, exit 2 with the install hint
    elif address is not None:
        raise SkipexpError("only means something with --backend ray", key="--address")
    if list_only and fmt not in ("shell", "make", "sbatch"):
        raise SkipexpError(f"must be shell, make or sbatch, got {fmt!r}", key="--format")
    if part is not None and group is None:
        raise SkipexpError("only means something with --group", key="--part")
    if group is not None and (list_only or backend != "local"):
        raise SkipexpError("runs one group here; it takes neither --list nor --backend", key="--group")
    pts = spec.points(sw, out)  # every point built and checked once, here
    if group is not None:
        _sweep_group(sw, pts, group, part)
        return
    if backend == "ray":
        options = {"address": address, "cpus_per_point": cpus_per_point or 1, "device": pts[0].cfg.device}
    elif backend == "slurm":
        options = {"options": slurm, "executor": executor, "name": sw.name}
    if list_only:
        jobs = jobs or 1
        spec.write_sweep_file(sw, out)  # the groups' commands read it; `skipexp report` can read the folder
        # plain text, not the console: make needs its tabs, and a pipe must get exact lines
        if fmt == "make":
            typer.echo(commands.make_file(sw, pts, out, jobs))
        elif fmt == "sbatch":
            from skipexp.experiments.sweep.commands import sbatch_file

            typer.echo(sbatch_file(sw, pts, out, slurm, jobs if jobs > 1 else None))
        else:
            from skipexp.experiments.sweep.commands import list_lines

            typer.echo(list_lines(sw, pts, out, jobs))
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from skipexp.experiments.sweep.results import planned

    n_points = planned(sw, pts)   # with a staged selection, the points it leaves out are not to be trained
    progress = Progress(TextColumn("[bold]sweep {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[now]}"), TimeElapsedColumn(), console=err_console.console)

    class Listener(local.Listener):
        def __init__(self) -> None:
            self.running: list[str] = []

        def now(self) -> str:
            if len(self.running) > 3:   # a group's points start together
                return f"running {len(self.running)} points"
            return f"running {', '.join(self.running)}" if self.running else ""

        def on_start(self, point):
            self.running.append(point.name)
            progress.update(task, now=self.now())

        def on_wait(self, points):
            names = ", ".join(p.name for p in points[:3]) + (f" and {len(points) - 3} more" if len(points) > 3 else "")
            progress.console.print(f"waiting for {names}: running in another process (a killed sweep's workers "
                                   "stop within a step)", markup=False, highlight=False)
            progress.update(task, now=f"waiting for {len(points)} point(s) running elsewhere")

        def on_done(self, result):
            self.running.remove(result.point.name)
            colour = {"completed": "green", "diverged": "red"}.get(result.status, "yellow")
            progress.console.print(f"[{colour}]{result.status:>11}[/] {result.point.name} "
                                   f"({result.seconds:.1f} s)", highlight=False)
            progress.update(task, advance=1, now=self.now())

    stop = StopFlag().install()
    task = progress.add_task(sw.name, total=n_points, now="")
    with progress:
        outcome = backends.run(sw, pts, out, jobs if backend in ("ray", "slurm") else (jobs or 1), backend, Listener(),
                                should_stop=stop, **options)
        if outcome.skipped:
            progress.console.print(f"{len(outcome.skipped)} point(s) already done, skipped")
        progress.update(task, advance=len(outcome.skipped))
    _, rows, plots_ = results.rebuild(outcome.root, html=any(p.cfg.log.html for p in pts))
    print_sweep(rows, sw, f"sweep {sw.name}: {len(rows)} points")
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


def _slurm_options(sw, backend: str, script: bool, executor: str, flags: dict, cpus: Optional[int]):
    """The Slurm settings: the sweep file's slurm: section with the flags on top; flags that only Slurm
    takes are refused elsewhere, and a missing submitit is found before any folder is made."""
    from skipexp.experiments.sweep import slurm_options

    given = [f"--{k}" for k, v in flags.items() if v]
    if backend != "slurm" and not script:
        if given:
            raise SkipexpError("only means something with --backend slurm or --list --format sbatch", key=given[0])
        if executor != "slurm":
            raise SkipexpError("only means something with --backend slurm", key="--executor")
        return None
    if backend == "slurm" and not script:
        from skipexp.experiments.sweep import slurm_backend

        slurm_backend.require_submitit()
        if executor not in slurm_backend.EXECUTORS:
            raise SkipexpError(f"must be slurm or local, got {executor!r}", key="--executor")
    return slurm_options.SlurmOptions(**sw.slurm).merged(**flags, cpus=cpus)


def _sweep_group(sw, pts: list, number: int, part: Optional[str]) -> None:
    """``sweep --group N [--part i/k]``: keep, resume or move aside and train one group's points here, in this
    process."""
    from skipexp.experiments.sweep import groups as groups_mod
    from skipexp.experiments.sweep.local import PARENT_PID_ENV
    from skipexp.experiments.sweep.results import runnable
    from skipexp.rundir import files

    g = groups_mod.select(pts, number, groups_mod.parse_part(part) if part else (1, 1))
    now = g.only({p.name for p in runnable(sw, pts)})   # a staged selection: the chosen points once they are known
    if len(now.points) < len(g.points):
        err_console.print(f"{g.title}: {len(g.points) - len(now.points)} point(s) not trained now: the selection "
                          f"on seeds {', '.join(map(str, sw.select.seeds))} leaves them out, or has not been made yet "
                          "(run this again once those seeds' points have finished)", markup=False, highlight=False)
    g = now
    stop = StopFlag().install().stop_with_parent(PARENT_PID_ENV)   # started by a sweep: stop when it dies
    got = groups_mod.run_group(g, reporter_for=reporter_for(stop), should_stop=stop, progress=download_progress(),
                               notify=lambda line: err_console.print(line, markup=False, highlight=False))
    for point, status in got:
        out_console.print(f"{status:>11} {point.run_dir}", markup=False, highlight=False, soft_wrap=True)
    if stop.requested or any(s == "interrupted" for _, s in got):
        err_console.print(f"interrupted: run the same command again to resume {g.title}")
        raise typer.Exit(EXIT_INTERRUPTED)
    if any(s not in files.FINISHED and s != "running" for _, s in got):
        raise typer.Exit(EXIT_FAILED)


@app.command(short_help="Rewrite summaries and plots of folders; print their tables.")
def report(
    dirs: Annotated[list[Path], typer.Argument(
        help="Run, comparison or sweep folders.", metavar="FOLDER", show_default=False)],
    tensorboard: Annotated[bool, typer.Option(
        "--tensorboard", help="Also export every run in them to TensorBoard event files (needs tensorboard).")
    ] = False,
    html: Annotated[bool, typer.Option(
        "--html/--no-html", help="Write each folder's report.html (one page to open in a browser, offline).")
    ] = True,
) -> None:
    """Rewrite the summaries, plots and report.html of finished or interrupted folders; print their tables.

    A run whose CSVs do not hold what its meta.json says (cut short, rows missing or repeated) is named in
    one line and left as it was (exit 2).

    Example: skipexp report runs/sweep-depth --tensorboard
    """
    from skipexp.experiments import report as report_mod

    if tensorboard:
        from skipexp.views.tensorboard import writer_class

        writer_class()  # no tensorboard installed: exit 2 with the hint before anything is rewritten

    kinds = [report_mod.kind_of(d) for d in dirs]  # check every folder before rewriting any
    for d, _ in zip(dirs, kinds):
        r = report_mod.report(d, html=html)
        if r.kind == "run":
            print_summary(r.summary, d)
        elif r.kind == "compare":
            print_compare(r.summary)
        else:
            print_sweep(r.summary, r.extra["sweep"], f"sweep {r.extra['sweep'].name}: {len(r.summary)} points")
        out_console.print(str(d))
        if tensorboard:
            n = len(report_mod.export_tensorboard(d))
            err_console.print(f"{n} run(s) exported to TensorBoard; view with: {_tensorboard()} --logdir {d}",
                              markup=False, highlight=False)


@app.command("tensorboard", short_help="Export runs to TensorBoard event files.")
def tensorboard_cmd(
    dirs: Annotated[list[Path], typer.Argument(
        help="Run, comparison or sweep folders, or folders holding them.", metavar="FOLDER",
        show_default=False)],
    histograms: Annotated[bool, typer.Option(help="Also write per-step histograms over layers.")] = True,
) -> None:
    """Export runs to TensorBoard: event files in each run folder, from its CSVs; a sweep also gets its
    HParams (each point's swept values and final metrics: TensorBoard's table and parallel coordinates).

    Example: skipexp tensorboard runs/sweep-depth  (then: .venv/bin/tensorboard --logdir runs/sweep-depth, as it says)
    """
    from skipexp.experiments.report import export_tensorboard

    written = [p for d in dirs for p in export_tensorboard(d, histograms)]
    for p in written:
        out_console.print(str(p), markup=False, highlight=False)
    err_console.print(f"{len(written)} run(s) exported; view with: {_tensorboard()} --logdir "
                      f"{' '.join(str(d) for d in dirs)}", markup=False, highlight=False)


def _tensorboard() -> str:
    """The tensorboard command to tell people: the one beside this Python (a venv's, which `make` does not put
    on PATH) where it is there and PATH finds another or none, else plain ``tensorboard``."""
    import os
    import shutil
    import sys

    here = Path(sys.executable).parent / "tensorboard"
    on_path = shutil.which("tensorboard")
    if not here.is_file() or (on_path is not None and Path(on_path).resolve() == here.resolve()):
        return "tensorboard"
    rel = os.path.relpath(here)
    return rel if not rel.startswith("..") else str(here)
