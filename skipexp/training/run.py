"""One model's run as the loop trains it (:class:`Run`), what a caller hears from training (:class:`Reporter`),
a log step's values by name (:class:`Logged`) and what a run ends as (:class:`RunResult`).

A :class:`Run` does its model's own part of a step of the loop: the rows of a log step, an evaluation, a
checkpoint, its end. It writes only through its :class:`~skipexp.rundir.folder.RunFolder`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from skipexp.core import data as data_mod
from skipexp.core.config import RunConfig
from skipexp.core.metrics import GradProbe, evaluate
from skipexp.core.models import SkipNet
from skipexp.rundir.folder import RunFolder
from skipexp.training import sharpness
from skipexp.training.checkpoint import checkpoint_state, weights_finite


class Reporter:
    """What a caller hears from a run. The CLI draws a progress bar; the default hears nothing.

    K models trained together are one run to it: ``on_runs`` names them (in order, K >= 1) before
    ``on_start``; ``on_logs`` hears every live model's row of a log step, by its index, and by default hands
    the first one's to ``on_log``."""

    def on_runs(self, runs: list[tuple[str, Path]]) -> None: ...
    def on_start(self, run_dir: Path, total_steps: int, start_step: int) -> None: ...
    def on_log(self, row: dict) -> None: ...

    def on_logs(self, rows: dict[int, dict]) -> None:
        if rows:
            self.on_log(rows[min(rows)])

    def on_eval(self, row: dict) -> None: ...
    def on_end(self, status: str, summary: dict) -> None: ...


@dataclass(frozen=True)
class Logged:
    """One model's values at a log step: its batch's loss and accuracy and its gradient's total norm
    (metrics.csv), each weight layer's gradient norm (grad_norms.csv), and at each block boundary the loss
    gradient's norm (act_grad_norms.csv) and the activations' RMS (act_norms.csv)."""
    loss: float
    acc: float
    grad_norm: float
    layer_grad_norms: list[float]
    act_grad_norms: list[float]
    act_rms: list[float]

    @property
    def finite(self) -> bool:
        """Whether the loss and the total gradient norm are finite (a norm can overflow where no element does)."""
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)


@dataclass
class RunResult:
    run_dir: Path
    status: str
    summary: dict = field(default_factory=dict)


@dataclass
class Run:
    """One model's run folder and everything it is trained and written with (its own config, model,
    optimizer and folder); models trained together each have one."""
    cfg: RunConfig
    run_dir: Path
    device: torch.device
    data: data_mod.Splits
    model: SkipNet   # or a ConvNet (skipexp.core.nets builds either)
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    probe: GradProbe
    folder: RunFolder
    total_steps: int
    steps_per_epoch: int
    step: int = 0
    elapsed: float = 0.0  # training seconds before this process (resumed runs)
    seconds: float = 0.0  # training seconds in all, set when the loop ends
    rng: dict = field(default_factory=dict)  # RNG state after building the model: what its checkpoints hold
    status: str | None = None   # how it ended (None: not yet)
    summary: dict = field(default_factory=dict)

    def batch_order(self, epoch: int) -> torch.Tensor:
        """(n,) this model's order of the training examples in ``epoch``: a function of its seed and the epoch."""
        return data_mod.batch_order(len(self.data.y_train), self.cfg.seeds[0], epoch)

    def log(self, logged: Logged, step: int, epoch: int, lr: float, elapsed: float) -> dict:
        """One log step's rows: metrics.csv's (returned), and the gradient and activation norms."""
        row = {"step": step, "epoch": epoch, "train_loss": logged.loss, "train_acc": logged.acc,
               "lr": lr, "grad_norm_total": logged.grad_norm, "elapsed_s": round(elapsed, 3)}
        self.folder.write("metrics", row)
        self.folder.write("grad", [step, *logged.layer_grad_norms])
        self.folder.write("act_grad", [step, *logged.act_grad_norms])
        self.folder.write("act", [step, *logged.act_rms])
        self.folder.beat()
        return row

    def evaluate(self, step: int, epoch: int) -> dict:
        """One evaluation: the test set, the validation split where the run holds one out, and the training data
        (its whole split, or a fixed sample: ``log.train_eval_size``) in eval mode, which is what a summary's train
        loss and accuracy are. Then sharpness, where ``log.sharpness_every`` asks for it."""
        d = self.data
        loss, acc = evaluate(self.model, d.x_test, d.y_test)
        row = {"step": step, "epoch": epoch, "test_loss": loss, "test_acc": acc}
        if d.y_val is not None:
            row["val_loss"], row["val_acc"] = evaluate(self.model, d.x_val, d.y_val)
        if self.cfg.log.train_eval_size != 0:
            x, y = data_mod.train_sample(d, self.cfg.log.train_eval_size, self.cfg.data.seed)
            row["train_loss"], row["train_acc"] = evaluate(self.model, x, y)
        self.folder.write("eval", row)
        sharpness.at_evaluation(self.model, d, self.cfg.log, self.folder, step, self.total_steps, self.steps_per_epoch)
        return row

    def checkpoint(self, elapsed: float) -> bool:
        """Write checkpoints/last.pt (and epoch-N.pt where ``log.checkpoint`` asks); False, writing nothing, where a
        weight is not finite (the last checkpoint on disk stays the last finite one)."""
        if not weights_finite(self.model):
            return False
        how = self.cfg.log.checkpoint
        if how != "none":
            state = checkpoint_state(self.model, self.opt, self.sched, self.step, elapsed, self.rng)
            epoch = self.step // self.steps_per_epoch if how == "every_epoch" and \
                self.step % self.steps_per_epoch == 0 else None
            self.folder.save_checkpoint(lambda path: torch.save(state, path), epoch)
        return True

    def end(self, status: str, seconds: float, **meta: object) -> None:
        """Finish the folder: ``meta`` and the status into meta.json, the summary written, a line in train.log."""
        self.seconds, self.status = seconds, status
        self.folder.hold_meta(**meta)
        self.summary = self.folder.end(status, train_seconds=round(seconds, 3), steps_done=self.step)
        self.folder.log_text(f"status {status}: {self.summary}\n")

    @property
    def result(self) -> RunResult:
        return RunResult(self.run_dir, self.status or "interrupted", self.summary)
