"""What a caller hears from training (:class:`Reporter`), where rows go besides the CSVs (:class:`RowSink`), and
one model's run as the loop trains it (:class:`Run`) and as it ends (:class:`RunResult`)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from skipexp.core import data as data_mod
from skipexp.core.config import RunConfig
from skipexp.core.metrics import GradProbe
from skipexp.core.models import SkipNet
from skipexp.rundir import runio


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


class RowSink(Protocol):
    """Where a run's rows go besides its CSVs (TensorBoard's live events): each row once, as a dict."""

    def add(self, log: str, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class TeeLog:
    """A CSV log that hands each row it accepts to a sink too. The rows a resumed run's CSV turns away
    (already on disk) the sink never sees, so it holds each step once as well."""

    def __init__(self, log: runio.CsvLog, sink: RowSink) -> None:
        self.log, self.sink = log, sink

    def write(self, row: dict[str, Any] | Iterable[Any]) -> None:
        values = [row[c] for c in self.log.columns] if isinstance(row, dict) else list(row)
        before = self.log.last_step
        self.log.write(values)
        if self.log.last_step != before:
            self.sink.add(self.log.path.name, dict(zip(self.log.columns, values)))

    def close(self) -> None:
        self.log.close()
        self.sink.close()


@dataclass
class RunResult:
    run_dir: Path
    status: str
    summary: dict = field(default_factory=dict)


@dataclass
class Run:
    """One model's run folder and everything it is trained and written with (its own config, model,
    optimizer and logs); models trained together each have one."""
    cfg: RunConfig
    run_dir: Path
    device: torch.device
    data: data_mod.Splits
    model: SkipNet
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    probe: GradProbe
    logs: dict[str, runio.CsvLog | TeeLog]
    meta: runio.Meta
    total_steps: int
    steps_per_epoch: int
    step: int = 0
    elapsed: float = 0.0  # training seconds before this process (resumed runs)
    seconds: float = 0.0  # training seconds in all, set when the loop ends
    rng: dict = field(default_factory=dict)  # RNG state after building the model: what its checkpoints hold
