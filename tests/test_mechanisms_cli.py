"""skipexp landscape / sharpness / jacobian / paths on run, comparison and sweep folders, through the CLI."""
import csv
import math
import shutil

import pytest
import torch
import yaml
from conftest import cli, write_config
from torch import nn

from skipexp.core import config as config_mod
from skipexp.core import data as data_mod
from skipexp.core.models import SkipNet
from skipexp.training.checkpoint import load_checkpoint_file


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


pytestmark = pytest.mark.xdist_group("mechanisms-cli")   # one worker trains the module fixture once


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """Plain against identity skips, two seeds each: runs/<member>-seed<N>/."""
    tmp = tmp_path_factory.mktemp("mech")
    plain = write_config(tmp / "plain.yaml", {"name": "plain", "model.skip.kind": "none"})
    skip = write_config(tmp / "skip.yaml", {"name": "skip"})
    cli("compare", plain, skip, "seed=[0,1]", "--out", tmp / "runs", check=0)
    (folder,) = (tmp / "runs").iterdir()
    return folder


def checkpoint_loss(run_dir, samples):
    """The trained model's loss on the first ``samples`` training examples, from the run's files alone."""
    cfg = config_mod.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    splits = data_mod.load(cfg.data)
    m = SkipNet(cfg.model, splits.input_dim, splits.num_classes)
    m.load_state_dict(load_checkpoint_file(run_dir / "checkpoints" / "last.pt")["model"])
    with torch.no_grad():
        return float(nn.functional.cross_entropy(m.eval()(splits.x_train[:samples]), splits.y_train[:samples]))


def test_landscape_of_a_comparison(comparison):
    r = cli("landscape", comparison, "--points", 5, "--samples", 100, check=0)
    assert "loss landscape (5 x 5" in r.stdout and "95 % confidence interval" in r.stdout
    members = sorted((comparison / "runs").iterdir())
    assert [m.name for m in members] == ["plain-seed0", "plain-seed1", "skip-seed0", "skip-seed1"]
    for run in members:
        grid = rows(run / "landscape.csv")
        assert len(grid) == 25
        origin = next(g for g in grid if float(g["a"]) == 0 and float(g["b"]) == 0)
        assert float(origin["loss"]) == pytest.approx(checkpoint_loss(run, 100), rel=1e-5)
        assert len(rows(run / "interpolation.csv")) == 41
    table = rows(comparison / "landscape.csv")
    assert [t["label"] for t in table] == ["plain"] * 2 + ["skip (identity skips)"] * 2
    seeds = rows(comparison / "landscape-seeds.csv")
    assert [(s["label"], s["seeds"]) for s in seeds] == [("plain", "2"), ("skip (identity skips)", "2")]
    vals = [float(t["loss_at_checkpoint"]) for t in table[2:]]
    mean, sd = sum(vals) / 2, abs(vals[0] - vals[1]) / math.sqrt(2)
    assert float(seeds[1]["loss_at_checkpoint_mean"]) == pytest.approx(mean)
    t = 12.7062047362   # Student's t quantile 0.975 at 1 degree of freedom
    assert float(seeds[1]["loss_at_checkpoint_ci_high"]) == pytest.approx(mean + t * sd / math.sqrt(2))
    assert (comparison / "plots" / "landscape.png").stat().st_size > 10_000


def test_the_line_from_init_starts_at_the_weights_training_drew(tmp_path):
    """A run whose steps change nothing (lr 1e-30): its checkpoint is its initial model, so the line from init
    is flat and equals the loss at the checkpoint, which only holds if init is drawn as training drew it."""
    cfg = write_config(tmp_path / "still.yaml", {"train.lr": 1e-30, "train.momentum": 0.0, "train.epochs": 1})
    cli("train", cfg, "--out", tmp_path / "runs", check=0)
    (run,) = (tmp_path / "runs").iterdir()
    cli("landscape", run, "--dims", 1, "--points", 3, "--samples", 50, check=0)
    line = rows(run / "interpolation.csv")
    at = {float(r["alpha"]): float(r["loss"]) for r in line}
    assert at[0.0] == pytest.approx(at[1.0], rel=1e-6) == pytest.approx(checkpoint_loss(run, 50), rel=1e-6)
    assert len(rows(run / "landscape.csv")) == 3
    assert (run / "plots" / "landscape.png").is_file()


def test_sharpness_of_one_run(comparison):
    run = comparison / "runs" / "skip-seed0"
    r = cli("sharpness", run, "--samples", 64, "--iterations", 6, "--probes", 4, check=0)
    assert "top eigenvalue, trained" in r.stdout
    got = rows(run / "hessian.csv")
    assert [g["state"] for g in got] == ["init", "trained"]
    assert int(got[1]["step"]) == load_checkpoint_file(run / "checkpoints" / "last.pt")["step"] > 0
    assert all(float(g["top_eigenvalue"]) >= float(g["bottom_eigenvalue"]) for g in got)
    assert (run / "plots" / "sharpness.png").is_file()
    assert not (comparison / "sharpness.csv").exists()   # a lone run has no folder table


def test_jacobian_and_paths_of_a_comparison_then_report_redraws_everything(comparison):
    r = cli("jacobian", comparison, "--samples", 4, check=0)
    assert "mean s², trained" in r.stdout
    r = cli("paths", comparison, "--samples", 16, "--sets", 3, check=0)
    table = {t["run"]: t for t in rows(comparison / "paths.csv")}
    assert float(table["plain-seed0"]["effective_mean_trained"]) == 4.0    # one path, through all 4 blocks
    assert 0 < float(table["skip-seed0"]["effective_mean_trained"]) < 4
    spec = rows(comparison / "runs" / "skip-seed1" / "jacobian.csv")
    assert [int(s["boundary"]) for s in spec] == [1, 2, 3, 4] * 2
    plots = comparison / "plots"
    for name in ("jacobian.png", "paths.png", "landscape.png"):
        (plots / name).unlink(missing_ok=True)
    (comparison / "paths-seeds.csv").unlink()
    cli("report", comparison, check=0)
    assert {"jacobian.png", "paths.png"} <= {p.name for p in plots.iterdir()}
    assert (comparison / "paths-seeds.csv").is_file()


def test_a_sweep_gets_a_row_per_point_its_seed_statistics_and_a_plot_against_each_key(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml", {"train.epochs": 1})
    # lr and seed are per-model values: the four points train as one group, in one process
    cli("sweep", cfg, "train.lr=0.02,0.05", "seed=0,1", "--name", "d", "--out", tmp_path, check=0)
    sweep = tmp_path / "sweep-d"
    r = cli("jacobian", sweep, "--samples", 3, check=0)
    assert "lr 0.02" in r.stdout and "lr 0.05" in r.stdout
    per_point = rows(sweep / "jacobian.csv")
    assert [(p["train.lr"], p["seed"]) for p in per_point] == [("0.02", "0"), ("0.02", "1"), ("0.05", "0"),
                                                                ("0.05", "1")]
    seeds = rows(sweep / "jacobian-seeds.csv")
    assert [(s["label"], s["seeds"], s["mean_s2_trained_n"]) for s in seeds] == [("lr 0.02", "2", "2"),
                                                                                  ("lr 0.05", "2", "2")]
    assert (sweep / "plots" / "jacobian-train.lr.png").is_file()
    assert (sweep / "plots" / "jacobian.png").is_file()


@pytest.mark.parametrize("args,message", [
    (("landscape", "{run}", "--points", "4"), "--points: must be odd"),
    (("landscape", "{run}", "--dims", "3"), "--dims: must be 1 or 2"),
    (("landscape", "{run}", "--span", "0"), "--span: must be > 0"),
    (("sharpness", "{run}", "--probes", "0"), "--probes: must be >= 1"),
    (("paths", "{missing}"), "no such folder"),
    (("jacobian", "{empty}"), "neither a run folder nor a folder of run folders"),
])
def test_bad_inputs_are_one_line_errors(comparison, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    where = {"run": comparison / "runs" / "skip-seed0", "missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    r = cli(*[a.format(**where) for a in args])
    assert r.returncode == 2
    assert message in r.stderr and r.stderr.count("\n") == 1


def test_a_run_without_a_checkpoint_says_so(tmp_path):
    cfg = write_config(tmp_path / "none.yaml", {"log.checkpoint": "none", "train.epochs": 1})
    cli("train", cfg, "--out", tmp_path / "runs", check=0)
    (run,) = (tmp_path / "runs").iterdir()
    r = cli("sharpness", run)
    assert r.returncode == 2 and "no checkpoints/last.pt to measure" in r.stderr
    assert not (run / "hessian.csv").exists()


def test_paths_refuses_gated_units_before_measuring_anything(comparison, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(comparison / "runs" / "skip-seed0", folder / "runs" / "skip")
    (folder / "runs" / "skip" / "paths.csv").unlink(missing_ok=True)   # from another test of the comparison
    gated = write_config(tmp_path / "gated.yaml", {"name": "gated", "model.skip.kind": "gated", "train.epochs": 1})
    cli("train", gated, "--run-dir", folder / "runs" / "gated", check=0)
    r = cli("paths", folder)
    assert r.returncode == 2 and "kind gated mixes them" in r.stderr
    assert not (folder / "runs" / "skip" / "paths.csv").exists()


def test_validate_theory_shows_the_jacobian_against_mean_field_theory(tiny_config):
    r = cli("validate", tiny_config, "model.init=kaiming", "model.width=32", "--theory", check=0)
    assert "singular values s of dh_i/dh_0 at init" in r.stdout
    line = next(x for x in r.stdout.splitlines() if "│       h4 │" in x)
    predicted, measured = (float(c) for c in line.split("│")[2:4])
    assert 0.3 < measured / predicted < 3   # width 32: the theory is approximate, but not off by orders


def test_sharpness_is_measured_at_the_first_evaluation_after_each_multiple_of_n_steps():
    from skipexp.training.sharpness import due

    evaluations = [8, 16, 24, 30]   # every 8 steps, and at the last step (30)
    assert [s for s in evaluations if due(s, 5, 8, 30)] == [8, 16, 24, 30]
    assert [s for s in evaluations if due(s, 20, 8, 30)] == [24, 30]
    assert [s for s in evaluations if due(s, 100, 8, 30)] == [30]


def test_a_run_that_logs_sharpness_trains_exactly_as_one_that_does_not(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml")   # 8 steps an epoch, 2 epochs, evaluated after each
    cli("train", cfg, "--out", tmp_path / "off", check=0)
    cli("train", cfg, "log.sharpness_every=5", "log.plots=true", "seed=[0,1]", "--out", tmp_path / "on", check=0)
    (off,) = (tmp_path / "off").iterdir()
    on = {d.name.rsplit("-", 1)[-1]: d for d in (tmp_path / "on").iterdir()}
    assert set(on) == {"seed0", "seed1"}   # two seeds, trained as one stack
    lone = tmp_path / "on-lone"
    cli("train", cfg, "log.sharpness_every=5", "--out", lone, check=0)
    (lone,) = lone.iterdir()
    for name in ("grad_norms.csv", "act_grad_norms.csv", "eval.csv"):
        assert (off / name).read_text() == (lone / name).read_text(), name
    strip = [line.split(",")[:-1] for line in (off / "metrics.csv").read_text().splitlines()]   # less elapsed_s
    assert strip == [line.split(",")[:-1] for line in (lone / "metrics.csv").read_text().splitlines()]
    for run in (lone, *on.values()):
        logged = rows(run / "sharpness.csv")
        assert [int(r["step"]) for r in logged] == [8, 16]
        assert all(float(r["top_eigenvalue"]) > 0 for r in logged)
    assert rows(on["seed0"] / "sharpness.csv") != rows(on["seed1"] / "sharpness.csv")
    assert (on["seed0"] / "plots" / "sharpness.png").is_file()
    assert not (off / "sharpness.csv").exists()
