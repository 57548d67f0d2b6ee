"""Seeds trained together: each folder must equal a lone run of its seed (the oracle), for every model kind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import assert_same_numbers, lone_run, run_cli, together, write_config

from skipexp.core import config
from skipexp.rundir import runio
from skipexp.training import stacked
from skipexp.training.threads import choose_threads

CSVS = ["metrics.csv", "eval.csv", "grad_norms.csv", "act_grad_norms.csv", "act_norms.csv"]


def test_cli_seed_list_writes_folders_equal_to_lone_runs(tmp_path: Path) -> None:
    cfg_path = write_config(tmp_path / "tiny.yaml", {"log.checkpoint": "last", "log.plots": True})
    p = run_cli("train", cfg_path, "seed=[0,1]", "--out", tmp_path / "runs", "--threads", "1", check=0)
    dirs = sorted((tmp_path / "runs").iterdir())
    assert [d.name.rsplit("-", 1)[-1] for d in dirs] == ["seed0", "seed1"]
    assert all(str(d) in p.stdout for d in dirs)
    for seed in (0, 1):
        alone = lone_run(yaml.safe_load(cfg_path.read_text()), seed, tmp_path / "alone")
        mine = dirs[seed]
        assert_same_numbers(mine, alone)
        meta = runio.read_json(mine / "meta.json")
        assert meta["vectorized"] is True and meta["seeds_together"] == [0, 1]
        assert meta["threads"] == 1 and meta["seed"] == seed
        assert yaml.safe_load((mine / "config.yaml").read_text())["seed"] == seed
        assert (mine / "plots" / "loss.png").is_file() and (mine / "summary.json").is_file()
        # the checkpoint is a lone run's: same keys and shapes, equal weights and momentum
        ca = torch.load(mine / "checkpoints" / "last.pt", weights_only=True)
        cb = torch.load(alone / "checkpoints" / "last.pt", weights_only=True)
        assert ca["step"] == cb["step"]
        for key, value in cb["model"].items():
            assert ca["model"][key].shape == value.shape
            assert torch.equal(ca["model"][key], value), key
        for i, state in cb["optimizer"]["state"].items():
            assert torch.equal(ca["optimizer"]["state"][i]["momentum_buffer"], state["momentum_buffer"]), i
        assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])


VARIANTS = {
    "rezero-layernorm-adam-clip": {"model.skip.kind": "rezero", "model.norm": "layernorm",
                                   "train.optimizer": "adam", "train.lr": 0.01, "train.grad_clip": 0.5},
    "gated-projection-widths": {"model.skip.kind": "gated", "model.width": [16, 24, 24, 8],
                                "model.init": "orthogonal", "train.schedule": "cosine"},
    "dense-span2-tanh": {"model.skip.kind": "dense", "model.skip.span": 2, "model.activation": "tanh",
                         "train.optimizer": "adamw", "train.lr": 0.01, "train.weight_decay": 0.1},
    "plain-eval-every": {"model.skip.kind": "none", "log.eval_every": 3, "train.steps": 7},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_kind_equals_lone_runs(tmp_path: Path, variant: str) -> None:
    raw = yaml.safe_load(write_config(tmp_path / "c.yaml", {"log.checkpoint": "none", **VARIANTS[variant]})
                         .read_text())
    assert stacked.unsupported(config.from_dict({**raw, "seed": [0, 1]})) is None
    results = together(raw, [3, 5], tmp_path / "together")
    for seed, result in zip([3, 5], results):
        assert_same_numbers(result.run_dir, lone_run(raw, seed, tmp_path / "alone"))


def test_a_diverged_seed_stops_and_the_others_go_on(tmp_path: Path) -> None:
    # at this learning rate these seeds blow up at different steps (5, 7 and 8 on the lone runs)
    raw = yaml.safe_load(write_config(tmp_path / "c.yaml", {
        "model.init": "kaiming", "train.lr": 0.1, "log.every": 4, "log.checkpoint": "none"}).read_text())
    results = together(raw, [0, 3, 4], tmp_path / "together")
    steps = []
    for seed, result in zip([0, 3, 4], results):
        alone = lone_run(raw, seed, tmp_path / "alone")
        assert_same_numbers(result.run_dir, alone)
        steps.append(runio.read_json(result.run_dir / "meta.json")["diverged_at_step"])
        assert result.status == "diverged"
    assert len(set(steps)) == 3, steps   # otherwise the test shows nothing about seeds going on alone


def test_batchnorm_falls_back_to_sequential_with_a_note(tmp_path: Path) -> None:
    raw = yaml.safe_load(write_config(tmp_path / "bn.yaml", {
        "model.norm": "batchnorm", "train.steps": 3, "train.threads": None, "log.checkpoint": "none"}).read_text())
    reason = stacked.unsupported(config.from_dict({**raw, "seed": [0, 1]}))
    assert reason is not None and "batchnorm" in reason
    results = together(raw, [0, 1], tmp_path / "runs")
    assert [r.status for r in results] == ["completed", "completed"]
    for seed, result in enumerate(results):
        meta = json.loads((result.run_dir / "meta.json").read_text())
        assert meta["vectorized"] is False and "batchnorm" in meta["vectorized_reason"]
        assert meta["seed"] == seed
        # no threads asked for: the count chosen for this model's size
        assert meta["threads"] == choose_threads(config.from_dict(raw))
