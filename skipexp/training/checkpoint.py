"""Checkpoints: written atomically, only with finite weights; read back without running code."""
from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from skipexp.core.errors import SkipexpError
from skipexp.rundir import files, runio

if TYPE_CHECKING:
    from skipexp.core.config import RunConfig
    from skipexp.core.data import Splits
    from skipexp.core.models import SkipNet


def weights_finite(model: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer is finite: one check over all of them, since a
    check per tensor (~80 of them, each with a host sync) costs more than copying them into one."""
    ts = [t.detach().reshape(-1) for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    return not ts or bool(torch.isfinite(torch.cat(ts)).all())


def checkpoint_state(model: nn.Module, opt: Any, sched: Any, step: int, elapsed: float, rng: dict) -> dict:
    """What checkpoints/last.pt holds: the weights, optimizer and schedule, the step, the training time so far and
    the RNG state (this model's own, as a lone run of its seed holds it: models trained together too)."""
    return {"step": step, "elapsed": elapsed, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": rng}


def load_checkpoint_file(path: Path, map_location: torch.device | str = "cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise SkipexpError("no checkpoint to resume from (log.checkpoint was none, or the run died before "
                           "its first checkpoint)", file=str(path)) from None
    except Exception as e:
        raise SkipexpError(f"unreadable checkpoint ({e.__class__.__name__})", file=str(path)) from None


def rng_state() -> dict:
    """The process's random number generators, as a checkpoint holds them."""
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def load_checkpoint(path: Path, model: nn.Module, opt: Any, sched: Any, device: torch.device) -> tuple[int, float]:
    """Put the checkpoint at ``path`` into ``model``, ``opt`` and ``sched`` and restore the process's RNG state
    from it: its (step, training seconds so far)."""
    state = load_checkpoint_file(path, device)
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    except (KeyError, ValueError, RuntimeError) as e:  # config.yaml edited since, or not our checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise SkipexpError(f"does not fit the run's config.yaml ({first})", file=str(path)) from None
    torch.set_rng_state(state["rng"]["torch"].cpu())
    random.setstate((3, tuple(state["rng"]["python"]), None))
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
    return int(state["step"]), float(state["elapsed"])


def load_trained(run_dir: Path, splits_for: Callable[[RunConfig], Splits],
                 purpose: str = "load") -> tuple[RunConfig, SkipNet, Splits, int]:
    """A run's resolved config, its model with the last checkpoint's weights (on the CPU, in eval mode), its data
    (``splits_for(cfg)``) and the checkpoint's step: what the commands that measure a trained run start from."""
    from skipexp.core import config as config_mod
    from skipexp.core import nets, yamlio

    runio.require_run_dir(run_dir)
    cfg = config_mod.from_dict(yamlio.read_yaml(run_dir / files.CONFIG), file=str(run_dir / files.CONFIG))
    ckpt = files.last_checkpoint(run_dir)
    if not ckpt.is_file():
        raise SkipexpError(f"no checkpoints/last.pt to {purpose} (trained with log.checkpoint: none, or stopped "
                           "before its first checkpoint)", file=str(run_dir))
    state = load_checkpoint_file(ckpt, "cpu")
    splits = splits_for(cfg)
    model = nets.build(cfg, splits.input_dim, splits.num_classes)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as e:   # config.yaml edited since, or not our checkpoint
        raise SkipexpError(f"checkpoints/last.pt does not fit the run's config.yaml ({str(e).splitlines()[0]})",
                           file=str(run_dir)) from None
    return cfg, model.eval(), splits, int(state.get("step", 0))
