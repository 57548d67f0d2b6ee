"""skipexp compare: members on the same batches, the side-by-side table, the folder on disk."""
import json

from conftest import run_cli, write_config

from skipexp import compare, runio


def _only_dir(parent, prefix):
    found = [p for p in parent.iterdir() if p.name.startswith(prefix)]
    assert len(found) == 1, found
    return found[0]


def test_identical_configs_see_identical_batches(tmp_path, tiny_config):
    out = tmp_path / "runs"
    p = run_cli("compare", tiny_config, tiny_config, "train.epochs=1", "--out", out, check=0)
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
    p = run_cli("report", cdir, check=0)
    assert "tiny-2" in p.stdout and (cdir / "summary.md").is_file() and (cdir / "plots" / "loss.png").is_file()


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
    p = run_cli("compare", tiny_config, "--out", out, check=2)
    assert p.stderr.strip().count("\n") == 0 and "at least two config files" in p.stderr
    p = run_cli("compare", tiny_config, tiny_config, "model.depth=0", "--out", out, check=2)
    assert p.stderr.strip() == f"error: {tiny_config}: model.depth: must be > 0, got 0"
    assert not out.exists() or not any(out.iterdir())
