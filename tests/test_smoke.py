"""The command end to end on a tiny config: every run-folder file, with its columns."""
import json
import os
import signal
import sys

import torch
from conftest import _reset_consoles, cli

from skipexp.rundir import runio


def test_train_writes_complete_run_folder(tiny_run):
    p, run_dir = tiny_run
    assert p.stdout.strip().splitlines()[-1] == str(run_dir)  # the last line names the folder it wrote
    for f in ["config.yaml", "meta.json", "metrics.csv", "eval.csv", "grad_norms.csv", "act_grad_norms.csv",
              "act_norms.csv", "summary.json", "plots/loss.png", "plots/grad_norms.png", "plots/grad_heatmap.png",
              "checkpoints/last.pt", "train.log"]:
        assert (run_dir / f).is_file(), f
    assert runio.csv_columns(run_dir / "metrics.csv") == runio.METRICS_COLUMNS
    assert runio.csv_columns(run_dir / "eval.csv") == runio.EVAL_COLUMNS + runio.TRAIN_COLUMNS
    assert runio.csv_columns(run_dir / "grad_norms.csv") == (
        ["step", "input"] + [f"blocks.{i}.fc{j}" for i in range(4) for j in (1, 2)] + ["head"])
    assert runio.csv_columns(run_dir / "act_grad_norms.csv") == ["step"] + [f"h{i}" for i in range(5)]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed"
    rows = runio.read_csv(run_dir / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 4, 6, 8, 10, 12, 14, 16]


def test_cli_in_this_process_puts_the_process_back(tmp_path, tiny_config):
    """The in-process runner the other tests rely on: a command that installs its Ctrl-C handler and then fails
    leaves signal handlers, torch threads, env, argv and the working folder as they were."""
    # the runner makes the CLI's consoles afresh per call; if they move or change kind, it must follow
    assert _reset_consoles() >= 2, "no LazyConsole found in skipexp.cli: update conftest._reset_consoles"

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), torch.get_num_threads(),
              dict(os.environ), list(sys.argv), os.getcwd())
    (tmp_path / "taken").mkdir()
    p = cli("train", tiny_config, "--run-dir", tmp_path / "taken", cwd=tmp_path, check=2)
    assert p.stderr.startswith(f"error: {tmp_path / 'taken'}: already exists") and p.stderr.count("\n") == 1
    assert p.stdout == ""
    after = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), torch.get_num_threads(),
             dict(os.environ), list(sys.argv), os.getcwd())
    assert after == before


def test_a_validation_split_is_evaluated_beside_the_test_set(tmp_path):
    from conftest import write_config

    cfg = write_config(tmp_path / "val.yaml", {"data.val_size": 128})
    p = cli("train", cfg, "--out", tmp_path / "runs", check=0)
    run_dir = next((tmp_path / "runs").iterdir())
    assert runio.csv_columns(run_dir / "eval.csv") == runio.EVAL_COLUMNS + ["val_loss", "val_acc"] + \
        runio.TRAIN_COLUMNS
    s = json.loads((run_dir / "summary.json").read_text())
    last = runio.read_csv(run_dir / "eval.csv")[-1]
    assert s["final_val_loss"] == last["val_loss"] and s["final_val_acc"] == last["val_acc"]
    assert json.loads((run_dir / "meta.json").read_text())["steps_per_epoch"] == (512 - 128) // 64
    assert "final validation acc" in p.stdout
