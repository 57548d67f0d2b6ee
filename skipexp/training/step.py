"""A step of K models as the loop sees it: gradients, the divergence check, the update.

A step's arithmetic is two functions (gradients, then the update), with the divergence check between them.
On CUDA, after one eager step, both are captured as CUDA graphs and replayed (``train.cuda_graphs``): the
same kernels on the same tensors, so the same numbers, without the launches. Captured functions read their
inputs (the batch's indices, the step number, the learning rate) from device buffers of their own.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from skipexp.core import data as data_mod
from skipexp.core.config import TrainConfig
from skipexp.training.graphs import CaptureFailed, Graphs
from skipexp.training.modelstack import ModelStack, StepLog
from skipexp.training.run import Logged


def capturable(device: torch.device, train: TrainConfig) -> bool:
    """Whether steps are captured: on CUDA, unless turned off or compiled (torch.compile captures its own)."""
    return device.type == "cuda" and train.cuda_graphs and not train.compile


class Stepper:
    """The K models' steps: :meth:`grads` (forward, loss, backward, the divergence flags and, on log steps, the
    logged values), :meth:`diverged` and :meth:`update` (clip, optimizer, schedule). Eager on the CPU; on CUDA
    with graphs, eager for the first step and replayed as captured graphs after it."""

    def __init__(self, stack: ModelStack, data: data_mod.Splits, device: torch.device, train: TrainConfig):
        self.stack, self.data = stack, data
        self.graphs = Graphs(device) if capturable(device, train) else None
        # each model's first step whose loss or gradient was not finite (0: none). Kept on the device and read
        # on CPU every step, on CUDA only where it matters (log, eval, checkpoint, stop), to spare a sync a step.
        self.first_nonfinite = torch.zeros(stack.k, dtype=torch.long, device=device)
        self.read_every_step = device.type == "cpu"
        self.reports_graphs = device.type == "cuda" or self.graphs is not None   # meta.json's cuda_graphs
        # a training split smaller than a batch is one batch of all of it, every step
        batch = min(train.batch_size, len(data.y_train))
        self.idx = torch.zeros(stack.k, batch, dtype=torch.long, device=device)   # (K, B)
        self.at = torch.zeros((), dtype=torch.long, device=device)                # the step number
        self.warm = False        # one eager step done: gradients and optimizer state exist to capture
        self.replays = 0         # steps' functions replayed as graphs
        self.error: str | None = None   # why capture failed, where it did (every step then runs eagerly)
        if self.graphs is not None or device.type == "cuda":
            # captured steps read lr from the device; on CUDA every step does, so that replay changes no number
            stack.opt.lr_on_device(device)

    def grads(self, idx: torch.Tensor, step: int, log: bool) -> list[Logged] | None:
        """Gradients of model k on its batch ``idx[k]``; with ``log``, each model's values to log."""
        self.idx.copy_(idx)
        self.at.fill_(step)
        logged = self._run(("grads", log), lambda: self._grads(log))
        return logged.read() if logged is not None else None

    def flag(self, k: int, step: int) -> None:
        """Mark model k as not finite at ``step`` unless it already is (a logged norm that overflowed)."""
        own = self.first_nonfinite[k:k + 1]
        own.masked_fill_(own == 0, step)

    def diverged(self, live: list[int], must_read: bool) -> list[tuple[int, int]]:
        """(k, first non-finite step) of each live model flagged; on CUDA only where ``must_read`` (a host sync)."""
        if not (self.read_every_step or must_read):
            return []
        return [(k, at) for k, at in enumerate(self.first_nonfinite.tolist()) if at and k in live]

    def update(self) -> None:
        """Clip each model's gradient, step the optimizer, then the schedule."""
        self.stack.opt.load_lr()
        self._run("update", self._update)
        if not self.warm and self.graphs is not None:
            self.warm = True
            self.stack.opt.hold_grads()   # the update reads these tensors, whichever captured backward ran
        self.stack.sched.step()

    def meta(self) -> dict:
        """What meta.json says of the capture (on CUDA): whether steps were replayed, and why not where capture
        failed."""
        if not self.reports_graphs:
            return {}
        replayed = {"cuda_graphs": self.replays > 0}
        return replayed if self.error is None else {**replayed, "cuda_graphs_error": self.error}

    def _grads(self, log: bool) -> StepLog | None:
        stack, d = self.stack, self.data
        x, y = d.x_train[self.idx], d.y_train[self.idx]                                     # (K, B, in), (K, B)
        logits, hs = stack.forward(x, capture=log)
        losses = stack.losses(logits, y)                                                    # (K,)
        stack.backward(losses)
        new = stack.nonfinite(losses) & (self.first_nonfinite == 0)
        # torch.where, not masked_fill_: that would read self.at on the host
        self.first_nonfinite.copy_(torch.where(new, self.at, self.first_nonfinite))
        return stack.record(losses, logits, y, hs) if log else None

    def _update(self) -> None:
        self.stack.clip_()  # each model's own clip, after recording: the logged norms are the gradient's own
        self.stack.opt.step()

    def _run(self, key: object, fn: Callable[[], object]):
        if self.graphs is None:
            return fn()
        if not self.warm:
            return self.graphs.eager(fn)
        try:
            out = self.graphs(key, fn)
        except CaptureFailed as e:   # nothing ran, so the step runs eagerly instead, and every step after it
            self.error, self.graphs = str(e).splitlines()[0][:200], None
            return fn()
        self.replays += 1
        return out
