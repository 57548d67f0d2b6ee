"""skipexp compare: members on the same batches, the side-by-side table, the folder on disk."""
import json
import re

import pytest
from conftest import assert_same_numbers, cli, write_config

from skipexp.experiments import compare
from skipexp.rundir import runio


def _only_dir(parent, prefix):
    found = [p for p in parent.iterdir() if p.name.startswith(prefix)]
    assert len(found) == 1, found
    return found[0]


def test_identical_configs_see_identical_batches(tmp_path, tiny_config):
    out = tmp_path / "runs"
    p = cli("compare", tiny_config, tiny_config, "train.epochs=1", "--out", out, check=0)
    cdir = _only_dir(out, "compare-")
    assert p.stdout.strip().splitlines()[-1].endswith(cdir.name)
    assert "only the model differs" in p.stdout and "tiny-2" in p.stdout
    for f in ["summary.json", "summary.md", "plots/loss.png", "plots/grad_norms.png", "plots/grad_heatmap.png",
              "runs/tiny/metrics.csv", "runs/tiny-2/metrics.csv"]:
        assert (cdir / f).is_file(), f
    # the oracle for "same data, same seed, same batch order": two copies of one config train identically
    a = runio.read_csv(cdir / "runs/tiny/metrics.csv")
    b = runio.read_csv(cdir / "runs/tiny-2/metrics.csv")
    assert len(a) == len(b) == 5
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    s = json.loads((cdir / "summary.json").read_text())
    assert [m["name"] for m in s["members"]] == ["tiny", "tiny-2"]
    assert [m["summary"]["status"] for m in s["members"]] == ["completed", "completed"]
    assert s["differences"] == {} and s["unfair"] == []
    assert "| train loss final / best |" in (cdir / "summary.md").read_text()

    # report rebuilds the table and the plots from disk alone
    (cdir / "summary.md").unlink()
    (cdir / "plots" / "loss.png").unlink()
    p = cli("report", cdir, check=0)
    assert "tiny-2" in p.stdout and (cdir / "summary.md").is_file() and (cdir / "plots" / "loss.png").is_file()


def test_a_members_own_plots_follow_its_log_plots_as_a_trains_do(tmp_path):
    drawn = write_config(tmp_path / "drawn.yaml", {"log.plots": True, "train.epochs": 1})
    quiet = write_config(tmp_path / "quiet.yaml", {"log.plots": False, "train.epochs": 1, "model.depth": 2})
    cli("compare", drawn, quiet, "--out", tmp_path / "runs", check=0)
    cdir = _only_dir(tmp_path / "runs", "compare-")
    assert (cdir / "runs/tiny/plots/loss.png").is_file() and (cdir / "runs/tiny/plots/grad_norms.png").is_file()
    assert not (cdir / "runs/tiny-2/plots").exists() or not any((cdir / "runs/tiny-2/plots").iterdir())
    assert (cdir / "plots/loss.png").is_file()   # the comparison's own plots are drawn either way


def test_table_says_when_more_than_the_model_differs(tmp_path):
    a = write_config(tmp_path / "a.yaml", {"name": "plain", "model.skip.kind": "none"})
    b = write_config(tmp_path / "b.yaml", {"name": "skip", "train.lr": 0.01})
    members = compare.plan([a, b], ["model.depth=6"])
    assert [m.cfg.model.depth for m in members] == [6, 6]  # overrides apply to every config
    diffs = compare.differences({m.name: m.cfg.to_dict() for m in members})
    assert diffs == {"model.skip.kind": {"plain": "none", "skip": "identity"},
                     "train.lr": {"plain": 0.05, "skip": 0.01}}
    s = {"members": [{"name": m.name, "config": m.source, "summary": {"status": "completed"}} for m in members],
         "differences": diffs, "unfair": ["train.lr"]}
    names, rows, caption = compare.table(s)
    assert names == ["plain", "skip"]
    assert ("⚠ train.lr", ["0.05", "0.01"]) in rows and ("model.skip.kind", ["none", "identity"]) in rows
    assert "train.lr" in caption and "not only the model" in caption
    assert "⚠ train.lr" in compare.markdown(s)


def test_bad_input_is_one_line_and_leaves_no_folder(tmp_path, tiny_config):
    out = tmp_path / "runs"
    p = cli("compare", tiny_config, "--out", out, check=2)
    assert p.stderr.strip().count("\n") == 0 and "at least two config files" in p.stderr
    p = cli("compare", tiny_config, tiny_config, "model.depth=0", "--out", out, check=2)
    assert p.stderr.strip() == f"error: {tiny_config}: model.depth: must be > 0, got 0"
    assert not out.exists() or not any(out.iterdir())


def test_several_seeds_train_per_member_and_report_the_mean(tmp_path, tiny_config):
    out = tmp_path / "runs"
    p = cli("compare", tiny_config, tiny_config, "train.epochs=1", "seed=[0,1]", "--out", out, check=0)
    cdir = _only_dir(out, "compare-")
    assert "seeds (mean below)" in p.stdout and "seed min – max" in p.stdout
    runs = cdir / "runs"
    assert sorted(d.name for d in runs.iterdir()) == ["tiny-2-seed0", "tiny-2-seed1", "tiny-seed0", "tiny-seed1"]
    assert all(runio.is_run_dir(d) for d in runs.iterdir())
    first = {d.name: runio.read_csv(d / "metrics.csv")[0]["train_loss"] for d in runs.iterdir()}
    # seed k of every member: same init and same batches, so the same first loss; another seed differs
    assert first["tiny-seed0"] == first["tiny-2-seed0"] and first["tiny-seed1"] == first["tiny-2-seed1"]
    assert first["tiny-seed0"] != first["tiny-seed1"]

    s = json.loads((cdir / "summary.json").read_text())
    assert [m["seeds"] for m in s["members"]] == [[0, 1], [0, 1]]
    assert s["differences"] == {} and s["unfair"] == []
    for m in s["members"]:
        per_seed = [json.loads((cdir / r / "summary.json").read_text()) for r in m["runs"]]
        for f in ("final_train_loss", "final_test_acc", "grad_ratio_first_last_end"):
            vals = [x[f] for x in per_seed]
            assert abs(m["summary"][f] - sum(vals) / 2) < 1e-12, f
            assert m["summary"]["spread"][f] == [min(vals), max(vals)]
        assert m["summary"]["status"] == "completed" and m["summary"]["seeds"] == 2
    for f in ["summary.md", "plots/loss.png", "plots/grad_norms.png", "plots/grad_heatmap.png"]:
        assert (cdir / f).is_file(), f

    (cdir / "summary.md").unlink()
    (cdir / "plots" / "grad_norms.png").unlink()
    p = cli("report", cdir, check=0)
    assert "tiny-2" in p.stdout and "seed min – max" in p.stdout
    assert (cdir / "summary.md").is_file() and (cdir / "plots" / "grad_norms.png").is_file()


def test_members_must_list_the_same_seeds(tmp_path):
    a = write_config(tmp_path / "a.yaml", {"seed": [0, 1]})
    b = write_config(tmp_path / "b.yaml", {"seed": [0, 2]})
    c = write_config(tmp_path / "c.yaml", {"seed": 3})
    members = compare.plan([a, a], [])
    assert [m.cfg.seeds for m in members] == [[0, 1], [0, 1]]
    assert [m.cfg.seeds for m in compare.plan([c, write_config(tmp_path / "d.yaml")], [])] == [[3], [0]]
    out = tmp_path / "runs"
    p = cli("compare", a, b, "--out", out, check=2)
    assert p.stderr.strip().startswith(f"error: {b}: seed: every config must list the same seeds")
    p = cli("compare", c, a, "--out", out, check=2)
    assert p.stderr.strip().startswith(f"error: {a}: seed:")
    assert not out.exists() or not any(out.iterdir())


def test_members_that_stack_train_together_and_equal_their_lone_runs(tmp_path):
    # the demo's shape: none beside identity, one with its own lr and seeds; one stack of four models
    plain = write_config(tmp_path / "plain.yaml", {"name": "plain", "model.skip.kind": "none"})
    skip = write_config(tmp_path / "skip.yaml", {"name": "skip", "train.lr": 0.1})
    out = tmp_path / "runs"
    p = cli("compare", plain, skip, "seed=[0,1]", "--out", out, check=0)
    assert "plain ×2 seeds + skip ×2 seeds" in p.stderr  # one bar for the group, named by its members
    cdir = _only_dir(out, "compare-")
    names = ["plain-seed0", "plain-seed1", "skip-seed0", "skip-seed1"]
    for n in names:
        meta = json.loads((cdir / "runs" / n / "meta.json").read_text())
        assert meta["status"] == "completed" and meta["vectorized"] is True
        assert meta["trained_with"] == names
    # the oracle: each member's seed trained alone by `skipexp train`
    for cfg, n in ((plain, "plain"), (skip, "skip")):
        for seed in (0, 1):
            lone = tmp_path / "lone" / f"{n}-{seed}"
            cli("train", cfg, f"seed={seed}", "--run-dir", lone, check=0)
            assert json.loads((lone / "meta.json").read_text()).get("trained_with") is None
            assert_same_numbers(cdir / "runs" / f"{n}-seed{seed}", lone)


def test_members_that_cannot_stack_train_in_their_own_groups(tmp_path):
    a = write_config(tmp_path / "a.yaml", {"name": "narrow"})
    b = write_config(tmp_path / "b.yaml", {"name": "wide", "model.width": 24})
    c = write_config(tmp_path / "c.yaml", {"name": "plain", "model.skip.kind": "none", "seed": 3})
    gs = compare.groups(compare.plan([a, b, c], []))
    assert [g.label for g in gs] == ["narrow + plain", "wide"]
    assert [g.dirs for g in gs] == [["narrow", "plain"], ["wide"]]
    assert [[cfg.seed for cfg in g.cfgs] for g in gs] == [[0, 3], [0]]


def test_interrupting_a_group_interrupts_every_member_with_its_checkpoint(tmp_path):
    a = write_config(tmp_path / "a.yaml", {"name": "a", "model.skip.kind": "none", "train.epochs": 3})
    b = write_config(tmp_path / "b.yaml", {"name": "b", "train.epochs": 3})
    c = write_config(tmp_path / "c.yaml", {"name": "c", "model.width": 24, "train.epochs": 3})
    members = compare.plan([a, b, c], [])
    cdir = compare.create_dir(tmp_path / "runs")
    compare.write_plan(cdir, members, [])
    polls = []

    def stop_in_epoch_two() -> bool:  # 8 steps an epoch
        polls.append(1)
        return len(polls) >= 10

    labels = []
    results = compare.run(members, cdir, should_stop=stop_in_epoch_two,
                          group_reporter=lambda label, owners: labels.append(label))
    assert labels == ["a + b"]  # the second group never started
    assert [r.status for r in results] == ["interrupted", "interrupted"]
    for n in ("a", "b"):
        meta = json.loads((cdir / "runs" / n / "meta.json").read_text())
        assert meta["status"] == "interrupted" and meta["steps_done"] == 10
        assert (cdir / "runs" / n / "checkpoints" / "last.pt").is_file()
    assert not (cdir / "runs" / "c").exists()
    s = compare.rebuild(cdir)
    assert [m["summary"]["status"] for m in s["members"]] == ["interrupted", "interrupted", "not started"]


def test_the_progress_bar_shows_each_members_own_loss(tmp_path):
    """Members stacked in one bar: its loss field is each member's mean over its seeds at the last log step,
    the numbers of their metrics.csv, not the first model's for all."""
    a = write_config(tmp_path / "a.yaml", {"name": "plain", "model.skip.kind": "none", "model.depth": 8})
    b = write_config(tmp_path / "b.yaml", {"name": "skip"})
    p = cli("compare", a, b, "seed=[0,1]", "model.depth=8", "--out", tmp_path / "runs", check=0)
    shown = re.search(r"loss plain (\S+)  skip (\S+) ", p.stderr)
    assert shown, p.stderr
    (cdir,) = (tmp_path / "runs").iterdir()
    for member, value in zip(("plain", "skip"), shown.groups()):
        last = [runio.read_csv(cdir / "runs" / f"{member}-seed{s}" / "metrics.csv")[-1]["train_loss"] for s in (0, 1)]
        assert value == f"{sum(last) / 2:.4f}"
    assert shown.group(1) != shown.group(2)
def test_seeds_give_each_member_its_ci_and_its_difference_from_the_baseline(tmp_path):
    """The comparison's statistics against scipy: a CI per member, Welch's difference from --baseline."""
    scipy_stats = pytest.importorskip("scipy.stats")
    plain = write_config(tmp_path / "plain.yaml", {"name": "plain", "model.skip.kind": "none", "train.epochs": 1})
    wide = write_config(tmp_path / "wide.yaml", {"name": "wide", "model.width": 24, "train.epochs": 1})
    out = tmp_path / "runs"
    p = cli("compare", plain, wide, "seed=[0,1,2]", "--baseline", "wide", "--out", out, check=0)
    s = json.loads((_only_dir(out, "compare-") / "summary.json").read_text())
    assert s["baseline"] == "wide"
    (pl, wd) = s["members"]
    assert "against_baseline" not in wd
    losses = {m["name"]: [x["final_train_loss"] for x in m["seed_summaries"]] for m in s["members"]}
    lo, hi = scipy_stats.t.interval(0.95, 2, loc=sum(losses["plain"]) / 3, scale=scipy_stats.sem(losses["plain"]))
    assert pl["summary"]["ci"]["final_train_loss"] == [pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9)]
    ref = scipy_stats.ttest_ind(losses["plain"], losses["wide"], equal_var=False)
    d = pl["against_baseline"]["final_train_loss"]
    assert d["p"] == pytest.approx(ref.pvalue, rel=1e-9) and d["ci_high"] == pytest.approx(
        ref.confidence_interval().high, rel=1e-9)
    rows = " ".join(p.stdout.split())
    assert "⚠ parameters" in rows and "differ in parameter count" in rows   # 24 wide against 16 wide
    assert "Δ train loss vs wide" in rows and "(baseline)" in rows and "fewer than 5 seeds" in rows
    bad = cli("compare", plain, wide, "--baseline", "wider", "--out", tmp_path / "bad", check=2)
    assert bad.stderr.startswith("error: --baseline: 'wider' is not a member") and not (tmp_path / "bad").exists()
