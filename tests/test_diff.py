"""skipexp diff: runs, comparison members and sweep configurations side by side, with the seeds' statistics."""
import json

import pytest
from conftest import cli, write_config

from skipexp.core import stats
from skipexp.rundir import runio

pytestmark = pytest.mark.xdist_group("diff")   # one worker trains the module fixture once


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A comparison of plain and skip over seeds 0 and 1, and a sweep over kind x seed (one group)."""
    tmp = tmp_path_factory.mktemp("diff")
    out = tmp / "runs"
    plain = write_config(tmp / "plain.yaml", {"name": "plain", "model.skip.kind": "none"})
    skip = write_config(tmp / "skip.yaml", {"name": "skip", "train.lr": 0.1})
    cli("compare", plain, skip, "seed=[0,1]", "log.html=false", "--out", out, check=0)
    base = write_config(tmp / "base.yaml", {"log.html": False})
    cli("sweep", base, "model.skip.kind=none,identity", "seed=0,1", "--name", "t", "--out", out, "--list", check=0)
    cli("sweep", out / "sweep-t" / "sweep.yaml", "--group", "1", "--out", out, check=0)
    return next(out.glob("compare-*")), out / "sweep-t"


def as_json(*args) -> dict:
    return json.loads(cli("diff", *map(str, args), "--format", "json", check=0).stdout)


def summaries(*run_dirs):
    return [json.loads((d / "summary.json").read_text()) for d in run_dirs]


def test_two_members_over_seeds_get_welch_on_their_seeds(made):
    cdir, _ = made
    d = as_json(cdir / "plain", cdir / "skip")
    assert d["a"]["what"] == "comparison member plain (2 seeds)" and len(d["b"]["runs"]) == 2
    keys = {r["key"]: (r["a"], r["b"]) for r in d["config"]}
    assert keys == {"model.skip.kind": ("none", "identity"), "train.lr": (0.05, 0.1)}   # seeds are equal: not shown
    a = summaries(cdir / "runs/plain-seed0", cdir / "runs/plain-seed1")
    b = summaries(cdir / "runs/skip-seed0", cdir / "runs/skip-seed1")
    row = next(r for r in d["summary"] if r["field"] == "final_test_acc")
    xa, xb = [s["final_test_acc"] for s in a], [s["final_test_acc"] for s in b]
    assert row["a"] == stats.summarize(xa) and row["b"] == stats.summarize(xb)
    w = stats.welch(xb, xa)
    assert (row["diff"], row["ci_low"], row["ci_high"], row["p"]) == pytest.approx(
        (w["diff"], w["ci_low"], w["ci_high"], w["p"]))


def test_a_run_against_a_member_and_the_per_layer_ratios(made):
    cdir, _ = made
    run = cdir / "runs/plain-seed0"
    d = as_json(run, cdir / "skip")
    row = next(r for r in d["summary"] if r["field"] == "final_train_loss")
    own = summaries(run)[0]["final_train_loss"]
    b = summaries(cdir / "runs/skip-seed0", cdir / "runs/skip-seed1")
    group = stats.summarize([s["final_train_loss"] for s in b])
    assert row["diff"] == pytest.approx(group["mean"] - own) and row["p"] is None   # one run: no Welch
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((group["ci_low"] - own, group["ci_high"] - own))
    # weight gradients: each layer's norm over the head's at the last logged step, the mean over B's seeds
    last = runio.read_csv(run / "grad_norms.csv")[-1]
    layers = {x["layer"]: x for x in d["layers"]["weight"]}
    assert list(layers)[0] == "input" and list(layers)[-1] == "head"
    assert layers["blocks.1.fc2"]["a"] == pytest.approx(last["blocks.1.fc2"] / last["head"])
    seeds = [runio.read_csv(cdir / f"runs/skip-seed{s}/grad_norms.csv")[-1] for s in (0, 1)]
    want = sum(r["input"] / r["head"] for r in seeds) / 2
    assert layers["input"]["b"] == pytest.approx(want)
    assert layers["input"]["b_over_a"] == pytest.approx(want / layers["input"]["a"])
    assert len(d["layers"]["activation"]) == 5   # h0 .. h4


def test_sweep_configurations_and_folders_and_markdown(made):
    cdir, root = made
    d = as_json(root / "skip.kind=none", root / "skip.kind=identity")
    assert d["a"]["what"] == "sweep configuration skip.kind=none (2 seeds)"
    assert [r["key"] for r in d["config"]] == ["model.skip.kind"]
    every = as_json(root / "skip.kind=none,seed=0", root / "skip.kind=none,seed=1", "--all")   # two points
    assert {r["key"] for r in every["config"] if r["differs"]} == {"seed"} and len(every["config"]) > 40
    folders = as_json(cdir, cdir)
    assert [e["name"] for e in folders["entries"]] == ["plain", "skip"]
    assert all(e["final_test_acc"]["diff"] == 0 for e in folders["entries"])
    md = cli("diff", root / "skip.kind=none", root / "skip.kind=identity", "--format", "md", check=0).stdout
    assert md.startswith("# skipexp diff") and "| model.skip.kind | none | identity |" in md
    table = cli("diff", cdir / "plain", cdir / "skip", check=0).stdout
    assert "B − A" in table and "weight-gradient norm / head's" in table


@pytest.mark.parametrize("args, message", [
    (["{c}/plian", "{c}/skip"], "no member of the comparison named 'plian' (did you mean \"plain\"?)"),
    (["{c}", "{c}/skip"], "is a comparison folder and {c}/skip is one comparison member skip (2 seeds)"),
    (["{s}/skip.kind=none", "{s}/nowhere"], "no configuration of the sweep"),
    (["{c}/plain", "{c}/skip", "--format", "html"], "--format: must be one of table, md, json, got 'html'"),
    (["{c}/missing/deeper", "{c}/skip"], "no such run, comparison or sweep folder"),
])
def test_bad_sides_are_one_line_errors(made, args, message):
    cdir, root = made
    args = [a.format(c=cdir, s=root) for a in args]
    p = cli("diff", *args, check=2)
    assert p.stderr.startswith("error: ") and message.format(c=cdir) in p.stderr and len(p.stderr.splitlines()) == 1
