"""The loop alone: a scripted model stack (its losses, norms and divergence chosen per model and step) and a
folder writer that only records, so that what the loop decides (when it logs, evaluates, checkpoints, which
model ends when and why, when it stops) is checked without training anything."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from conftest import TINY

from skipexp.core import config
from skipexp.core import data as data_mod
from skipexp.core.metrics import GradProbe
from skipexp.core.models import SkipNet
from skipexp.training.loop import Cadence, stop_reason, train_loop
from skipexp.training.optim import build_optimizer, build_schedule
from skipexp.training.run import Logged, Reporter, Run

STEPS_PER_EPOCH = 4   # 256 training examples, batches of 64


class RecordingFolder:
    """The folder writer's interface, recording what the loop had written instead of writing it."""

    def __init__(self) -> None:
        self.rows: dict[str, list] = defaultdict(list)
        self.checkpoints: list[tuple[int, int | None]] = []   # (the run's step, epoch-N.pt's N)
        self.meta: dict = {}
        self.finished: tuple[str, dict] | None = None
        self.run: Run | None = None

    def write(self, name: str, row) -> None:
        self.rows[name].append(row)

    def beat(self) -> None: ...

    def hold_meta(self, **fields) -> None:
        self.meta.update(fields)

    def save_checkpoint(self, save, epoch: int | None = None) -> None:
        self.checkpoints.append((self.run.step, epoch))

    def log_text(self, text: str) -> None: ...

    def end(self, status: str, summary: bool = True, **fields) -> dict:
        assert self.finished is None, "a folder finished twice"
        self.finished = (status, {**self.meta, **fields})
        return {"status": status}

    def steps(self, name: str) -> list[int]:
        return [int(r["step"] if isinstance(r, dict) else r[0]) for r in self.rows[name]]


class ScriptedStack:
    """The model stack's side of the loop: learning rates, copying a model out, retiring it."""

    def __init__(self, runs: list[Run], poison_at: dict[int, int]):
        self.runs, self.poison_at = runs, poison_at
        self.retired: list[int] = []

    def lrs(self) -> list[float]:
        return [0.05] * len(self.runs)

    def sync(self, k: int, state: bool = False) -> None:
        if self.poison_at.get(k) == self.runs[k].step:   # the update overflowed: the weights it copies out are inf
            with torch.no_grad():
                next(self.runs[k].model.parameters()).fill_(float("inf"))

    def retire(self, k: int) -> None:
        self.retired.append(k)


class ScriptedStepper:
    """Model k's loss turns NaN from step ``nan_from[k]``; its logged total norm overflows at ``overflow_at[k]``
    (a finite loss and finite elements); its update overflows at ``poison_at[k]``."""

    def __init__(self, runs: list[Run], nan_from: dict[int, int] | None = None,
                 overflow_at: dict[int, int] | None = None, poison_at: dict[int, int] | None = None):
        self.stack = ScriptedStack(runs, poison_at or {})
        self.nan_from, self.overflow_at = nan_from or {}, overflow_at or {}
        self.first_nonfinite = [0] * len(runs)
        self.steps: list[int] = []
        self.updates = 0

    def grads(self, idx: torch.Tensor, step: int, log: bool) -> list[Logged] | None:
        assert idx.shape == (len(self.first_nonfinite), 64)
        self.steps.append(step)
        for k, at in self.nan_from.items():
            if step >= at and not self.first_nonfinite[k]:
                self.first_nonfinite[k] = step
        if not log:
            return None
        return [Logged(float("nan") if step >= self.nan_from.get(k, math.inf) else 1.0 / step, 0.5,
                       math.inf if self.overflow_at.get(k) == step else 1.0, [1.0], [1.0], [1.0])
                for k in range(len(self.first_nonfinite))]

    def flag(self, k: int, step: int) -> None:
        self.first_nonfinite[k] = self.first_nonfinite[k] or step

    def diverged(self, live: list[int], must_read: bool) -> list[tuple[int, int]]:
        return [(k, at) for k, at in enumerate(self.first_nonfinite) if at and k in live]

    def update(self) -> None:
        self.updates += 1

    def meta(self) -> dict:
        return {}


def make_runs(k: int, tmp_path: Path, **log) -> list[Run]:
    """K runs of a tiny config, three epochs of STEPS_PER_EPOCH steps, each with a recording folder."""
    cfg = config.from_dict({**TINY, "data": {**TINY["data"], "n_train": 256},
                            "train": {**TINY["train"], "epochs": 3}, "log": {**TINY["log"], **log}})
    splits = data_mod.load(cfg.data)
    runs = []
    for i in range(k):
        model = SkipNet(cfg.model, splits.input_dim, splits.num_classes)
        opt = build_optimizer(model.parameters(), cfg.train)
        folder = RecordingFolder()
        run = Run(cfg.replace(seed=i), tmp_path / f"m{i}", torch.device("cpu"), splits, model, opt,
                  build_schedule(opt, cfg.train, 12), GradProbe(model.layers()), folder, 12, STEPS_PER_EPOCH)
        folder.run = run
        runs.append(run)
    return runs


class Hears(Reporter):
    def __init__(self) -> None:
        self.logs: list[list[int]] = []   # the models heard at each log step
        self.evals: list[int] = []

    def on_logs(self, rows: dict[int, dict]) -> None:
        self.logs.append(sorted(rows))

    def on_eval(self, row: dict) -> None:
        self.evals.append(row["step"])


def test_the_cadence_of_logs_evaluations_and_checkpoints(tmp_path: Path) -> None:
    runs = make_runs(2, tmp_path, every=5, eval_every=None, checkpoint="every_epoch")
    stepper, heard = ScriptedStepper(runs), Hears()
    train_loop(stepper, runs, heard, should_stop=lambda: False)
    assert stepper.steps == list(range(1, 13)) and stepper.updates == 12
    for run in runs:
        folder = run.folder
        assert folder.steps("metrics") == folder.steps("grad") == folder.steps("act") == [1, 5, 10, 12]
        assert folder.steps("eval") == [4, 8, 12]                         # at each epoch's end
        assert folder.checkpoints == [(4, 1), (8, 2), (12, 3)]
        assert folder.finished[0] == "completed" and folder.finished[1]["steps_done"] == 12
    assert heard.logs == [[0, 1]] * 4 and heard.evals == [4, 8, 12]
    assert Cadence.of(runs[0]).evaluates(6) is False


def test_evaluations_every_n_steps_and_the_last_one(tmp_path: Path) -> None:
    runs = make_runs(1, tmp_path, every=100, eval_every=5, checkpoint="last")
    train_loop(ScriptedStepper(runs), runs, Reporter(), should_stop=lambda: False)
    folder = runs[0].folder
    assert folder.steps("metrics") == [1, 12] and folder.steps("eval") == [5, 10, 12]
    assert folder.checkpoints == [(4, None), (8, None), (12, None)]   # last.pt at each epoch's end and the end


def test_a_stop_asked_for_checkpoints_every_model_and_ends_it_interrupted(tmp_path: Path) -> None:
    runs = make_runs(2, tmp_path, every=1, checkpoint="last")
    asked = []
    stepper = ScriptedStepper(runs)
    train_loop(stepper, runs, Reporter(), should_stop=lambda: asked.append(1) or len(asked) == 6)
    assert stepper.steps == list(range(1, 7)) and stepper.updates == 6
    for run in runs:
        assert run.folder.checkpoints == [(4, None), (6, None)]
        assert run.folder.finished[0] == "interrupted" and run.folder.finished[1]["steps_done"] == 6


def test_each_model_diverges_on_its_own_and_the_others_go_on(tmp_path: Path) -> None:
    # model 1: a NaN loss from step 7 (between log steps); model 2: a total norm that overflows at log step 4
    runs = make_runs(3, tmp_path, every=2, checkpoint="last")
    stepper = ScriptedStepper(runs, nan_from={1: 7}, overflow_at={2: 4})
    heard = Hears()
    train_loop(stepper, runs, heard, should_stop=lambda: False)
    ends = [(r.folder.finished[0], r.folder.finished[1].get("diverged_at_step"), r.step) for r in runs]
    # a model ends before its bad step's update: its weights are those of the step before
    assert ends == [("completed", None, 12), ("diverged", 7, 6), ("diverged", 4, 3)]
    assert sorted(stepper.stack.retired) == [0, 1, 2]   # each as it ended, the last at the end
    assert runs[1].folder.steps("metrics") == [1, 2, 4, 6]   # no row once it has ended
    assert runs[2].folder.steps("metrics") == [1, 2, 4]      # the row that showed the overflow is written
    assert heard.logs[:3] == [[0, 1, 2]] * 3 and heard.logs[3] == [0, 1] and heard.logs[-1] == [0]
    assert stepper.updates == 12


def test_when_every_model_has_diverged_the_loop_stops(tmp_path: Path) -> None:
    runs = make_runs(2, tmp_path, every=100, checkpoint="last")
    stepper = ScriptedStepper(runs, nan_from={0: 3, 1: 5})
    train_loop(stepper, runs, Reporter(), should_stop=lambda: False)
    assert stepper.steps == [1, 2, 3, 4, 5] and stepper.updates == 4   # none once no model is left
    assert [r.folder.finished[1]["diverged_at_step"] for r in runs] == [3, 5]


def test_an_update_that_overflows_ends_its_model_at_the_checkpoint(tmp_path: Path) -> None:
    runs = make_runs(2, tmp_path, every=100, checkpoint="last")
    train_loop(ScriptedStepper(runs, poison_at={0: 8}), runs, Reporter(), should_stop=lambda: False)
    assert runs[0].folder.finished[0] == "diverged" and runs[0].folder.finished[1]["diverged_at_step"] == 8
    assert runs[0].folder.checkpoints == [(4, None)]   # the last checkpoint on disk stays the last finite one
    assert runs[1].folder.finished[0] == "completed"


def test_an_exception_leaves_the_status_to_the_caller_with_the_time_trained(tmp_path: Path) -> None:
    runs = make_runs(2, tmp_path, every=1)

    def dies() -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_loop(ScriptedStepper(runs), runs, Reporter(), should_stop=dies)
    assert all(r.folder.finished is None and r.seconds > 0 and r.step == 0 for r in runs)


@pytest.mark.parametrize("step, live, asked, reason", [
    (3, [0], False, None), (3, [0], True, "interrupted"), (12, [0], True, "completed"),
    (12, [0], False, "completed"), (5, [], False, "diverged"), (12, [], True, "diverged")])
def test_one_reason_to_stop(step: int, live: list[int], asked: bool, reason: str | None) -> None:
    assert stop_reason(step, 12, live, asked) == reason


def test_the_summary_a_run_ends_with_is_the_one_its_files_give(tiny_run) -> None:
    """The training process builds summary.json from the rows it holds; ``report`` rebuilds it from the CSVs."""
    from skipexp.rundir import files
    from skipexp.rundir.summary import summarize

    _, run_dir = tiny_run
    assert files.read_json(run_dir / files.SUMMARY) == files.jsonable(summarize(run_dir))
