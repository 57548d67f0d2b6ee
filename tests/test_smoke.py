"""The real command end to end on a tiny config: every run-folder file, with its columns."""
import json

from conftest import run_cli

from skipexp.rundir import runio


def test_train_writes_complete_run_folder(tmp_path, tiny_config):
    out = tmp_path / "runs"
    p = run_cli("train", tiny_config, "--out", out, check=0)
    run_dir = out / p.stdout.strip().splitlines()[-1].split("/")[-1]
    for f in ["config.yaml", "meta.json", "metrics.csv", "eval.csv", "grad_norms.csv", "act_grad_norms.csv",
              "act_norms.csv", "summary.json", "plots/loss.png", "plots/grad_norms.png", "plots/grad_heatmap.png",
              "checkpoints/last.pt", "train.log"]:
        assert (run_dir / f).is_file(), f
    assert runio.csv_columns(run_dir / "metrics.csv") == runio.METRICS_COLUMNS
    assert runio.csv_columns(run_dir / "eval.csv") == runio.EVAL_COLUMNS
    assert runio.csv_columns(run_dir / "grad_norms.csv") == (
        ["step", "input"] + [f"blocks.{i}.fc{j}" for i in range(4) for j in (1, 2)] + ["head"])
    assert runio.csv_columns(run_dir / "act_grad_norms.csv") == ["step"] + [f"h{i}" for i in range(5)]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed"
    rows = runio.read_csv(run_dir / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 4, 6, 8, 10, 12, 14, 16]
