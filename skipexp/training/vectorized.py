"""The names callers have imported from here: several seeds of one config trained together.

Each seed keeps everything a run of ``seed: N`` alone has: its init, its own batch order, its own
optimizer state and its own ordinary run folder. The stacked form is :mod:`skipexp.training.stacked`,
the loop (the same for one model and for K) :mod:`skipexp.training.engine`, the lifecycle
:func:`skipexp.training.api.train_seeds`.
"""
from __future__ import annotations

from skipexp.training.api import train_seeds
from skipexp.training.stacked import StackedLayerNorm, StackedLinear, stack_models, unsupported, unsupported_model

__all__ = ["StackedLayerNorm", "StackedLinear", "stack_models", "train_seeds", "unsupported", "unsupported_model"]
