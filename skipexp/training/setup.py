"""Setting a run up: its device and threads, its data, model, optimizer and schedule, its folder's logs and
meta.json (from its checkpoint, resuming)."""
from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import torch

from skipexp.core import data as data_mod
from skipexp.core import nets
from skipexp.core.config import RunConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.metrics import GradProbe
from skipexp.core.models import count_parameters
from skipexp.core.version import VERSION
from skipexp.rundir import files, runio
from skipexp.rundir.folder import RowSink, RunFolder
from skipexp.training.checkpoint import load_checkpoint, rng_state
from skipexp.training.optim import build_optimizer, build_schedule
from skipexp.training.run import Run
from skipexp.training.threads import choose_threads

# (cfg, run_dir, meta, rows rolled back) -> where a run's rows go besides its CSVs (TensorBoard's live events)
SinkFor = Callable[[RunConfig, Path, dict, int], 'RowSink | None']


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


def setup(cfg: RunConfig, folder: RunFolder, resume: bool, progress: data_mod.Progress | None,
          sink: SinkFor, splits: data_mod.Splits | None = None) -> Run:
    """Build the model, optimizer and logs of one run and write its meta.json (from its checkpoint with ``resume``).
    ``sink(cfg, run_dir, meta, rows_rolled_back)`` gives where its rows go besides the CSVs, if anywhere."""
    threads = choose_threads(cfg)
    torch.set_num_threads(threads)
    device = resolve_device(cfg.device)
    seed = cfg.seeds[0]
    # models trained together share one copy of the data
    splits = (splits or data_mod.load(cfg.data, progress)).to(device)
    torch.manual_seed(seed)
    random.seed(seed)
    model = nets.build(cfg, splits.input_dim, splits.num_classes).to(device)
    opt = build_optimizer(model.parameters(), cfg.train)
    per_epoch = max(1, len(splits.y_train) // cfg.train.batch_size)
    total = cfg.train.steps or cfg.train.epochs * per_epoch
    sched = build_schedule(opt, cfg.train, total)
    probe = GradProbe(model.layers())
    boundaries = model.boundary_names()
    folder.open_log("metrics", files.METRICS, runio.METRICS_COLUMNS)
    folder.open_log("eval", files.EVAL, runio.eval_columns(splits.y_val is not None, cfg.log.train_eval_size != 0))
    folder.open_log("grad", files.GRAD_NORMS, ["step"] + probe.layer_names)
    folder.open_log("act_grad", files.ACT_GRAD_NORMS, ["step"] + boundaries)
    folder.open_log("act", files.ACT_NORMS, ["step"] + boundaries)
    run = Run(cfg, folder.run_dir, device, splits, model, opt, sched, probe, folder, total, per_epoch, rng=rng_state())
    now = datetime.now().isoformat(timespec="seconds")
    rolled_back = 0
    if resume:
        # no checkpoint yet (killed in epoch 1): start over from step 0
        if files.last_checkpoint(run.run_dir).exists():
            run.step, run.elapsed = load_checkpoint(files.last_checkpoint(run.run_dir), model, opt, sched, device)
            run.rng = rng_state()
        # rows a killed process wrote after that checkpoint are not this run's: the resumed run writes its own
        rolled_back = folder.roll_back(run.step)
        folder.hold_rows_on_disk()
        folder.meta.setdefault("resumes", []).append({
            "time": now, "from_step": run.step, "previous_status": runio.effective_status(folder.meta),
            "host": runio.host(), "pid": os.getpid(), "rows_rolled_back": rolled_back})
    else:
        folder.hold_meta(skipexp_version=VERSION, torch_version=torch.__version__,
                    python_version=platform.python_version(), start_time=now, params=count_parameters(model),
                    total_steps=total, steps_per_epoch=per_epoch, data_source=splits.source, git_commit=_git_commit())
    folder.write_meta(status="running", command=sys.argv, device=str(device), threads=threads, host=runio.host(),
                pid=os.getpid(), device_name=(torch.cuda.get_device_name(device) if device.type == "cuda"
                                              else platform.processor() or platform.machine()))
    live = sink(cfg, run.run_dir, folder.meta, rolled_back)
    if live is not None:
        folder.sinks.append(live)
    return run
