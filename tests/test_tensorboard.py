"""TensorBoard export, read back with TensorBoard's own reader and checked against the run's CSVs."""
from __future__ import annotations

import importlib.util
import math
import sys

import pytest
from conftest import cli, write_config

from skipexp.core import config
from skipexp.rundir import runio
from skipexp.views.tensorboard import export_run

needs_tb = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                reason="tensorboard is not installed (pip install 'skipexp[tensorboard]')")


def read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # size_guidance 0 = keep every event (the default samples scalars down to 10,000, histograms to 500)
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    return ea


def assert_series(ea, tag, rows, column):
    got = [(e.step, e.value) for e in ea.Scalars(tag)]
    want = [(int(r["step"]), r[column]) for r in rows]
    assert [s for s, _ in got] == [s for s, _ in want], tag
    for (_, g), (_, w) in zip(got, want):  # events hold float32
        assert math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-12), (tag, g, w)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list:
    """Two runs (seeds 0 and 1, one command) trained with log.tensorboard: true."""
    tmp = tmp_path_factory.mktemp("tb")
    cfg = write_config(tmp / "tb.yaml", {"log.tensorboard": True, "model.depth": 3, "log.plots": False})
    cli("train", cfg, "seed=[0, 1]", "--out", tmp / "runs", check=0)
    runs = sorted(d for d in (tmp / "runs").iterdir() if runio.is_run_dir(d))
    assert len(runs) == 2
    return runs


@needs_tb
def test_log_tensorboard_writes_events_that_hold_the_logged_values(two_runs):
    run_dir = two_runs[0]
    ea = read_events(run_dir / "tensorboard")

    metrics, evals = runio.read_csv(run_dir / "metrics.csv"), runio.read_csv(run_dir / "eval.csv")
    assert len(metrics) > 3 and len(evals) == 2
    for column, tag in (("train_loss", "train/loss"), ("train_acc", "train/acc"), ("lr", "train/lr"),
                        ("grad_norm_total", "train/grad_norm_total")):
        assert_series(ea, tag, metrics, column)
    assert_series(ea, "test/loss", evals, "test_loss")
    assert_series(ea, "test/acc", evals, "test_acc")

    layers = runio.csv_columns(run_dir / "grad_norms.csv")[1:]
    assert layers == ["input"] + [f"blocks.{i}.fc{j}" for i in range(3) for j in (1, 2)] + ["head"]
    grads = runio.read_csv(run_dir / "grad_norms.csv")
    for layer in layers:
        assert_series(ea, f"grad_norm/{layer}", grads, layer)
    act_grads, act = runio.read_csv(run_dir / "act_grad_norms.csv"), runio.read_csv(run_dir / "act_norms.csv")
    for i in range(4):
        assert_series(ea, f"act_grad_norm/h{i}", act_grads, f"h{i}")
        assert_series(ea, f"act_rms/h{i}", act, f"h{i}")

    # the histogram at each step is over layers: one value per layer, log10 of its norm
    hist = ea.Histograms("grad_norm_log10")
    assert [h.step for h in hist] == [int(r["step"]) for r in grads]
    first = hist[0].histogram_value
    assert first.num == len(layers)
    assert math.isclose(first.min, min(math.log10(grads[0][c]) for c in layers), rel_tol=1e-6)
    assert math.isclose(first.max, max(math.log10(grads[0][c]) for c in layers), rel_tol=1e-6)
    assert "config" in "".join(ea.Tags()["tensors"])


@needs_tb
def test_tensorboard_command_exports_every_run_below_a_folder_and_replaces_old_events(two_runs):
    out = two_runs[0].parent
    p = cli("tensorboard", out, check=0)  # the second export of each run: it replaces the first
    assert p.stdout.split() == [str(d / "tensorboard") for d in two_runs]
    for d in two_runs:
        assert len(list((d / "tensorboard").glob("events.out.tfevents.*"))) == 1
        assert_series(read_events(d / "tensorboard"), "train/loss", runio.read_csv(d / "metrics.csv"), "train_loss")
    assert export_run(two_runs[1]) == two_runs[1] / "tensorboard"  # the function, as `report` calls it


def test_tensorboard_command_on_a_folder_without_runs_is_bad_input(tmp_path):
    p = cli("tensorboard", tmp_path, check=2)
    assert p.stderr.strip() == f"error: {tmp_path}: holds no skipexp run folders"


def test_log_tensorboard_without_the_package_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as where it is not installed
    with pytest.raises(config.SkipexpError) as e:
        config.load(write_config(tmp_path / "c.yaml", {"log.tensorboard": True}))
    assert e.value.key == "log.tensorboard" and "pip install 'skipexp[tensorboard]'" in str(e.value)
