"""summary.json: best is never worse than final, steps are the steps taken, smoothing has no start-up bias."""
from __future__ import annotations

import math
import random

import pytest
from conftest import train_in_process

from skipexp.rundir import files, runio, summary


def tensorboard_smoothing(values, weight):
    """TensorBoard's debiased EMA, written as the weighted mean it is (the oracle for summary.ema)."""
    out = []
    for k in range(1, len(values) + 1):
        weights = [(1 - weight) * weight ** (k - 1 - j) for j in range(k)]
        out.append(sum(w * v for w, v in zip(weights, values[:k])) / sum(weights))
    return out


def test_ema_is_debiased_like_tensorboard():
    values = [2.3, 2.0, 1.0, 0.5, 0.3, 0.2, 0.1, 0.12, 0.08]
    for alpha in (0.1, 0.4, 1.0):
        assert summary.ema(values, alpha) == pytest.approx(tensorboard_smoothing(values, 1 - alpha))
    assert summary.ema(values, 0.1)[0] == 2.3  # no start-up bias: the first point is the first value
    assert summary.ema([0.5] * 30, 0.1) == pytest.approx([0.5] * 30)
    # a non-finite value is a gap, and later points average the finite ones only
    got = summary.ema([1.0, math.inf, 3.0], 0.5)
    assert got[0] == 1.0 and math.isnan(got[1]) and got[2] == pytest.approx(tensorboard_smoothing([1.0, 3.0], 0.5)[1])


def test_final_and_best_by_hand():
    # 20 rows: windows of 2. Last window (0.5, 0.7) -> 0.6; the best window (0.2, 0.4) -> 0.3
    loss = [2.0] * 10 + [0.2, 0.4] + [1.0] * 6 + [0.5, 0.7]
    assert summary.final_and_best(loss, lower_is_better=True) == (pytest.approx(0.6), pytest.approx(0.3))
    acc = [1 - v / 2 for v in loss]
    assert summary.final_and_best(acc, lower_is_better=False) == (pytest.approx(0.7), pytest.approx(0.85))
    # a short run (fewer than ten rows): one-row windows, best = the best row
    assert summary.final_and_best([2.3, 0.9, 1.1], True) == (1.1, 0.9)
    # a non-finite row is left out of its window's mean
    assert summary.final_and_best([1.0] * 18 + [0.5, math.inf], True) == (0.5, 0.5)


def test_best_is_never_worse_than_final_on_random_curves():
    rng = random.Random(0)
    for trial in range(300):
        n = rng.randint(1, 400)
        loss = [rng.choice([rng.uniform(0, 3), rng.uniform(0, 3), math.nan, math.inf]) if rng.random() < 0.05
                else rng.uniform(0, 3) for _ in range(n)]
        final, best = summary.final_and_best(loss, True)
        if math.isfinite(final):
            assert best <= final, (trial, n)
        final, best = summary.final_and_best([1 - v / 3 for v in loss], False)
        if math.isfinite(final):
            assert best >= final, (trial, n)


def _check_invariants(run):
    s = files.read_json(run / "summary.json")
    m, e = runio.read_csv(run / "metrics.csv"), runio.read_csv(run / "eval.csv")
    width = max(1, len(m) // 10)
    # the definitions, from the CSVs directly: batch figures from the logged batches, the others evaluated
    assert s["final_batch_loss"] == pytest.approx(sum(r["train_loss"] for r in m[-width:]) / width)
    assert s["final_batch_acc"] == pytest.approx(sum(r["train_acc"] for r in m[-width:]) / width)
    for split in ("test", "train"):
        assert s[f"final_{split}_loss"] == e[-1][f"{split}_loss"] and s[f"final_{split}_acc"] == e[-1][f"{split}_acc"]
        assert s[f"best_{split}_loss"] == min(r[f"{split}_loss"] for r in e)
        assert s[f"best_{split}_acc"] == max(r[f"{split}_acc"] for r in e)
    # the invariant
    assert s["best_batch_loss"] <= s["final_batch_loss"] and s["best_batch_acc"] >= s["final_batch_acc"]
    assert s["best_train_loss"] <= s["final_train_loss"] and s["best_train_acc"] >= s["final_train_acc"]
    assert s["best_test_loss"] <= s["final_test_loss"] and s["best_test_acc"] >= s["final_test_acc"]
    return s, m


@pytest.mark.parametrize("length", ["short", "long"])
def test_best_is_never_worse_than_final_on_real_runs(tmp_path, length):
    # short: 16 steps, 9 logged rows (one-row windows); long: 128 steps, every one logged (12-row windows)
    overrides = {"train.epochs": 2} if length == "short" else {"train.epochs": 16, "log.every": 1, "log.eval_every": 16}
    _, m = _check_invariants(train_in_process(tmp_path, length, overrides))
    assert len(m) == (9 if length == "short" else 128)


def test_steps_are_the_steps_taken(tmp_path):
    run = train_in_process(tmp_path, "done")
    s, meta = files.read_json(run / "summary.json"), files.read_json(run / "meta.json")
    assert s["steps"] == meta["steps_done"] == 16  # 2 epochs of 512 / 64
    assert s["steps_per_s"] == pytest.approx(16 / meta["train_seconds"])
    assert s["wall_s"] == meta["train_seconds"]

    div = train_in_process(tmp_path, "diverged", {"train.lr": 1e9})
    s = files.read_json(div / "summary.json")
    assert s["status"] == "diverged"
    # the bad step's update is never applied: the steps taken stop before it
    assert s["steps"] == files.read_json(div / "meta.json")["steps_done"] < s["diverged_at_step"]


def test_steps_of_an_interrupted_and_a_crashed_run():
    logged = [{"step": 560}]
    assert summary.steps_taken({"status": "interrupted", "steps_done": 566}, logged) == 566
    assert summary.steps_taken({"status": "diverged", "steps_done": 29}, [{"step": 30}]) == 29
    # a killed process wrote no steps_done (or an old one, from before a resume): the last logged step
    assert summary.steps_taken({"status": "crashed"}, logged) == 560
    assert summary.steps_taken({"status": "crashed", "steps_done": 100}, logged) == 560
    assert summary.steps_taken({}, []) == 0
    assert summary.steps_per_second(100, 4.0) == 25.0 and summary.steps_per_second(100, None) is None


@pytest.mark.parametrize("size", [None, 100])
def test_train_figures_are_the_training_data_evaluated_at_the_end(tmp_path, size):
    """The oracle: the final checkpoint evaluated by hand on the training split (or its fixed sample) gives
    eval.csv's last train row and summary.json's final train loss and accuracy."""
    import torch

    from skipexp.core import config, data
    from skipexp.core.metrics import evaluate
    from skipexp.core.models import SkipNet

    run = train_in_process(tmp_path, "t", {"log.train_eval_size": size, "train.epochs": 1})
    cfg = config.load(run / "config.yaml")
    splits = data.load(cfg.data)
    model = SkipNet(cfg.model, splits.input_dim, splits.num_classes)
    model.load_state_dict(torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"])
    x, y = data.train_sample(splits, size, cfg.data.seed)
    assert len(y) == (512 if size is None else 100)
    loss, acc = evaluate(model, x, y)
    last = runio.read_csv(run / "eval.csv")[-1]
    assert last["train_loss"] == pytest.approx(loss, rel=1e-6) and last["train_acc"] == acc
    s = files.read_json(run / "summary.json")
    assert (s["final_train_loss"], s["final_train_acc"], s["train_from"]) == (last["train_loss"], acc, "evaluation")
    batches = [r["train_loss"] for r in runio.read_csv(run / "metrics.csv")]
    assert s["final_batch_loss"] == summary.final_and_best(batches, True)[0]   # the logged batches, kept apart


def test_without_evaluated_training_data_train_figures_are_the_logged_batches(tmp_path):
    run = train_in_process(tmp_path, "b", {"log.train_eval_size": 0, "train.epochs": 1})
    assert runio.csv_columns(run / "eval.csv") == runio.EVAL_COLUMNS
    s = files.read_json(run / "summary.json")
    assert s["train_from"] == "batches" and s["final_train_loss"] == s["final_batch_loss"]
