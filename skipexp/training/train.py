"""The names callers have imported from here; training itself lives in :mod:`skipexp.training.api`
(the lifecycle), :mod:`skipexp.training.engine` (the loop) and :mod:`skipexp.training.session` (a run folder)."""
from __future__ import annotations

from skipexp.training.api import resume, train
from skipexp.training.checkpoint import load_checkpoint_file
from skipexp.training.session import Reporter, RunResult, create_run, resolve_device, write_views

__all__ = ["Reporter", "RunResult", "create_run", "load_checkpoint_file", "resolve_device",
           "resume", "train", "write_views"]
