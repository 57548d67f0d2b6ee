"""Stacked conv nets: model k of a stack equals its lone run (a stack of one) to the bit on the CPU.

The configs run long enough, at a learning rate high enough, for a difference in the last bit to grow into a
visible one (a grouped-convolution stack, whose backward rounds by K, differed from step 3 here), and cover
what has per-model arithmetic of its own: batch norm's statistics, GroupNorm, ReZero's alpha, the
augmentation draws, and a plain net stacked beside an identity-skip one (a shortcut of scale 0); and an
augmented run stopped mid-epoch and resumed equals its uninterrupted self.
"""
from __future__ import annotations

import copy

import pytest
import torch
from conftest import assert_same_numbers, lone_run, together, train_one, train_together
from test_conv import TINY_CONV

from skipexp.core import config
from skipexp.rundir import runio
from skipexp.training import fit

CHAOTIC = copy.deepcopy(TINY_CONV)
CHAOTIC["train"].update(epochs=16, lr=0.2, momentum=0.9)        # 64 steps
CHAOTIC["log"].update(every=4)

CASES = {
    "batchnorm-augment": {"model.norm": "batchnorm", "data.augment": ["crop", "flip"], "data.crop_padding": 2},
    "pre-layernorm-rezero": {"model.order": "pre", "model.norm": "layernorm", "model.skip.kind": "rezero"},
}


def with_keys(raw: dict, keys: dict) -> dict:
    raw = copy.deepcopy(raw)
    for dotted, value in keys.items():
        *parents, last = dotted.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return raw


@pytest.mark.parametrize("case", list(CASES))
def test_a_stacked_conv_model_is_its_lone_run(tmp_path, case):
    raw = with_keys(CHAOTIC, CASES[case])
    alone = lone_run(raw, 1, tmp_path / "alone")
    stacked = together(raw, [0, 1], tmp_path / "together")
    mate = stacked[1].run_dir
    assert runio.read_json(mate / "meta.json")["vectorized"] is True
    assert_same_numbers(alone, mate)
    first = runio.read_csv(alone / "metrics.csv")
    assert first[0]["train_loss"] != first[-1]["train_loss"]       # it trained
    if "data.augment" in CASES[case]:   # the draws are in the checkpoint: a resumed run draws on
        state = torch.load(alone / "checkpoints" / "last.pt", weights_only=True)["model"]
        assert int(state["input.augment.draws"]) == 64


def test_plain_beside_identity_stacks_as_scale_zero(tmp_path):
    raw = with_keys(CHAOTIC, {"train.epochs": 4})
    cfgs = [config.from_dict(with_keys(raw, {"model.skip.kind": kind, "seed": 0, "name": kind}))
            for kind in ("identity", "none")]
    dirs = [fit.create_run(c, tmp_path / "together") for c in cfgs]
    results = train_together(cfgs, dirs)
    assert runio.read_json(results[1].run_dir / "meta.json")["vectorized"] is True
    alone = lone_run(with_keys(raw, {"model.skip.kind": "none", "name": "none"}), 0, tmp_path / "alone")
    assert_same_numbers(alone, results[1].run_dir)


def test_an_interrupted_augmented_run_resumes_to_the_same_numbers(tmp_path):
    """The augmentation draws and batch norm's statistics are in the checkpoint: stopped mid-epoch and resumed,
    a run equals its uninterrupted self."""
    raw = with_keys(CHAOTIC, {"train.epochs": 6, "model.norm": "batchnorm", "data.augment": ["crop", "flip"],
                              "data.crop_padding": 2})
    whole = lone_run(raw, 0, tmp_path / "whole")
    cfg = config.from_dict({**raw, "seed": 0})
    run_dir = fit.create_run(cfg, tmp_path / "stopped")
    calls = iter(range(10**6))
    assert train_one(cfg, run_dir, should_stop=lambda: next(calls) >= 9).status == "interrupted"
    assert fit.resume(run_dir).status == "completed"
    assert_same_numbers(whole, run_dir)
