"""Every bad input gives exit 2, one stderr line ``error: <file>: <key>: <what>``, no traceback, no run folder.

The corpus is a table: (id, command line, text every error line must contain). Each case runs once,
through the CLI's ``main`` in this process (a process start-up costs more than most cases); a few also run
as the installed command, which must say exactly the same.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest
import yaml
from conftest import TINY, cli, run_cli, write_config

# Placeholders in a case: {good} a valid tiny config, {d} the corpus folder, {out} the case's own --out
CONFIG_TEXT = {
    "empty": "",
    "comments": "# nothing but a comment\n",
    "list": "- 1\n- 2\n",
    "scalar": "42\n",
    "tag": "!!python/object/apply:os.system ['echo pwned']\n",
    "syntax": "model: {depth: 4\n",
    "dupkey": "seed: 1\nseed: 2\n",
    "tab": "model:\n\tdepth: 4\n",
}
CONFIG_OVERRIDES = {  # a key of TINY set to a bad value
    "unknown_top": {"modle": {}},
    "unknown_nested": {"model.dept": 3},
    "str_for_int": {"model.depth": "deep"},
    "bool_for_int": {"model.depth": True},
    "float_for_int": {"train.steps": 1.5},
    "list_for_float": {"train.lr": [1]},
    "zero_depth": {"model.depth": 0},
    "negative_lr": {"train.lr": -0.1},
    "nan_lr": {"train.lr": float("nan")},
    "momentum_range": {"train.momentum": 1.5},
    "zero_batch": {"train.batch_size": 0},
    "negative_every": {"log.every": -1},
    "unknown_skip_kind": {"model.skip.kind": "resnet"},
    "unknown_activation": {"model.activation": "swish"},
    "unknown_optimizer": {"train.optimizer": "lion"},
    "unknown_dataset": {"data.dataset": "cifar"},
    "unknown_schedule": {"train.schedule": "linear"},
    "unknown_cadence": {"log.checkpoint": "sometimes"},
    "bad_device": {"device": "tpu"},
    "placement_out_of_range": {"model.skip.blocks": [99]},
    "span_not_dividing": {"model.skip.span": 3},
    "width_list_length": {"model.width": [16, 16]},
    "identity_width_mismatch": {"model.width": [16, 16, 32, 32]},
    "section_not_mapping": {"model": 5},
    "seed_empty_list": {"seed": []},
    "seed_repeated": {"seed": [1, 1]},
    "seed_negative": {"seed": -1},
    "name_with_slash": {"name": "a/b"},
}

CASES: list[tuple[str, list[str], list[str]]] = [
    ("missing_file", ["train", "{d}/nope.yaml"], ["{d}/nope.yaml: no such file"]),
    ("directory", ["train", "{d}"], ["{d}: is a directory"]),
    ("not_utf8", ["train", "{d}/latin1.yaml"], ["{d}/latin1.yaml: cannot read the file"]),
    ("empty", ["train", "{d}/empty.yaml"], ["{d}/empty.yaml: the file is empty"]),
    ("comments", ["train", "{d}/comments.yaml"], ["{d}/comments.yaml: the file is empty"]),
    ("list", ["train", "{d}/list.yaml"], ["{d}/list.yaml: expected a mapping", "list"]),
    ("scalar", ["train", "{d}/scalar.yaml"], ["{d}/scalar.yaml: expected a mapping", "int"]),
    ("tag", ["train", "{d}/tag.yaml"], ["{d}/tag.yaml:", "invalid YAML", "python/object"]),
    ("syntax", ["train", "{d}/syntax.yaml"], ["{d}/syntax.yaml:1:8: a '{{' opened here is never closed"]),
    ("dupkey", ["train", "{d}/dupkey.yaml"], ["{d}/dupkey.yaml:2:1: invalid YAML: duplicate key 'seed'"]),
    ("tab", ["train", "{d}/tab.yaml"], ["{d}/tab.yaml:2:1: a tab character"]),
    ("unknown_top", ["train", "{d}/unknown_top.yaml"], ["unknown_top.yaml: modle: unknown key", '"model"']),
    ("unknown_nested", ["train", "{d}/unknown_nested.yaml"], ["model.dept: unknown key", '"model.depth"']),
    ("str_for_int", ["train", "{d}/str_for_int.yaml"], ["str_for_int.yaml: model.depth: must be an integer"]),
    ("bool_for_int", ["train", "{d}/bool_for_int.yaml"], ["model.depth: must be an integer, got True"]),
    ("float_for_int", ["train", "{d}/float_for_int.yaml"], ["train.steps: must be an integer", "1.5"]),
    ("list_for_float", ["train", "{d}/list_for_float.yaml"], ["train.lr: must be a number"]),
    ("zero_depth", ["train", "{d}/zero_depth.yaml"], ["model.depth: must be > 0, got 0"]),
    ("negative_lr", ["train", "{d}/negative_lr.yaml"], ["train.lr: must be > 0, got -0.1"]),
    ("nan_lr", ["train", "{d}/nan_lr.yaml"], ["train.lr: must be a finite number"]),
    ("momentum_range", ["train", "{d}/momentum_range.yaml"], ["train.momentum: must be between 0.0 and"]),
    ("zero_batch", ["train", "{d}/zero_batch.yaml"], ["train.batch_size: must be > 0"]),
    ("negative_every", ["train", "{d}/negative_every.yaml"], ["log.every: must be > 0"]),
    ("unknown_skip_kind", ["train", "{d}/unknown_skip_kind.yaml"], ["model.skip.kind:", "resnet", "identity"]),
    ("unknown_activation", ["train", "{d}/unknown_activation.yaml"], ["model.activation:", "swish", "relu"]),
    ("unknown_optimizer", ["train", "{d}/unknown_optimizer.yaml"], ["train.optimizer:", "lion", "adamw"]),
    ("unknown_dataset", ["train", "{d}/unknown_dataset.yaml"], ["data.dataset:", "cifar", "mnist1d"]),
    ("unknown_schedule", ["train", "{d}/unknown_schedule.yaml"], ["train.schedule:", "linear", "cosine"]),
    ("unknown_cadence", ["train", "{d}/unknown_cadence.yaml"], ["log.checkpoint: must be one of none, last"]),
    ("bad_device", ["train", "{d}/bad_device.yaml"], ["bad_device.yaml: device: must be auto, cpu, cuda"]),
    ("placement_out_of_range", ["train", "{d}/placement_out_of_range.yaml"],
     ["model.skip.blocks: unit 99 does not exist"]),
    ("span_not_dividing", ["train", "{d}/span_not_dividing.yaml"], ["model.skip.span: 3 does not divide"]),
    ("width_list_length", ["train", "{d}/width_list_length.yaml"], ["model.width: a list of widths needs one"]),
    ("identity_width_mismatch", ["train", "{d}/identity_width_mismatch.yaml"],
     ["model.skip.kind: identity skip around block 2 cannot add width 16 to width 32; use kind: projection"]),
    ("section_not_mapping", ["train", "{d}/section_not_mapping.yaml"], ["model: must be a mapping"]),
    ("seed_empty_list", ["train", "{d}/seed_empty_list.yaml"], ["seed: must not be an empty list"]),
    ("seed_repeated", ["train", "{d}/seed_repeated.yaml"], ["seed: must not repeat a value"]),
    ("seed_negative", ["train", "{d}/seed_negative.yaml"], ["seed: must be >= 0"]),
    ("name_with_slash", ["train", "{d}/name_with_slash.yaml"], ["name: 'a/b' may hold only"]),
    # overrides and command-line arguments
    ("override_no_equals", ["train", "{good}", "model.depth"], ["good.yaml: model.depth: 'model.depth' is not an"]),
    ("override_bad_key", ["train", "{good}", "model..depth=3"], ["'model..depth' is not a dotted key"]),
    ("override_unknown_key", ["train", "{good}", "model.dpth=3"], ["model.dpth: unknown key", '"model.depth"']),
    ("override_into_value", ["train", "{good}", "model.depth.x=3"], ["model.depth.x: 'depth' is a value"]),
    ("override_bad_value", ["train", "{good}", "model.depth=abc"], ["good.yaml: model.depth: must be an integer"]),
    ("override_unclosed", ["train", "{good}", "model.width=[1,2"], ["model.width: cannot parse the value"]),
    ("override_out_of_range", ["train", "{good}", "train.lr=0"], ["good.yaml: train.lr: must be > 0"]),
    ("unknown_option", ["train", "{good}", "--frobnicate"], ["skipexp train: No such option: --frobnicate"]),
    ("missing_argument", ["train"], ["skipexp train: Missing argument 'CONFIG'"]),
    ("unknown_command", ["trian", "{good}"], ["No such command 'trian'"]),
    ("device_option_bogus", ["train", "{good}", "--device", "gpu0"], ["good.yaml: device: must be auto, cpu"]),
    ("validate_unknown_key", ["validate", "{d}/unknown_nested.yaml"], ["model.dept: unknown key"]),
    # where the run goes
    ("out_under_a_file", ["train", "{good}", "--out", "{d}/afile/runs"],
     ["{d}/afile/runs: --out: is not a folder ({d}/afile is a file)"]),
    ("out_a_file", ["train", "{good}", "--out", "{d}/afile"], ["{d}/afile: --out: is not a folder; give a folder"]),
    ("compare_out_a_file", ["compare", "{good}", "{good}", "--out", "{d}/afile"],
     ["{d}/afile: --out: is not a folder"]),
    ("sweep_out_a_file", ["sweep", "{good}", "seed=0,1", "--out", "{d}/afile"], ["{d}/afile: --out: is not a folder"]),
    ("run_dir_exists", ["train", "{good}", "--run-dir", "{d}"], ["{d}: already exists"]),
    # resume of things that are not resumable runs
    ("resume_missing", ["resume", "{d}/nope"], ["{d}/nope: no such folder"]),
    ("resume_a_file", ["resume", "{good}"], ["good.yaml: not a folder"]),
    ("resume_not_a_run", ["resume", "{d}/emptydir"], ["emptydir: not a skipexp run folder"]),
    ("resume_bad_meta", ["resume", "{d}/badmeta"], ["badmeta/meta.json: unreadable JSON"]),
    # data, found only when the run loads it (torch is imported by then)
    ("train_size_too_big", ["train", "{good}", "data.train_size=100000"], ["data.train_size: asks for 100000"]),
    ("idx_truncated", ["train", "{d}/idx_truncated.yaml"],
     ["{d}/idx_truncated/train-images-idx3-ubyte: holds 100 bytes of data, its header promises 47040000"]),
    ("idx_bad_magic", ["train", "{d}/idx_bad_magic.yaml"],
     ["{d}/idx_bad_magic/train-images-idx3-ubyte.gz: not an IDX file"]),
    ("idx_not_gzip", ["train", "{d}/idx_not_gzip.yaml"], ["{d}/idx_not_gzip/train-images-idx3-ubyte.gz: cannot read"]),
    ("device_cuda_without_cuda", ["train", "{good}", "--device", "cuda"], ["good.yaml: device: CUDA was asked for"]),
]


def _idx_folder(folder: Path, images: bytes, gz: bool) -> None:
    """Four IDX files; the training images (read first) are the broken one."""
    folder.mkdir()
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for name in names:
        data = images if name == names[0] else struct.pack(">HBBI", 0, 8, 1, 1) + b"\x00"
        if gz:
            (folder / f"{name}.gz").write_bytes(data if name == names[0] else gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def _make_corpus(d: Path) -> None:
    write_config(d / "good.yaml")
    for name, text in CONFIG_TEXT.items():
        (d / f"{name}.yaml").write_text(text)
    (d / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    for name, overrides in CONFIG_OVERRIDES.items():
        write_config(d / f"{name}.yaml", overrides)
    (d / "afile").write_text("a regular file, not a folder\n")
    (d / "emptydir").mkdir()
    (d / "badmeta").mkdir()
    (d / "badmeta" / "meta.json").write_text('{"tool": "skipexp", "status": ')
    (d / "badmeta" / "config.yaml").write_text(yaml.safe_dump(TINY))
    header = struct.pack(">HBBIII", 0, 8, 3, 60_000, 28, 28)
    _idx_folder(d / "idx_truncated", header + b"\x00" * 100, gz=False)
    _idx_folder(d / "idx_bad_magic", gzip.compress(b"GIF89a" + b"\x00" * 64), gz=True)
    _idx_folder(d / "idx_not_gzip", header + b"\x00" * 100, gz=True)
    for name in ("idx_truncated", "idx_bad_magic", "idx_not_gzip"):
        write_config(d / f"{name}.yaml", {"data": {"dataset": "fashion-mnist", "root": str(d / name)}})


def _argv(name: str, args: list[str], d: Path) -> tuple[list[str], Path]:
    out = d.parent / f"out-{name}"
    argv = [a.format(d=d, good=d / "good.yaml") for a in args]
    if argv and argv[0] == "train" and "--out" not in argv:
        argv += ["--out", str(out)]
    return argv, out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    _make_corpus(d)
    return d


@pytest.fixture(scope="module")
def outcomes(corpus) -> dict:
    return {name: (cli(*_argv(name, args, corpus)[0]), _argv(name, args, corpus)[1], corpus)
            for name, args, _ in CASES}


def test_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name, args, wants", CASES, ids=[c[0] for c in CASES])
def test_bad_input(outcomes, name, args, wants):
    if name == "device_cuda_without_cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    p, out, d = outcomes[name]
    lines = p.stderr.splitlines()
    assert p.returncode == 2, f"exit {p.returncode}\n{p.stderr}"
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for want in wants:
        assert want.format(d=d) in lines[0], f"{want.format(d=d)!r} not in {lines[0]!r}"
    assert "Traceback" not in p.stderr + p.stdout
    assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.iterdir())}"


# A case each from the file, the config and the command line: the installed command exits and prints
# exactly as main() does in this process.
REAL_PROCESS = ["missing_file", "unknown_nested", "unknown_option"]


@pytest.mark.parametrize("name", REAL_PROCESS)
def test_installed_command_says_the_same(corpus, outcomes, name):
    args = dict((c[0], c[1]) for c in CASES)[name]
    argv, out = _argv(name, args, corpus)
    p = run_cli(*argv, timeout=300)
    inproc = outcomes[name][0]
    assert (p.returncode, p.stderr, p.stdout) == (inproc.returncode, inproc.stderr, inproc.stdout)
    assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.iterdir())}"


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file; the not-UTF-8 case covers an unreadable config")
    cfg = write_config(tmp_path / "secret.yaml")
    cfg.chmod(0)
    p = cli("validate", cfg, check=2)
    assert p.stderr.strip() == f"error: {cfg}: permission denied: cannot read the file"
