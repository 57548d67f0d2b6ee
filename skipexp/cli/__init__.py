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

from skipexp.core.errors import SkipexpError

if TYPE_CHECKING:
    from skipexp.core.config import RunConfig

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
        # every file in a run folder is written atomically or row by row, so leaving now corrupts nothing;
        # last.pt is the one from the last epoch end, and resume skips the rows already on disk
        if self.run_dir is not None:
            try:
                from skipexp.rundir import runio

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

    from skipexp.training.train import Reporter

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
    from skipexp.core import config

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
    from skipexp.training import train as train_mod

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
    resume_existing: Annotated[bool, typer.Option(
        "--resume", help="With --run-dir, if the folder exists: leave a completed or diverged run as it is, "
        "continue an interrupted one, move anything else aside and train afresh (safe to re-run).")] = False,
) -> None:
    """Train one model and write one run folder (one per seed where the config lists several seeds).

    Example: skipexp train configs/skip.yaml model.depth=64 --device cpu
    """
    extra = list(overrides or []) + ([f"train.threads={threads}"] if threads is not None else [])
    cfg = load_config(config, extra, device, name)
    from skipexp.rundir import runio

    runio.check_writable(out if run_dir is None else run_dir.parent)  # before torch loads: fail in a second
    stop = StopFlag().install()
    try:
        if resume_existing and run_dir is not None and run_dir.exists() and len(cfg.seeds) == 1:
            results = [settle_and_run(cfg, run_dir, stop)]
        elif len(cfg.seeds) == 1:
            results = [run_one(cfg, out, run_dir, stop)]
        else:
            results = run_seeds(cfg, out, run_dir, stop)
    except SkipexpError as e:  # a config value found wrong only at run time (device, data sizes)
        raise e.with_file(str(config)) from None
    for result in results:
        print_summary(result.summary, result.run_dir)
        out_console.print(str(result.run_dir), soft_wrap=True, markup=False, highlight=False)  # one line, as is
    for result in results:
        finish(result)


def run_seeds(cfg: "RunConfig", out: Path, run_dir: Path | None, stop: StopFlag, label: str | None = None):
    """One run folder per seed of ``cfg``, the seeds trained together where the model allows."""
    from skipexp.training import train as train_mod
    from skipexp.training import vectorized

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
    from skipexp.rundir import runio

    runio.check_resumable(run_dir)  # refusals come before torch loads
    from skipexp.training import train as train_mod

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
    theory: Annotated[bool, typer.Option(
        "--theory", help="Also predict the activation-gradient ratio h0/h_last at init and measure it.")] = False,
) -> None:
    """Check a config; print it resolved, with one row per layer. Trains nothing.

    Example: skipexp validate configs/plain.yaml model.depth=8 --theory
    """
    cfg = load_config(config, overrides)  # before importing torch: a bad config fails in a blink

    from rich.syntax import Syntax
    from rich.table import Table

    from skipexp.core import config as config_mod
    from skipexp.core.data import input_shape
    from skipexp.core.models import SkipNet

    out_console.print(Syntax(config_mod.dump(cfg), "yaml", background_color="default"))
    model = SkipNet(cfg.model, *input_shape(cfg.data))
    t = Table(title=f"{cfg.name}: {sum(p.numel() for p in model.parameters()):,} parameters")
    for col, just in (("layer", "left"), ("shape", "left"), ("params", "right"), ("skip", "left")):
        t.add_column(col, justify=just)
    for row in model.describe():
        t.add_row(row["name"], row["shape"], f"{row['params']:,}", row["skip"])
    out_console.print(t)
    if theory:
        print_theory(cfg)


# --- science: lesion study, gradient shattering, signal-propagation theory ------------------------

@app.command()
def lesion(
    run_dir: Annotated[Path, typer.Argument(
        help="A run folder, or a comparison/sweep folder whose member runs are lesioned and overlaid.",
        show_default=False)],
    drop: Annotated[int, typer.Option("--drop", help="Also remove random sets of 2..K units.")] = 1,
    samples: Annotated[int, typer.Option("--samples", help="Random sets per K.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random sets.")] = 0,
) -> None:
    """Remove units of a trained model at test time and measure test accuracy (lesion study).

    Each unit in turn loses its residual branch where it has a skip, or is removed whole where it has none;
    --drop K adds random sets of 2..K units. Writes lesion.csv and plots/lesion.png into the run folder.

    Example: skipexp lesion runs/20260101-120000-skip --drop 4
    """
    from rich.table import Table

    from skipexp.science import lesion as lesion_mod
    from skipexp.rundir import runio

    _at_least_one(drop=drop, samples=samples)
    if not run_dir.is_dir():
        raise SkipexpError("no such folder", file=str(run_dir))
    members = [run_dir] if runio.is_run_dir(run_dir) else lesion_mod.member_runs(run_dir)
    if not members:
        raise SkipexpError("neither a run folder nor a folder of run folders (runs/<member>/)", file=str(run_dir))
    curves = []
    for member in members:
        run = lesion_mod.load_run(member, progress=download_progress())
        rows = lesion_mod.lesion(run, drop=drop, samples=samples, seed=seed)
        lesion_mod.write_csv(rows, member / "lesion.csv")
        chance = 1.0 / run.splits.num_classes
        kind = run.cfg.model.skip.kind
        label = run.cfg.name if kind in run.cfg.name else f"{run.cfg.name} (skip: {kind})"
        lesion_mod.plot([(label, rows)], member / "plots" / "lesion.png", run.cfg.name, chance)
        curves.append((label, rows))
        t = Table(title=f"{run.cfg.name} ({run.cfg.model.skip.kind}): lesion, test accuracy", title_justify="left")
        for col in ("removed", "how", "test acc", "change"):
            t.add_column(col, justify="left" if col in ("removed", "how") else "right")
        intact = rows[0]["test_acc"]
        for k in sorted({r["k"] for r in rows}):
            group = [r for r in rows if r["k"] == k]
            shown = group if k <= 1 else [{"removed": f"{len(group)} random sets of {k}", "how": "mean",
                                            "test_acc": sum(r["test_acc"] for r in group) / len(group)}]
            for r in shown:
                acc = r["test_acc"]
                t.add_row(r["removed"], r["how"], "-" if acc != acc else f"{acc:.1%}",
                          "-" if acc != acc or k == 0 else f"{acc - intact:+.1%}")
        out_console.print(t)
        out_console.print(str(member / "lesion.csv"), soft_wrap=True)
    if len(members) > 1:
        out = lesion_mod.plot(curves, run_dir / "plots" / "lesion.png", run_dir.name, chance)
        out_console.print(str(out), soft_wrap=True)


def _at_least_one(**options: int) -> None:
    for name, value in options.items():
        if value < 1:
            raise SkipexpError(f"must be >= 1, got {value}", key=f"--{name}")


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SkipexpError(f"expected comma-separated integers like 1,2,4, got {text!r}", key=option) from None
    if not values or min(values) < 1:
        raise SkipexpError(f"expected positive integers like 1,2,4, got {text!r}", key=option)
    return values


@app.command()
def shatter(
    config: ConfigArg,
    overrides: OverridesArg = None,
    depths: Annotated[str, typer.Option("--depths", help="Comma-separated depths (blocks).")] = "1,2,4,8,16,32",
    kinds: Annotated[str, typer.Option("--kinds", help="Comma-separated skip kinds to compare.")] = "none,identity",
    seeds: Annotated[int, typer.Option("--seeds", help="Networks drawn per kind and depth.")] = 3,
    pairs: Annotated[int, typer.Option("--pairs", help="Lines (pairs of test inputs) per network.")] = 4,
    checkpoint: Annotated[Optional[Path], typer.Option(
        "--checkpoint", help="Also probe this trained run folder's model.")] = None,
    out: OutOpt = Path("runs"),
) -> None:
    """Correlation of gradients along a line in input space against depth, at init (shattered gradients).

    Plain nets shatter (Balduzzi et al.: ~2^-L), skip nets much less. Writes OUT/<time>-shatter-<name>/
    with shatter.csv and plots/shatter.png.

    Example: skipexp shatter configs/skip.yaml model.init=kaiming --depths 1,2,4,8,16
    """
    from skipexp.core.registry import SKIPS

    # every argument is checked before torch is imported: a typo costs no wait
    _at_least_one(seeds=seeds, pairs=pairs)
    cfg = load_config(config, overrides)
    depth_list = _int_list(depths, "--depths")
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    for k in kind_list:
        SKIPS.check(k, "--kinds")
    for d in depth_list:  # the config's own checks (span must divide depth, ...) at every depth
        load_config(config, list(overrides or []) + [f"model.depth={d}"])

    import torch
    from rich.table import Table

    from skipexp.core import config as config_mod
    from skipexp.core import data as data_mod
    from skipexp.science import lesion as lesion_mod
    from skipexp.rundir import runio
    from skipexp.science import shatter as shatter_mod
    trained = lesion_mod.load_run(checkpoint) if checkpoint is not None else None
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    splits = data_mod.load(cfg.data, download_progress())
    folder = runio.create_run_dir(out, f"shatter-{cfg.name}")
    (folder / "config.yaml").write_text(config_mod.dump(cfg))
    rows = shatter_mod.probe(cfg, depth_list, kind_list, seeds, pairs, splits)
    if trained is not None:
        rows += shatter_mod.probe_trained(trained.model, trained.cfg, trained.splits, pairs)
    lesion_mod.write_csv(rows, folder / "shatter.csv", shatter_mod.COLUMNS)
    plot = shatter_mod.plot(rows, folder / "plots" / "shatter.png", f"{cfg.name}: {cfg.model.activation}, norm "
                            f"{cfg.model.norm}, init {cfg.model.init}, width {cfg.model.width}")
    t = Table(title="lag-1 correlation of gradients along a line (mean ± s.e.)", title_justify="left")
    t.add_column("depth", justify="right")
    summary = shatter_mod.summarise(rows)
    keys = sorted(summary, key=lambda k: k[0] != "init")
    for state, kind in keys:
        t.add_column(kind if state == "init" else f"{kind} (trained)", justify="right")
    t.add_column("2^-L", justify="right")
    all_depths = sorted({d for line in summary.values() for d, *_ in line})
    for d in all_depths:
        cells = []
        for key in keys:
            hit = [x for x in summary[key] if x[0] == d]
            cells.append(f"{hit[0][1]:.3f} ± {hit[0][2]:.3f}" if hit else "")
        t.add_row(str(d), *cells, f"{2.0 ** -d:.3g}")
    out_console.print(t)
    out_console.print(str(plot), soft_wrap=True)
    out_console.print(str(folder), soft_wrap=True)


def print_theory(cfg: "RunConfig", batch: int = 512) -> None:
    """Predicted against measured activation-gradient ratios at init, for ``validate --theory``."""
    import torch
    from rich.table import Table

    from skipexp.core import data as data_mod
    from skipexp.science import theory as theory_mod
    from skipexp.core.models import SkipNet

    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
    splits = data_mod.load(cfg.data, download_progress())
    torch.manual_seed(cfg.seeds[0])
    model = SkipNet(cfg.model, splits.input_dim, splits.num_classes)
    x, y = splits.x_train[:batch], splits.y_train[:batch]
    measured = theory_mod.measure(model, x, y)
    reason = theory_mod.why_not(model)
    if reason is not None:
        out_console.print(f"theory: no prediction: {reason}")
        out_console.print(f"measured ||dL/dh0|| / ||dL/dh{cfg.model.depth}|| at init: {measured[0]:.4g}")
        return
    predicted, blocks = theory_mod.predict(model, theory_mod.input_mean_square(model, x))
    b0 = blocks[0]
    out_console.print(
        f"theory (mean field, per block Linear -> {cfg.model.activation} -> Linear, init {cfg.model.init}): "
        f"sigma_w^2 = {b0.sigma_w2:.3g}, sigma_b^2 = {b0.sigma_b2:.3g}, E[phi'(z)^2] = {b0.dphi2:.3g}, "
        f"chi per block = {b0.chi_branch:.4g}, per unit with its skip = {b0.chi_unit:.4g}", markup=False)
    t = Table(title=f"||dL/dh_i|| / ||dL/dh{cfg.model.depth}|| at init, on {len(y)} training examples",
              title_justify="left")
    for col in ("boundary", "predicted", "measured", "measured / predicted"):
        t.add_column(col, justify="right")
    depth = cfg.model.depth
    shown = sorted({0, depth, *range(0, depth + 1, max(1, depth // 8))})
    for i in shown:
        t.add_row(f"h{i}", f"{predicted[i]:.4g}", f"{measured[i]:.4g}", f"{measured[i] / predicted[i]:.3f}")
    out_console.print(t)
    out_console.print("the theory assumes wide layers: at width 512 expect agreement within ~10-20%; narrow "
                      "nets drift further, a few % per block")


# --- compare, sweep, report: many runs side by side -------------------------------------------

def settle_and_run(cfg: "RunConfig", run_dir: Path, stop: StopFlag):
    """``train --run-dir D --resume`` when D exists: what :func:`skipexp.experiments.sweep.settle` decides."""
    import yaml

    from skipexp.core import config as config_mod
    from skipexp.experiments import sweep as sweep_mod
    from skipexp.training import train as train_mod
    from skipexp.rundir.summary import write_summary

    state, moved = sweep_mod.settle(run_dir, yaml.safe_load(config_mod.dump(cfg)))
    if state == "done":
        # rewritten, not trusted: a run stopped while it was writing its summary or plots lacks them
        summary = write_summary(run_dir)
        if not (run_dir / "plots" / "grad_heatmap.png").is_file():
            from skipexp.views import plots

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

    from skipexp.experiments import compare as compare_mod

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
    With seed=[0,1,2] each member trains every seed (runs/<member>-seed<N>/) and the table shows means.
    Example: skipexp compare configs/plain.yaml configs/skip.yaml train.epochs=4
    """
    from skipexp.experiments import compare as compare_mod

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

    from skipexp.experiments.report import sweep_table

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
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML: name, base, grid.", show_default=False,
                                               autocompletion=complete_yaml)],
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help=(
        "Points run at once; each gets cores // jobs torch threads (default 1; with --backend ray: as many "
        "as the cluster has room for)."), show_default=False)] = None,
    list_only: Annotated[bool, typer.Option("--list", help="Print one command per point; run nothing.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="With --list: shell (one line per point) or make.")] = "shell",
    out: Annotated[Path, typer.Option("--out", help="Folder that receives sweep-<name>/.")] = Path("runs"),
    backend: Annotated[str, typer.Option(
        "--backend", help="Where points run: local (subprocesses here) or ray (Ray tasks, here or on a cluster).")
    ] = "local",
    address: Annotated[Optional[str], typer.Option(
        "--address", help="With --backend ray: auto (the cluster `ray start` runs here) or HOST:PORT; "
        "default: a private Ray on this machine.")] = None,
    cpus_per_point: Annotated[int, typer.Option(
        "--cpus-per-point", min=1, help="With --backend ray: CPUs reserved per point (its torch threads).")] = 1,
) -> None:
    """Run every point of a grid over a base config into OUT/sweep-<name>/, then summarize and plot.

    Points already completed (or diverged) are skipped and interrupted ones resumed, so running it again
    finishes an interrupted sweep. Example: skipexp sweep configs/sweeps/depth.yaml --jobs 2
    """
    from skipexp.experiments import sweep as sweep_mod

    sw = sweep_mod.load(sweep_file)
    options: dict = {}
    if backend == "ray":
        from skipexp.experiments import ray_backend

        ray_backend.require_ray()  # before any folder is made: no Ray, exit 2 with the install hint
        options = {"address": address, "cpus_per_point": cpus_per_point,
                   "device": str(sweep_mod.points(sw, out, 1)[0].config.get("device", "cpu"))}
    elif address is not None:
        raise SkipexpError("only means something with --backend ray", key="--address")
    ray_jobs = jobs
    jobs = jobs or 1
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
                        TextColumn("{task.fields[now]}"), TimeElapsedColumn(), console=err_console.console)

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
        outcome = sweep_mod.run(sw, out, jobs if backend != "ray" else ray_jobs, backend, Listener(),
                                should_stop=stop, **options)
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
    tensorboard: Annotated[bool, typer.Option(
        "--tensorboard", help="Also export every run in them to TensorBoard event files (needs tensorboard).")
    ] = False,
) -> None:
    """Rewrite the summaries and plots of finished or interrupted folders and print their tables.

    Example: skipexp report runs/sweep-depth --tensorboard
    """
    from skipexp.experiments import report as report_mod

    if tensorboard:
        from skipexp.views.tensorboard import writer_class

        writer_class()  # no tensorboard installed: exit 2 with the hint before anything is rewritten

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
        if tensorboard:
            from skipexp.views.tensorboard import export_tree

            err_console.print(f"{len(export_tree(d))} run(s) exported to TensorBoard; view with: tensorboard "
                              f"--logdir {d}", markup=False, highlight=False)


@app.command("tensorboard")
def tensorboard_cmd(
    dirs: Annotated[list[Path], typer.Argument(
        help="Run, comparison or sweep folders, or folders holding them.", show_default=False)],
    histograms: Annotated[bool, typer.Option(help="Also write per-step histograms over layers.")] = True,
) -> None:
    """Export runs to TensorBoard: event files in each run folder's tensorboard/, from its CSVs.

    Example: skipexp tensorboard runs/  (then: tensorboard --logdir runs/)
    """
    from skipexp.views.tensorboard import export_tree

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

    from skipexp.core import registry

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
