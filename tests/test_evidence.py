"""Choosing an axis per configuration on held-out data, and differences with their CIs (scipy as the oracle)."""
from __future__ import annotations

import csv

import pytest
import yaml
from conftest import cli, write_config

from skipexp.core.errors import SkipexpError
from skipexp.experiments.sweep import evidence
from skipexp.experiments.sweep.spec import load
from skipexp.rundir import files

GRID = {"model.depth": [2, 4, 8], "model.skip.kind": ["none", "identity"], "seed": [0, 1, 2]}


def point(depth, kind, seed, loss, acc, status="completed", params=100):
    return {"model.depth": depth, "model.skip.kind": kind, "seed": seed, "status": status, "params": params,
            "final_train_loss": loss, "final_test_acc": acc, "final_val_loss": loss + 0.1}


def configs(points, grid=GRID):
    from skipexp.experiments.sweep.results import configurations

    return configurations(points, grid)


def test_choose_picks_the_best_mean_and_never_a_configuration_that_lost_seeds():
    grid = {"train.lr": [0.01, 0.1, 1.0], "seed": [0, 1]}
    pts = [{"train.lr": 0.01, "seed": s, "status": "completed", "final_val_loss": 0.5} for s in (0, 1)]
    pts += [{"train.lr": 0.1, "seed": s, "status": "completed", "final_val_loss": 0.4 + s / 10} for s in (0, 1)]
    # the best healthy seed of all, but its other seed diverged: it is not chosen
    pts += [{"train.lr": 1.0, "seed": 0, "status": "completed", "final_val_loss": 0.1},
            {"train.lr": 1.0, "seed": 1, "status": "diverged", "final_val_loss": float("nan")}]
    sel = evidence.Selection("train.lr", "final_val_loss")
    assert evidence.choose(configs(pts, grid), sel) == [False, True, False]   # mean 0.45 beats 0.5
    acc = evidence.Selection("train.lr", "final_val_acc")
    for p in pts:
        p["final_val_acc"] = 1 - p["final_val_loss"]
    assert evidence.choose(configs(pts, grid), acc) == [False, True, False]   # an accuracy: the highest


def test_a_staged_choice_is_made_on_the_deciding_seeds_alone():
    grid = {"train.lr": [0.01, 0.1], "seed": [0, 1, 2]}
    # lr 0.1 is better on seed 0; lr 0.01 has its other seeds, which are excellent, but they must not decide
    pts = [{"train.lr": 0.01, "seed": s, "status": "completed", "final_val_loss": 0.5 if s == 0 else 0.01}
           for s in (0, 1, 2)]
    pts += [{"train.lr": 0.1, "seed": 0, "status": "completed", "final_val_loss": 0.4}]
    staged = evidence.Selection("train.lr", "final_val_loss", seeds=(0,))
    assert evidence.choose(configs(pts, grid), staged) == [False, True]
    assert evidence.choose(configs(pts, grid), evidence.Selection("train.lr", "final_val_loss")) == [True, False]


def test_differences_match_welch_from_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    pts = []
    for d, base in ((2, 0.4), (4, 0.5), (8, 0.9)):
        for s in range(3):
            pts.append(point(d, "none", s, base + 0.03 * s, 0.8 - base / 2 + 0.01 * s))
            pts.append(point(d, "identity", s, 0.35 + 0.02 * s * s, 0.82 + 0.004 * s, params=120))
    pts[-1]["status"] = "diverged"   # left out of its side, as in summary-seeds.csv
    rows = evidence.differences(configs(pts), GRID, {"model.skip.kind": "none"})
    assert {(r["model.depth"], r["against"]) for r in rows} == {(d, "skip.kind=none") for d in (2, 4, 8)}
    for r in rows:
        mine = [p[r["field"]] for p in pts if p["model.depth"] == r["model.depth"]
                and p["model.skip.kind"] == "identity" and p["status"] == "completed"]
        theirs = [p[r["field"]] for p in pts if p["model.depth"] == r["model.depth"] and p["model.skip.kind"] == "none"]
        ref = scipy_stats.ttest_ind(mine, theirs, equal_var=False)
        assert (r["n"], r["n_against"]) == (len(mine), len(theirs))
        assert r["p"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert r["ci_low"] == pytest.approx(ref.confidence_interval().low, rel=1e-9)
        assert (r["params"], r["params_against"]) == (120, 100)
    # no baseline: each depth against the one before it, kind by kind
    steps = evidence.differences(configs(pts), GRID, None, fields=("final_train_loss",))
    assert [(r["model.depth"], r["model.skip.kind"], r["against"]) for r in steps] == [
        (4, "none", "depth=2"), (4, "identity", "depth=2"), (8, "none", "depth=4"), (8, "identity", "depth=4")]


def test_categories_without_a_baseline_are_against_the_first():
    grid = {"shortcut": ["identity", "scaled", "plain"], "seed": [0, 1]}
    pts = [{"shortcut": c, "seed": s, "status": "completed", "final_train_loss": i + s / 10}
           for i, c in enumerate(grid["shortcut"]) for s in (0, 1)]
    rows = evidence.differences(configs(pts, grid), grid, None, fields=("final_train_loss",))
    assert [(r["shortcut"], r["against"], round(r["diff"], 9)) for r in rows] == [
        ("scaled", "shortcut=identity", 1.0), ("plain", "shortcut=identity", 2.0)]


@pytest.mark.parametrize("extra,key,words", [
    ({"select": {"key": "train.lr", "by": "final_val_loss"}}, "select.key", ["model.depth"]),
    ({"select": {"key": "model.depth", "by": "final_test_acc"}}, "select.by", ["never the test set"]),
    ({"select": "model.depth"}, "select", ["key", "by"]),
    ({"select": {"key": "model.depth", "by": "final_val_loss", "seeds": [7]}}, "select.seeds", ["not a swept seed"]),
    ({"select": {"key": "model.depth", "by": "final_val_loss", "seeds": [0, 1, 2]}}, "select.seeds", ["not all"]),
    ({"select": {"key": "model.depth", "by": "final_val_loss", "seeds": 0}}, "select.seeds", ["a list"]),
    ({"baseline": {"model.skip.kind": "dense"}}, "baseline.model.skip.kind", ["none, identity"]),
    ({"baseline": {"seed": 0}}, "baseline.seed", ["seed"]),
])
def test_bad_select_and_baseline_name_their_key(tmp_path, extra, key, words):
    write_config(tmp_path / "tiny.yaml")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "s", "base": "tiny.yaml", "grid": GRID, **extra}))
    with pytest.raises(SkipexpError) as e:
        load(tmp_path / "s.yaml")
    assert e.value.key == key and all(w in e.value.message for w in words), e.value


def test_a_sweep_chooses_lr_per_configuration_on_validation_and_reports_it(tmp_path):
    write_config(tmp_path / "tiny.yaml", {"train.epochs": 1, "data.val_size": 128})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "name": "s", "base": "tiny.yaml",
        "grid": {"model.skip.kind": ["none", "identity"], "train.lr": [0.01, 0.2], "seed": [0, 1]},
        "select": {"key": "train.lr", "by": "final_val_loss"}, "baseline": {"model.skip.kind": "none"}}))
    out = cli("sweep", tmp_path / "s.yaml", "--out", tmp_path / "runs", check=0).stdout
    root = tmp_path / "runs" / "sweep-s"
    with open(root / files.SUMMARY_SEEDS_CSV) as f:
        agg = list(csv.DictReader(f))
    for kind in ("none", "identity"):
        mine = [r for r in agg if r["model.skip.kind"] == kind]
        best = min(mine, key=lambda r: float(r["final_val_loss_mean"]))
        assert [r["selected"] for r in mine] == [str(r is best) for r in mine]
    with open(root / files.DIFFERENCES_CSV) as f:
        diffs = list(csv.DictReader(f))
    assert {d["against"] for d in diffs} == {"skip.kind=none"} and {d["model.skip.kind"] for d in diffs} == {"identity"}
    assert "2 chosen of 4 configurations" in out and "chosen on final_val_loss" in out
    assert "differences against model.skip.kind=none" in out and "fewer than 5 seeds" in out
    assert (root / files.SWEEP_FILE).read_text().count("final_val_loss") == 1   # the folder keeps its selection
    assert cli("report", root, check=0).stdout.count("chosen on final_val_loss") == 1
    # a lesion study of the sweep takes its chosen points only, and --where narrows them to a configuration
    cli("lesion", root, "--where", "skip.kind=identity", check=0)
    lesioned = sorted(d.name for d in root.iterdir() if (d / files.LESION_CSV).is_file())
    lr = next(r["train.lr"] for r in agg if r["model.skip.kind"] == "identity" and r["selected"] == "True")
    assert lesioned == [f"skip.kind=identity,seed={s},train.lr={lr}" for s in (0, 1)]   # the file sorted its keys


def test_a_staged_selection_trains_the_other_seeds_at_the_chosen_values_only(tmp_path):
    write_config(tmp_path / "tiny.yaml", {"train.epochs": 1, "data.val_size": 128})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "name": "s", "base": "tiny.yaml",
        "grid": {"model.skip.kind": ["none", "identity"], "train.lr": [0.01, 0.2], "seed": [0, 1, 2]},
        "select": {"key": "train.lr", "by": "final_val_loss", "seeds": [0]}}))
    root = tmp_path / "runs" / "sweep-s"
    # one group holds every point; run alone before the choice is made, it trains the deciding seed's only
    first = cli("sweep", tmp_path / "s.yaml", "--out", tmp_path / "runs", "--group", "1", check=0)
    assert "8 point(s) not trained now" in first.stderr
    assert sorted(d.name for d in root.iterdir() if (d / files.SUMMARY).is_file()) == sorted(
        f"skip.kind={k},seed=0,train.lr={lr}" for k in ("none", "identity") for lr in (0.01, 0.2))
    listed = cli("sweep", tmp_path / "s.yaml", "--out", tmp_path / "runs", "--list", check=0).stdout
    assert "(8 points)" in listed and listed.count("seed=1") == listed.count("seed=2") == 2   # the chosen lr's
    cli("sweep", tmp_path / "s.yaml", "--out", tmp_path / "runs", check=0)
    with open(root / files.SUMMARY_CSV) as f:
        rows = list(csv.DictReader(f))
    with open(root / files.SUMMARY_SEEDS_CSV) as f:
        agg = list(csv.DictReader(f))
    for kind in ("none", "identity"):
        seed0 = {r["train.lr"]: float(r["final_val_loss"]) for r in rows
                 if r["model.skip.kind"] == kind and r["seed"] == "0"}
        lr = min(seed0, key=seed0.get)   # the choice is the seed-0 winner
        for r in rows:
            if r["model.skip.kind"] == kind and r["seed"] != "0":
                assert r["status"] == ("completed" if r["train.lr"] == lr else "not chosen"), r
        assert {(r["train.lr"], r["selected"], r["seeds"]) for r in agg if r["model.skip.kind"] == kind} == {
            (lr, "True", "3"), ({"0.01", "0.2"}.difference({lr}).pop(), "False", "1")}
    cli("sweep", tmp_path / "s.yaml", "--out", tmp_path / "runs", check=0)   # again: nothing left to train
    assert len([d for d in root.iterdir() if (d / files.SUMMARY).is_file()]) == 8
    # the measurements (landscape, sharpness, jacobian, paths) take the chosen points, as the tables do
    from skipexp.science.members import folder

    measured = folder(root)
    assert sorted(m.run_dir.name for m in measured.members) == sorted(
        r["point"] for r in rows if r["status"] == "completed" and (r["seed"] != "0" or any(
            q["train.lr"] == r["train.lr"] and q["model.skip.kind"] == r["model.skip.kind"] and q["seed"] == "1"
            and q["status"] == "completed" for q in rows)))
    assert len(measured.members) == 6 and "train.lr" not in measured.grid
