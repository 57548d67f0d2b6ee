"""TensorBoard events, read back with TensorBoard's own reader and checked against the run's CSVs:
written while a run trains, once per step across a resume, the same from a live run as from an export,
named by their run folders, in few sections."""
from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, cli, train_one, write_config

from skipexp.core import config
from skipexp.rundir import files, runio
from skipexp.training import fit
from skipexp.views.run_views import RunViews
from skipexp.views.tensorboard import event_files, export_run

needs_tb = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                              reason="tensorboard is not installed (pip install 'skipexp[tensorboard]')")
SECTIONS = {"train", "test", "grad_norm", "act_grad_norm", "act_rms", "config"}


def read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # size_guidance 0 = keep every event (the default samples scalars down to 10,000, histograms to 500)
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    return ea


def everything(ea) -> dict:
    """Every tag's (step, value) series: scalars, histograms by their numbers and buckets, text by its string."""
    tags = ea.Tags()
    out = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in tags["scalars"]}
    for t in tags["histograms"]:
        out[t] = [(h.step, (h.histogram_value.num, h.histogram_value.min, h.histogram_value.max,
                            h.histogram_value.sum, tuple(h.histogram_value.bucket_limit),
                            tuple(h.histogram_value.bucket))) for h in ea.Histograms(t)]
    for t in tags["tensors"]:
        out[t] = [(e.step, e.tensor_proto.string_val[:]) for e in ea.Tensors(t)]
    return out


def assert_series(ea, tag, rows, column):
    got = [(e.step, e.value) for e in ea.Scalars(tag)] if tag in ea.Tags()["scalars"] else []
    want = [(int(r["step"]), r[column]) for r in rows]
    assert [s for s, _ in got] == [s for s, _ in want], tag
    for (_, g), (_, w) in zip(got, want):  # events hold float32
        assert math.isclose(g, w, rel_tol=1e-6, abs_tol=1e-12), (tag, g, w)


def assert_events_hold_the_csvs(ea, run_dir):
    metrics, evals = runio.read_csv(run_dir / "metrics.csv"), runio.read_csv(run_dir / "eval.csv")
    for column, tag in (("train_loss", "train/loss"), ("train_acc", "train/acc"), ("lr", "train/lr"),
                        ("grad_norm_total", "train/grad_norm_total")):
        assert_series(ea, tag, metrics, column)
    assert_series(ea, "test/loss", evals, "test_loss")
    assert_series(ea, "test/acc", evals, "test_acc")
    for name, group in (("grad_norms.csv", "grad_norm"), ("act_grad_norms.csv", "act_grad_norm"),
                        ("act_norms.csv", "act_rms")):
        rows = runio.read_csv(run_dir / name)
        for column in runio.csv_columns(run_dir / name)[1:]:
            assert_series(ea, f"{group}/{column}", rows, column)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list:
    """Two runs (seeds 0 and 1, one command, trained stacked) with log.tensorboard: true."""
    tmp = tmp_path_factory.mktemp("tb")
    cfg = write_config(tmp / "tb.yaml", {"log.tensorboard": True, "model.depth": 3, "log.plots": False})
    cli("train", cfg, "seed=[0, 1]", "--out", tmp / "runs", check=0)
    runs = sorted(d for d in (tmp / "runs").iterdir() if runio.is_run_dir(d))
    assert len(runs) == 2 and files.read_json(runs[0] / "meta.json")["vectorized"] is True
    return runs


@needs_tb
def test_each_stacked_model_writes_its_own_events_into_its_run_folder(two_runs):
    for run_dir in two_runs:
        assert [p.parent for p in event_files(run_dir)] == [run_dir]
        ea = read_events(run_dir)
        assert len(runio.read_csv(run_dir / "metrics.csv")) > 3 and len(runio.read_csv(run_dir / "eval.csv")) == 2
        assert_events_hold_the_csvs(ea, run_dir)
    assert everything(read_events(two_runs[0]))["train/loss"] != everything(read_events(two_runs[1]))["train/loss"]

    run_dir = two_runs[0]
    ea = read_events(run_dir)
    layers = runio.csv_columns(run_dir / "grad_norms.csv")[1:]
    assert layers == ["input"] + [f"blocks.{i}.fc{j}" for i in range(3) for j in (1, 2)] + ["head"]
    # the histogram at each step is over layers: one value per layer, log10 of its norm
    grads = runio.read_csv(run_dir / "grad_norms.csv")
    hist = ea.Histograms("grad_norm/log10_over_layers")
    assert [h.step for h in hist] == [int(r["step"]) for r in grads]
    first = hist[0].histogram_value
    assert first.num == len(layers)
    assert math.isclose(first.min, min(math.log10(grads[0][c]) for c in layers), rel_tol=1e-6)
    assert math.isclose(first.max, max(math.log10(grads[0][c]) for c in layers), rel_tol=1e-6)
    assert ea.Tags()["tensors"] == ["config/text_summary"]


@needs_tb
def test_tags_fold_into_a_few_sections(two_runs):
    run_dir = two_runs[0]
    tags = everything(read_events(run_dir))
    layers = runio.csv_columns(run_dir / "grad_norms.csv")[1:]
    boundaries = runio.csv_columns(run_dir / "act_norms.csv")[1:]
    # train/* (and the evaluated training data: eval_loss, eval_acc), test/*, per layer and boundary, histograms, config
    assert len(tags) == 4 + 2 + 2 + len(layers) + 2 * len(boundaries) + 2 + 1
    assert {t.split("/")[0] for t in tags} == SECTIONS


@needs_tb
def test_tensorboard_names_each_run_by_its_folder(two_runs):
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    out = two_runs[0].parent
    runs = EventMultiplexer().AddRunsFromDirectory(str(out)).Runs()
    assert sorted(runs) == sorted(d.name for d in two_runs)


@needs_tb
def test_events_are_written_while_the_run_trains(tmp_path):
    cfg = config.load(write_config(tmp_path / "c.yaml", {"log.tensorboard": True, "log.plots": False}))
    run_dir = fit.create_run(cfg, tmp_path / "runs")
    seen = []

    class Checks(fit.Reporter):
        def on_log(self, row):  # every row of this log step is on disk: the events must hold them too
            step = int(row["step"])
            if step in (2, 8, 14):
                assert files.read_json(run_dir / "meta.json")["status"] == "running"
                assert_events_hold_the_csvs(read_events(run_dir), run_dir)
                assert runio.read_csv(run_dir / "metrics.csv")[-1]["step"] == step
                seen.append(step)

    assert train_one(cfg, run_dir, reporter=Checks()).status == "completed"
    assert seen == [2, 8, 14]
    assert len(event_files(run_dir)) == 1  # the live events are the run's events: no export at the end
    assert_events_hold_the_csvs(read_events(run_dir), run_dir)


@needs_tb
def test_a_resumed_run_appends_events_and_has_each_step_once(tmp_path):
    cfg = config.load(write_config(tmp_path / "c.yaml", {"log.tensorboard": True, "log.plots": False}))
    run_dir = fit.create_run(cfg, tmp_path / "runs")
    steps = []

    def dies_at_step_11() -> bool:  # after the checkpoint at step 8 and the rows of step 10: as a kill
        steps.append(None)
        if len(steps) == 11:
            raise KeyboardInterrupt
        return False

    with pytest.raises(KeyboardInterrupt):
        train_one(cfg, run_dir, should_stop=dies_at_step_11)
    assert runio.read_csv(run_dir / "metrics.csv")[-1]["step"] == 10
    assert max(s for s, _ in everything(read_events(run_dir))["train/loss"]) == 10
    assert fit.resume(run_dir, views=RunViews(plots=False)).status == "completed"
    resumed = files.read_json(run_dir / "meta.json")["resumes"][0]
    assert resumed["from_step"] == 8 and resumed["rows_rolled_back"] == 4   # step 10 of the four log files

    assert len(event_files(run_dir)) == 2
    ea = read_events(run_dir)
    for tag, series in everything(ea).items():
        steps_of = [s for s, _ in series]
        assert steps_of == sorted(set(steps_of)), tag  # each step once, in order
    assert_events_hold_the_csvs(ea, run_dir)


@needs_tb
def test_an_export_holds_the_same_tags_and_values_as_the_live_events(two_runs, tmp_path):
    run_dir = shutil.copytree(two_runs[1], tmp_path / "run")
    live = everything(read_events(run_dir))
    assert export_run(run_dir) == run_dir
    assert len(event_files(run_dir)) == 1  # the export replaced the live events
    assert everything(read_events(run_dir)) == live


@needs_tb
def test_tensorboard_command_exports_every_run_below_a_folder_and_replaces_old_events(two_runs, tmp_path):
    out = shutil.copytree(two_runs[0].parent, tmp_path / "runs")
    runs = [out / d.name for d in two_runs]
    # a folder exported before events went into the run folder itself: events in <run>/tensorboard/
    old = runs[0] / "tensorboard"
    old.mkdir()
    event_files(runs[0])[0].rename(old / event_files(runs[0])[0].name)
    p = cli("tensorboard", out, check=0)
    assert p.stdout.split() == [str(d) for d in runs]
    assert not old.exists()
    for d in runs:
        assert [f.parent for f in event_files(d)] == [d]
        assert_events_hold_the_csvs(read_events(d), d)


@needs_tb
def test_the_tensorboard_command_it_suggests_is_one_that_runs_here(two_runs, tmp_path):
    """`make` puts tensorboard in .venv/bin, which is not on PATH: the hint and the docs name that one."""
    p = cli("tensorboard", two_runs[0], check=0)
    command = re.search(r"view with: (\S+) --logdir ", p.stderr).group(1)
    found = shutil.which(command) or (Path(command).is_file() and os.access(command, os.X_OK))
    assert found, f"{command} is no command here"
    if (Path(sys.executable).parent / "tensorboard").is_file() and shutil.which("tensorboard") is None:
        assert Path(command).resolve() == (Path(sys.executable).parent / "tensorboard").resolve()
    assert subprocess.run([shutil.which(command) or command, "--helpfull"], capture_output=True,
                          timeout=120).returncode == 0
    for doc in (REPO / "README.md", REPO / "docs" / "tensorboard.md"):
        assert not re.search(r"^tensorboard --logdir", doc.read_text(), re.M), f"{doc.name} assumes PATH"
        assert ".venv/bin/tensorboard --logdir" in doc.read_text()


def test_tensorboard_command_on_a_folder_without_runs_is_bad_input(tmp_path):
    p = cli("tensorboard", tmp_path, check=2)
    assert p.stderr.strip() == f"error: {tmp_path}: holds no skipexp run folders"


def test_log_tensorboard_without_the_package_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as where it is not installed
    with pytest.raises(config.SkipexpError) as e:
        config.load(write_config(tmp_path / "c.yaml", {"log.tensorboard": True}))
    assert e.value.key == "log.tensorboard" and "pip install 'skipexp[tensorboard]'" in str(e.value)


def test_a_run_without_log_tensorboard_never_imports_it(tmp_path, monkeypatch):
    cfg = config.load(write_config(tmp_path / "c.yaml", {"log.plots": False}))
    for name in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)  # any import of either now fails
    assert train_one(cfg, fit.create_run(cfg, tmp_path / "runs")).status == "completed"
    assert event_files(next((tmp_path / "runs").iterdir())) == []


@needs_tb
def test_histograms_over_the_buckets_around_the_values_equal_those_over_all_buckets(tmp_path):
    import numpy as np
    from torch.utils.tensorboard import summary

    from skipexp.views.tensorboard import _EventFile, _tensorflow_bins

    writer, every = _EventFile(tmp_path), np.array(_tensorflow_bins())
    rng = np.random.default_rng(0)
    for trial in range(400):
        k = int(rng.integers(1, 30))
        values = [rng.normal(0, 3, k), rng.choice(every[700:900], k),  # values on bucket edges, around 0
                  np.full(k, rng.normal()), rng.uniform(-40, 40, k), every[:k], every[-k:]][trial % 6]
        # the oracle: SummaryWriter.add_histogram's default, all 1549 TensorFlow buckets
        assert summary.histogram("t", values, writer._bins_around(list(values))) == \
            summary.histogram("t", values, every), list(values)
    writer.close()
