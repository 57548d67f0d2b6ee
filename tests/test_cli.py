"""The installed ``skipexp`` command in a subprocess: the run folder it leaves, validate, errors, help."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, cli, run_cli, write_config

from skipexp.rundir import files, runio

RUN_FILES = ["config.yaml", "meta.json", "metrics.csv", "eval.csv", "grad_norms.csv", "act_grad_norms.csv",
             "act_norms.csv", "summary.json", "plots/loss.png", "plots/grad_norms.png", "plots/grad_heatmap.png",
             "checkpoints/last.pt", "train.log"]
SUMMARY_KEYS = {"name", "status", "steps", "wall_s", "steps_per_s", "final_train_loss", "final_train_acc",
                "best_train_loss", "best_train_acc", "final_test_loss", "final_test_acc", "best_test_loss",
                "best_test_acc", "grad_ratio_first_last_start", "grad_ratio_first_last_end",
                "act_grad_ratio_first_last_start", "act_grad_ratio_first_last_end"}
META_KEYS = {"status", "skipexp_version", "torch_version", "python_version", "device", "device_name", "host",
             "pid", "command", "git_commit", "seed", "params", "start_time", "end_time"}


def one_error_line(p: subprocess.CompletedProcess) -> list[str]:
    """stderr is exactly one line starting with 'error: ' (no blank lines, no traceback)."""
    lines = p.stderr.split("\n")
    assert len(lines) == 2 and lines[1] == "" and lines[0].startswith("error: "), repr(p.stderr)
    return lines[:1]


def only_run_dir(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_train_writes_every_file_with_its_columns(tmp_path):
    out = tmp_path / "runs"
    cfg = write_config(tmp_path / "tiny.yaml", {"model.width": [16, 12, 12], "model.skip.kind": "projection",
                                               "model.depth": 4, "train.epochs": 1, "log.plots": True})
    # overrides on the command line win over the file: depth 3, and a run name from --name
    p = run_cli("train", cfg, "model.depth=3", "log.every=3", "--out", out, "--name", "cli-run", check=0)
    run_dir = only_run_dir(out)
    assert p.stdout.strip().splitlines()[-1].endswith(run_dir.name)
    assert run_dir.name.endswith("-cli-run")
    for f in RUN_FILES:
        assert (run_dir / f).is_file() and (run_dir / f).stat().st_size > 0, f
    for png in (run_dir / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["model"]["depth"] == 3 and resolved["log"]["every"] == 3 and resolved["name"] == "cli-run"
    assert resolved["train"]["optimizer"] == "sgd"  # defaults are filled in

    assert runio.csv_columns(run_dir / "metrics.csv") == \
        ["step", "epoch", "train_loss", "train_acc", "lr", "grad_norm_total", "elapsed_s"]
    assert runio.csv_columns(run_dir / "eval.csv") == \
        ["step", "epoch", "test_loss", "test_acc", "train_loss", "train_acc"]
    layers = ["input", "blocks.0.fc1", "blocks.0.fc2", "blocks.1.fc1", "blocks.1.fc2", "skips.1.proj",
              "blocks.2.fc1", "blocks.2.fc2", "head"]
    assert runio.csv_columns(run_dir / "grad_norms.csv") == ["step"] + layers
    for f in ("act_grad_norms.csv", "act_norms.csv"):
        assert runio.csv_columns(run_dir / f) == ["step", "h0", "h1", "h2", "h3"]

    steps_per_epoch = 512 // 64
    metrics = runio.read_csv(run_dir / "metrics.csv")
    assert [int(r["step"]) for r in metrics] == [1, 3, 6, 8]  # first, every 3rd, last
    for f in ("grad_norms.csv", "act_grad_norms.csv", "act_norms.csv"):
        rows = runio.read_csv(run_dir / f)
        assert [int(r["step"]) for r in rows] == [1, 3, 6, 8]
        assert all(v > 0 for r in rows for v in r.values())
    assert [int(r["step"]) for r in runio.read_csv(run_dir / "eval.csv")] == [steps_per_epoch]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary), SUMMARY_KEYS - set(summary)
    assert summary["status"] == "completed" and summary["steps"] == 8
    meta = json.loads((run_dir / "meta.json").read_text())
    assert META_KEYS <= set(meta), META_KEYS - set(meta)
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert meta["status"] == "completed" and meta["params"] == sum(t.numel() for t in ckpt["model"].values())
    assert ckpt["step"] == 8 and "blocks.0.fc1.weight" in ckpt["model"]
    assert "train" in (run_dir / "train.log").read_text()
    # the one-screen summary on stdout
    assert "final test acc" in p.stdout


def test_validate_prints_config_and_layer_table(tmp_path):
    cfg = write_config(tmp_path / "v.yaml", {"model.width": [16, 8, 8], "model.depth": 3,
                                            "model.skip.kind": "projection"})
    p = run_cli("validate", cfg, "model.skip.blocks=[1]", check=0)
    assert "gate_bias: -2.0" in p.stdout and "optimizer: sgd" in p.stdout  # the resolved config, defaults in
    lines = {line.split()[1]: line for line in p.stdout.splitlines() if line.startswith("│")}
    assert set(lines) >= {"input", "blocks.0.fc1", "blocks.1.fc2", "skips.1.proj", "head"}
    assert "8x16" in lines["skips.1.proj"] and "128" in lines["skips.1.proj"]
    assert "projection" in lines["skips.1.proj"] and "none" in lines["blocks.0.fc1"]
    assert "16x16 + 16" in lines["blocks.0.fc1"] and "272" in lines["blocks.0.fc1"]
    assert "parameters" in p.stdout
    assert not (tmp_path / "runs").exists() and not (REPO / "runs" / "v").exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (overrides applied to TINY in the file, command-line overrides, text the one line must contain)
BAD_CONFIGS = [
    ({"model.depht": 3}, [], ["model.depht", 'did you mean "model.depth"']),
    ({"model.depth": -1}, [], ["model.depth", ">"]),
    ({"model.skip.kind": "residual"}, [], ["model.skip.kind", "identity", "projection"]),
    ({"train.lr": "fast"}, [], ["train.lr", "number"]),
    ({"model.width": [16, 8, 16, 16]}, [], ["model.skip.kind", "block 1", "projection"]),
    ({"model.skip.span": 3}, [], ["model.skip.span", "divide"]),
    ({"model.skip.blocks": [9]}, [], ["model.skip.blocks", "unit 9"]),
    ({}, ["model.depth"], ["model.depth", "KEY=VALUE"]),
    ({}, ["train.optimizer=sgdd"], ["train.optimizer", 'did you mean "sgd"']),
    ({}, ["--device", "tpu"], ["device", "tpu"]),
]


@pytest.mark.parametrize("file_over,cli_args,words", BAD_CONFIGS, ids=[w[0] for _, _, w in BAD_CONFIGS])
def test_bad_config_one_line_exit_2_no_folder(tmp_path, file_over, cli_args, words):
    cfg = write_config(tmp_path / "bad.yaml", file_over)
    out = tmp_path / "runs"
    runs = [["train", cfg, *cli_args, "--out", out]]
    if "--device" not in cli_args:  # validate takes no --device
        runs.append(["validate", cfg, *cli_args])
    for args in runs:
        p = cli(*args, check=2)
        lines = one_error_line(p)
        assert str(cfg) in lines[0]
        for w in words:
            assert w in lines[0], (w, lines[0])
        assert "Traceback" not in p.stderr + p.stdout
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("args,words", [
    (["train", "missing.yaml"], ["missing.yaml", "no such file"]),
    (["train", "."], ["directory"]),
    (["validate", "missing.yaml"], ["missing.yaml", "no such file"]),
    (["resume", "no-such-run"], ["no-such-run", "no such folder"]),
    (["resume", "."], ["not a skipexp run folder"]),
])
def test_bad_file_arguments(tmp_path, args, words):
    p = cli(*args, *(["--out", tmp_path / "runs"] if args[0] == "train" else []), cwd=tmp_path, check=2)
    lines = one_error_line(p)
    for w in words:
        assert w in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _interrupted(tmp_path: Path, name: str) -> Path:
    """A tiny run stopped after its first epoch: interrupted, with a checkpoint."""
    from conftest import train_one

    from skipexp.core import config
    from skipexp.training import fit

    cfg = config.load(write_config(tmp_path / f"{name}.yaml", {"name": name}))
    run_dir = fit.create_run(cfg, tmp_path / "runs")
    steps = iter(range(10**6))
    assert train_one(cfg, run_dir, should_stop=lambda: next(steps) >= 7).status == "interrupted"
    return run_dir


def test_resume_takes_several_folders_and_resumes_each_as_alone(tmp_path):
    a, b = _interrupted(tmp_path, "a"), _interrupted(tmp_path, "b")
    p = cli("resume", a, b, tmp_path / "runs" / ".." / "runs" / a.name, check=0)   # a folder named twice: once
    assert p.stdout.strip().splitlines()[-1] == str(b)
    assert [runio.read_json(d / "meta.json")["status"] for d in (a, b)] == ["completed"] * 2
    assert [len(runio.read_json(d / "meta.json")["resumes"]) for d in (a, b)] == [1, 1]
    alone = _interrupted(tmp_path, "alone")
    cli("resume", alone, check=0)
    def losses(d: Path) -> list:
        return [(r["step"], r["train_loss"], r["grad_norm_total"]) for r in runio.read_csv(d / "metrics.csv")]
    # one config and seed (names apart): the second folder resumed in this process is its lone resume too
    assert len(losses(a)) > 8 and losses(a) == losses(b) == losses(alone)


def test_resume_checks_every_folder_before_training_any(tmp_path):
    a = _interrupted(tmp_path, "a")
    before = (a / "metrics.csv").read_text()
    p = cli("resume", a, tmp_path / "no-such-run", check=2)
    assert "no-such-run" in one_error_line(p)[0]
    assert (a / "metrics.csv").read_text() == before and runio.read_json(a / "meta.json")["status"] == "interrupted"


def test_an_error_in_one_folder_names_those_not_resumed(tmp_path):
    a, b, c = (_interrupted(tmp_path, n) for n in "abc")
    (b / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    p = cli("resume", a, b, c, check=2)
    line = p.stderr.strip().splitlines()[-1]   # after a's progress bar
    assert line.startswith(f"error: {b}") and line.endswith(f"(not resumed: {c})") and "Traceback" not in p.stderr
    assert [runio.read_json(d / "meta.json")["status"] for d in (a, c)] == ["completed", "interrupted"]


def test_a_second_ctrl_c_names_the_folder_in_hand_and_those_after_it(tmp_path, monkeypatch, capsys):
    from skipexp.cli import console

    a, b = _interrupted(tmp_path, "a"), _interrupted(tmp_path, "b")
    stop = console.StopFlag()
    stop.run_dirs, stop.pending = [], [a, b]   # quit during a's setup, before it trains
    monkeypatch.setattr(console.os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    with pytest.raises(SystemExit):
        stop.quit_now()
    assert capsys.readouterr().err.strip() == f"interrupted; continue with: skipexp resume {a} {b}"


def test_a_stop_while_resuming_names_the_folder_and_those_not_yet_resumed(tmp_path, monkeypatch):
    from skipexp.cli import console

    a, b, c = (_interrupted(tmp_path, n) for n in "abc")
    monkeypatch.setattr(console.StopFlag, "__call__", lambda self: True)   # as a Ctrl-C during a's first step
    p = cli("resume", a, b, c, check=130)
    assert p.stderr.strip().splitlines()[-1] == f"interrupted; continue with: skipexp resume {a} {b} {c}"
    assert runio.read_json(b / "meta.json").get("resumes") is None          # b and c were not started


@pytest.mark.skipif(Path("/usr/share/datasets/mnist").exists(), reason="a system copy of MNIST is installed")
def test_mnist_without_files_or_network_says_where_to_put_them(tmp_path):
    cfg = write_config(tmp_path / "m.yaml", {"data": {"dataset": "mnist"}})
    out = tmp_path / "runs"
    env = {"SKIPEXP_MIRRORS": f"http://127.0.0.1:{closed_port()}/", "SKIPEXP_DATA": "",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    p = cli("train", cfg, "--out", out, env=env, check=2)
    lines = one_error_line(p)
    assert "data.dataset" in lines[0] and "put train-images-idx3-ubyte.gz" in lines[0]
    assert str(tmp_path / "cache" / "skipexp" / "mnist") in lines[0]
    assert not out.exists()  # not even an empty --out folder


def test_help_for_every_command():
    p = run_cli("--help", check=0)
    for command in ("train", "resume", "validate"):
        assert command in p.stdout
        sub = run_cli(command, "--help", check=0)
        assert "Example" in sub.stdout and f"skipexp {command}" in sub.stdout
    p = run_cli()  # no arguments: the help, and no empty error line
    assert "Usage" in p.stdout and "error" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "skipexp", "--help"], capture_output=True, text=True, timeout=60,
                       env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0 and "train" in p.stdout


def test_help_does_not_import_torch_or_matplotlib():
    code = ("import sys\nfrom skipexp import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_unknown_command_and_option_exit_2():
    for args in (["frobnicate"], ["train", "--bogus"]):
        p = cli(*args, check=2)
        one_error_line(p)


def test_corrupt_data_file_exit_2_naming_it(tmp_path):
    from idx_files import write_dataset

    root = tmp_path / "idx"
    cfg = write_config(tmp_path / "m.yaml", {"data": {"dataset": "mnist", "root": str(root)}})
    out = tmp_path / "runs"
    env = {"SKIPEXP_MIRRORS": f"http://127.0.0.1:{closed_port()}/"}
    write_dataset(root)  # valid IDX files, but 20 images where MNIST has 60,000
    images = root / "train-images-idx3-ubyte.gz"
    (line,) = one_error_line(cli("train", cfg, "--out", out, env=env, check=2))
    assert str(images) in line and "expected 60000 images, found 20" in line, line
    images.write_bytes(images.read_bytes()[:40])  # a truncated download
    (line,) = one_error_line(cli("train", cfg, "--out", out, env=env, check=2))
    assert str(images) in line and "cannot read" in line, line
    assert not out.exists()  # not even an empty --out folder


def test_train_with_seeds_and_run_dir_names_each_folder_after_run_dir(tmp_path):
    """``--run-dir D`` with several seeds writes D-seed<N>, whatever the config's name (run in-process)."""
    import signal

    from skipexp.cli import main

    # the CLI installs its own Ctrl-C handlers; pytest's are put back afterwards
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    cfg = write_config(tmp_path / "tiny.yaml", {"train.epochs": 1, "data.n_train": 64, "data.n_test": 64})
    try:
        with pytest.raises(SystemExit) as e:
            main(["train", str(cfg), "seed=[0,1]", "--run-dir", str(tmp_path / "runs" / "exp")])
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert e.value.code == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["exp-seed0", "exp-seed1"]
    assert [files.read_json(tmp_path / "runs" / f"exp-seed{s}" / "meta.json")["seed"] for s in (0, 1)] == [0, 1]
