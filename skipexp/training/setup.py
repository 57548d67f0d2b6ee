"""A run folder's lifecycle around the loop: creating it, setting a run up, and finishing it."""
from __future__ import annotations

import gc
import os
import platform
import random
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import torch

import skipexp
from skipexp.core import config as config_mod
from skipexp.core import data as data_mod
from skipexp.core.config import RunConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.metrics import GradProbe
from skipexp.core.models import SkipNet, count_parameters
from skipexp.rundir import files, runio
from skipexp.training.checkpoint import load_checkpoint, rng_state
from skipexp.training.optim import build_optimizer, build_schedule
from skipexp.training.run import Run, TeeLog
from skipexp.training.threads import choose_threads


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SkipexpError("CUDA was asked for but torch sees no CUDA device; use device: cpu or auto",
                               key="device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SkipexpError(f"there are {torch.cuda.device_count()} CUDA devices, no {name}", key="device")
    return dev


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# --- setting a run up ----------------------------------------------------------------------------

def create_run(cfg: RunConfig, out: Path, run_dir: Path | None = None) -> Path:
    """Make the run folder (exclusively) and write config.yaml and a first meta.json."""
    if run_dir is None:
        run_dir = runio.create_run_dir(out, cfg.name)
    else:
        runio.check_writable(run_dir.parent)
        try:
            run_dir.mkdir()
        except FileExistsError:
            raise SkipexpError("already exists; run folders are never reused", file=str(run_dir)) from None
    files.write_config_text(run_dir, config_mod.dump(cfg))
    # "running" with a heartbeat from the start: a process killed while loading data shows as crashed
    runio.Meta(run_dir / files.META, {
        "tool": "skipexp", "name": cfg.name, "seed": cfg.seed,
        "created": datetime.now().isoformat(timespec="seconds"),
    }).update(status="running")
    return run_dir


def setup(cfg: RunConfig, run_dir: Path, resume: bool, progress: data_mod.Progress | None,
          splits: data_mod.Splits | None = None) -> Run:
    """Build the model, optimizer, logs and meta.json of one run (from its checkpoint with ``resume``)."""
    threads = choose_threads(cfg)
    torch.set_num_threads(threads)
    device = resolve_device(cfg.device)
    seed = cfg.seeds[0]
    # models trained together (skipexp.training.fit.train_group) share one copy of the data
    splits = (splits or data_mod.load(cfg.data, progress)).to(device)
    torch.manual_seed(seed)
    random.seed(seed)
    model = SkipNet(cfg.model, splits.input_dim, splits.num_classes).to(device)
    opt = build_optimizer(model.parameters(), cfg.train)
    per_epoch = max(1, len(splits.y_train) // cfg.train.batch_size)
    total = cfg.train.steps or cfg.train.epochs * per_epoch
    sched = build_schedule(opt, cfg.train, total)
    probe = GradProbe(model.layers())
    boundaries = model.boundary_names()
    logs = {
        "metrics": runio.CsvLog(run_dir / files.METRICS, runio.METRICS_COLUMNS),
        "eval": runio.CsvLog(run_dir / files.EVAL, runio.eval_columns(splits.y_val is not None,
                                                                      cfg.log.train_eval_size != 0)),
        "grad": runio.CsvLog(run_dir / files.GRAD_NORMS, ["step"] + probe.layer_names),
        "act_grad": runio.CsvLog(run_dir / files.ACT_GRAD_NORMS, ["step"] + boundaries),
        "act": runio.CsvLog(run_dir / files.ACT_NORMS, ["step"] + boundaries),
    }
    meta = runio.Meta(run_dir / files.META, runio.read_json(run_dir / files.META))
    run = Run(cfg, run_dir, device, splits, model, opt, sched, probe, logs, meta, total, per_epoch, rng=rng_state())
    now = datetime.now().isoformat(timespec="seconds")
    rolled_back = 0
    if resume:
        # no checkpoint yet (killed in epoch 1): start over from step 0
        if files.last_checkpoint(run_dir).exists():
            load_checkpoint(run)
        # rows a killed process wrote after that checkpoint are not this run's: the resumed run writes its own
        rolled_back = sum(log.roll_back(run.step) for log in logs.values())
        meta.data.setdefault("resumes", []).append({
            "time": now, "from_step": run.step, "previous_status": runio.effective_status(meta.data),
            "host": runio.host(), "pid": os.getpid(), "rows_rolled_back": rolled_back})
    else:
        meta.data.update({
            "skipexp_version": skipexp.__version__, "torch_version": torch.__version__,
            "python_version": platform.python_version(), "start_time": now,
            "params": count_parameters(model), "total_steps": total, "steps_per_epoch": per_epoch,
            "data_source": splits.source, "git_commit": _git_commit(),
        })
    meta.update(status="running", command=sys.argv, device=str(device), threads=threads, host=runio.host(),
                pid=os.getpid(), device_name=(torch.cuda.get_device_name(device) if device.type == "cuda"
                                              else platform.processor() or platform.machine()))
    if cfg.log.tensorboard:  # imported only here: a run without it never loads tensorboard
        from skipexp.views.tensorboard import LiveEvents, export_run

        if rolled_back:  # the events of the rows rolled back go with them: rewritten from the CSVs as they are now
            export_run(run_dir)

        sink = LiveEvents(run_dir, meta.data)
        run.logs = {name: TeeLog(log, sink) for name, log in logs.items()}
    return run


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: matplotlib makes objects by the hundred thousand, and each
    full collection it sets off walks all of torch's too, which costs a run's plots a fifth of their time.
    The figures' cycles are collected after, once."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def logged_in(error: BaseException, run_dirs: list[Path]) -> None:
    """Note on ``error`` the train.log files its traceback went to (``error.train_logs``), so that the one line
    the command prints points at them, and only where they exist."""
    try:
        error.train_logs = [str(d / files.TRAIN_LOG) for d in run_dirs]  # type: ignore[attr-defined]
    except AttributeError:   # an exception type without attributes of its own
        pass


def write_views(cfg: RunConfig, run_dir: Path, plots: bool = True) -> None:
    """What a finished run draws from its CSVs: its plots and its report.html (its TensorBoard events were
    written as it ran)."""
    try:
        if plots and cfg.log.plots:
            with _gc_paused():
                from skipexp.views import plots as plots_mod

                plots_mod.plot_run(run_dir)
                if cfg.log.sharpness_every:
                    from skipexp.views import mechanisms

                    mechanisms.plot_sharpness_log(run_dir)
        if cfg.log.html:
            from skipexp.views import html

            html.write_run(run_dir)
    except Exception as e:  # the results are on disk and `report` can redraw them; say where it broke
        with open(run_dir / files.TRAIN_LOG, "a") as f:
            f.write(traceback.format_exc())
        logged_in(e, [run_dir])
        raise


def finish_meta(run_dir: Path, run: Run | None, status: str) -> None:
    """The final status, end time and, for a run that got going, its training time and steps."""
    meta = run.meta if run else runio.Meta(run_dir / files.META, runio.read_json(run_dir / files.META))
    meta.update(status=status, end_time=datetime.now().isoformat(timespec="seconds"))
    if run is not None:
        meta.update(train_seconds=round(run.seconds, 3), steps_done=run.step)



def note(run_dir: Path, fields: dict) -> None:
    """Add ``fields`` to a run's meta.json before it is set up (how its seeds were trained)."""
    files.update_meta(run_dir, **fields)
