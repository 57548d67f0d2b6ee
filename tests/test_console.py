"""What the console shows: whole tables in a pipe, the seed summary, the theory's answer first, readable
help, plain YAML errors, lesion changes in points; and that bad input and dry runs leave no files."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, cli, skipexp_cmd, write_config
from typer.testing import CliRunner

from skipexp.cli import app, main
from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import number
from skipexp.core.yamlio import read_yaml

MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def run_main(capsys, *args: object) -> tuple[int, str, str]:
    """``skipexp ARGS`` in this process, through main(): (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    got = capsys.readouterr()
    return e.value.code, got.out, got.err


def one_error(code: int, err: str) -> str:
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --- tables whole when piped ----------------------------------------------------------------------

def test_a_pipe_gets_whole_tables(tmp_path):
    long_a, long_b = "plain-" + "a" * 40, "skip-" + "b" * 40
    a = write_config(tmp_path / "a.yaml", {"name": long_a, "model.skip.kind": "none", "train.epochs": 1})
    b = write_config(tmp_path / "b.yaml", {"name": long_b, "train.epochs": 1})
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # what a pipe or a log file gets
    p = subprocess.run(skipexp_cmd() + ["compare", str(a), str(b), "--out", str(tmp_path / "runs")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "…" not in p.stdout
    table = p.stdout.split("comparison", 1)[1]
    assert long_a in table and long_b in table and "completed" in table
    assert max(len(line) for line in table.splitlines()) > 100  # wider than the 80 columns rich assumed
    summary = json.loads(next((tmp_path / "runs").glob("compare-*/summary.json")).read_text())
    acc = summary["members"][0]["summary"]["final_test_acc"]
    assert number(acc, pct=True) in table  # every cell whole


# --- train over several seeds ---------------------------------------------------------------------

def test_multi_seed_train_prints_mean_and_range(tmp_path):
    cfg = write_config(tmp_path / "t.yaml", {"train.epochs": 1})
    out = tmp_path / "runs"
    r = cli("train", cfg, "seed=[0,1,2]", "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("*-seed*/summary.json"))]
    assert len(summaries) == 3
    accs = [s["final_test_acc"] for s in summaries]
    losses = [s["final_train_loss"] for s in summaries]
    assert "mean over 3 seeds" in r.stdout
    acc_row = next(line for line in r.stdout.splitlines() if "final test acc" in line and "–" in line)
    assert number(sum(accs) / 3, pct=True) in acc_row
    assert f"{number(min(accs), pct=True)} – {number(max(accs), pct=True)}" in acc_row
    loss_row = next(line for line in r.stdout.splitlines() if "final train loss" in line and "–" in line)
    assert f"{number(min(losses))} – {number(max(losses))}" in loss_row
    # the folders come last, one per line
    assert [Path(line).name for line in r.stdout.strip().splitlines()[-3:]] == \
        sorted(p.parent.name for p in out.glob("*-seed*/summary.json"))


def test_one_seed_train_has_no_seed_summary(tmp_path):
    cfg = write_config(tmp_path / "t.yaml", {"train.epochs": 1})
    r = cli("train", cfg, "--out", tmp_path / "runs")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mean over" not in r.stdout


# --- validate --theory ----------------------------------------------------------------------------

def test_validate_theory_leads_with_its_answer(tiny_config):
    r = cli("validate", tiny_config, "model.skip.kind=none", "--theory")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("theory: ||dL/dh0|| / ||dL/dh4|| at init: predicted ")
    predicted = float(lines[0].split("predicted ")[1].split(",")[0])
    measured = float(lines[0].split("measured ")[1].split(" ")[0])
    ratio = float(lines[0].split("measured / predicted = ")[1].rstrip(")"))
    assert ratio == pytest.approx(measured / predicted, rel=2e-3)
    assert lines.index("name: tiny") < 4  # the config follows at once
    assert "chi per block" in r.stdout  # and the details after the layer table


def test_validate_theory_without_prediction_says_why_first(tiny_config):
    r = cli("validate", tiny_config, "model.norm=layernorm", "--theory")
    assert r.returncode == 0, r.stdout + r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("theory: ") and "measured" in first and "no prediction" in first


# --- nothing left behind by bad input or a dry run ------------------------------------------------

def test_missing_cuda_leaves_no_folder(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = write_config(tmp_path / "t.yaml")
    out = tmp_path / "new" / "runs"
    line = one_error(*run_main(capsys, "train", cfg, "--device", "cuda", "--out", out)[::2])
    assert "CUDA was asked for" in line and not (tmp_path / "new").exists()
    line = one_error(*run_main(capsys, "compare", cfg, cfg, "device=cuda", "--out", out)[::2])
    assert "CUDA was asked for" in line and not (tmp_path / "new").exists()


def test_a_data_error_found_at_run_time_leaves_no_folder(tmp_path, capsys):
    cfg = write_config(tmp_path / "t.yaml")
    out = tmp_path / "runs"
    line = one_error(*run_main(capsys, "train", cfg, "data.train_size=100000", "--out", out)[::2])
    assert "data.train_size" in line and not out.exists()


def test_an_existing_out_folder_is_kept(tmp_path, capsys):
    cfg = write_config(tmp_path / "t.yaml")
    out = tmp_path / "runs"
    out.mkdir()
    one_error(*run_main(capsys, "train", cfg, "data.train_size=100000", "--out", out)[::2])
    assert out.is_dir() and not any(out.iterdir())


def _sweep_file(tmp_path: Path) -> Path:
    write_config(tmp_path / "tiny.yaml", {"train.epochs": 1})
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "base": "tiny.yaml", "grid": {"model.depth": [2, 4]}}))
    return path


def _make(*args: object) -> subprocess.CompletedProcess:
    # -o: the venv stamp counts as made, so the test never installs anything
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "-o", ".venv/.installed",
                           f"SKIPEXP={skipexp_cmd()[0]}", *map(str, args)], env=MAKE_ENV, capture_output=True,
                          text=True, timeout=300)


def test_make_n_sweep_writes_no_makefile(tmp_path):
    path = _sweep_file(tmp_path)
    out = tmp_path / "runs"
    p = _make("-n", "-j2", "sweep", f"SWEEP={path}", f"OUT={out}")
    assert p.returncode == 0, p.stderr
    # depth 2 and 4 cannot stack: two groups, one command each
    assert sum(f"{skipexp_cmd()[0]} sweep " in line and "--group" in line for line in p.stdout.splitlines()) == 2
    assert not list(tmp_path.rglob("*.mk")) and not list(REPO.glob("runs/sweep-t*.mk"))
    assert not list(out.rglob("summary.json")) and not list(out.rglob("depth=*"))


def test_make_j2_sweep_runs_every_point_once(tmp_path):
    path = _sweep_file(tmp_path)
    out = tmp_path / "runs"
    p = _make("-j2", "sweep", f"SWEEP={path}", f"OUT={out}")
    assert p.returncode == 0, p.stdout + p.stderr
    done = sorted(p.parent.name for p in (out / "sweep-t").glob("depth=*/summary.json"))
    assert done == ["depth=2", "depth=4"] and (out / "sweep-t" / "summary.csv").is_file()
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "sweep-t").glob("depth=*/metrics.csv")}
    again = _make("-j2", "sweep", f"SWEEP={path}", f"OUT={out}")
    assert again.returncode == 0, again.stderr
    assert f"{skipexp_cmd()[0]} train " not in again.stdout  # both points done: make runs neither
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert not list(out.glob("*.mk"))


def test_make_sweep_without_sweep_says_how():
    p = _make("sweep")
    assert p.returncode != 0 and "usage: make [-j N] sweep SWEEP=" in p.stderr


# --- lesion ----------------------------------------------------------------------------------------

def test_lesion_changes_are_percentage_points_never_negative_zero(capsys, tmp_path):
    from skipexp.cli.render import points, print_lesion

    assert points(-0.012) == "-1.2 pp" and points(0.034) == "+3.4 pp"
    assert points(-0.0001) == "0.0 pp" and points(-0.0) == "0.0 pp" and points(0.0) == "0.0 pp"

    class Member:
        name, kind, csv = "m", "identity", tmp_path / "lesion.csv"

        def table(self):
            return [("-", "intact", 0.9, None), ("1", "branch", 0.888, -0.012), ("2", "branch", 0.8999, -0.0001)]

    print_lesion(Member())
    table = capsys.readouterr().out.rsplit("\n", 2)[0]  # less the csv's path
    changes = [line.split("│")[-2].strip() for line in table.splitlines() if line.startswith("│")]
    assert changes == ["-", "-1.2 pp", "0.0 pp"]


# --- list ------------------------------------------------------------------------------------------

def test_list_suggests_the_registry_meant(capsys):
    line = one_error(*run_main(capsys, "list", "skipp")[::2])
    assert 'did you mean "skip"?' in line and "choose from skip, activation" in line
    line = one_error(*run_main(capsys, "list", "zzz")[::2])
    assert "did you mean" not in line


# --- help ------------------------------------------------------------------------------------------

COMMANDS = ("train", "resume", "validate", "lesion", "shatter", "compare", "sweep", "report", "tensorboard", "list")


def test_help_lists_each_command_on_one_whole_line():
    r = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0
    listed = r.stdout.split("Commands:", 1)[1].splitlines()
    for command in COMMANDS:
        line = next(line for line in listed if line.split() and line.split()[0] == command)
        assert not line.rstrip().endswith("..."), line
        assert len(line.split(command, 1)[1].strip()) > 20, line


@pytest.mark.parametrize("command", COMMANDS)
def test_help_metavars_read_as_words(command):
    r = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    options = r.stdout.split("Arguments:", 1)[-1]
    for typer_style in ("{", "<path>", "<str>", "<int", "<float", "<list", "<bool"):
        assert typer_style not in options, (typer_style, r.stdout)
    usage = r.stdout.splitlines()[0]
    assert "{" not in usage and "<" not in usage


def test_help_names_train_arguments():
    r = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "100"})
    assert "Usage: skipexp train [OPTIONS] CONFIG [KEY=VALUE]..." in r.stdout
    for option in ("--out DIR", "--device DEVICE", "--threads N", "--run-dir DIR", "--name NAME"):
        assert option in r.stdout, option


# --- YAML syntax errors ------------------------------------------------------------------------------

YAML_CASES = [
    ("indent", "name: x\nmodel:\n    depth: 4\n  width: 8\n", "4:3", "the indentation does not match the lines"),
    ("indent_less", "model:\n  depth: 4\n width: 8\n", "3:2", "the indentation does not match the lines"),
    ("tab", "model:\n\tdepth: 4\n", "2:1", "a tab character; YAML indents with spaces only"),
    ("quote", "name: 'abc\nseed: 1\n", "1:7", "a quote opened here is never closed"),
    ("brace", "model: {depth: 4\n", "1:8", "a '{' opened here is never closed"),
    ("bracket", "model:\n  width: [8, 8\nseed: 1\n", "2:10", "a '[' opened here is never closed"),
    ("no_colon", "name: x\nmodel\nseed: 1\n", "2:1", "a key without ': ' after it"),
    ("no_space", "name: x\nseed:1\nmodel: {}\n", "2:1", "a key without ': ' after it"),
    ("colon_in_value", "name: a: b\n", "1:8", "a ':' where none can be"),
    ("duplicate", "seed: 1\nseed: 2\n", "2:1", "invalid YAML: duplicate key 'seed'"),
    ("alias", "seed: *nope\n", "1:7", "invalid YAML: found undefined alias 'nope'"),  # PyYAML's words
]


@pytest.mark.parametrize("name, text, where, words", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_yaml_syntax_errors_say_where_and_what(tmp_path, name, text, where, words):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(SkipexpError) as e:
        read_yaml(path)
    assert str(e.value).startswith(f"{path}:{where}: {words}"), str(e.value)
    assert "<block" not in str(e.value) and "\n" not in str(e.value)


def test_yaml_syntax_error_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nmodel:\n    depth: 4\n  width: 8\n")
    line = one_error(*run_main(capsys, "validate", path)[::2])
    assert line.startswith(f"error: {path}:4:3: the indentation does not match"), line
