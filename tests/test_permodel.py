"""Models that differ in per-model values train together, each equal to its lone run (the oracle).

Tolerance: the CSVs as tests/test_vectorized.py compares them (rel 2e-4, abs 1e-6: the stacked
matmul and norms round differently from the lone ones); checkpoint tensors rel 1e-4, abs 1e-6.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_same_numbers, model_of, train_one, train_together

from skipexp.core import config
from skipexp.core.config import RunConfig
from skipexp.rundir import files, runio
from skipexp.training import fit, stackable, stacked


def make(name: str, **dotted) -> RunConfig:
    raw = copy.deepcopy(TINY)
    raw["name"] = name
    raw["log"] = {**raw["log"], "eval_every": 4}
    for key, value in dotted.items():
        node = raw
        *parents, last = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return config.from_dict(raw)


def lone(cfg: RunConfig, out: Path) -> Path:
    return train_one(cfg, fit.create_run(cfg, out)).run_dir


def together(cfgs: list[RunConfig], out: Path) -> list[fit.RunResult]:
    assert stackable.group_configs(cfgs) == [list(range(len(cfgs)))]
    return train_together(cfgs, [fit.create_run(c, out) for c in cfgs])


def assert_same_checkpoint(a: Path, b: Path) -> None:
    ca, cb = (torch.load(d / "checkpoints" / "last.pt", weights_only=True) for d in (a, b))
    assert ca["step"] == cb["step"]
    assert ca["model"].keys() == cb["model"].keys()
    for key in ca["model"]:
        assert torch.equal(ca["model"][key], cb["model"][key]), key
    oa, ob = ca["optimizer"], cb["optimizer"]
    assert oa["param_groups"] == ob["param_groups"]
    assert oa["state"].keys() == ob["state"].keys()
    for i in oa["state"]:
        assert oa["state"][i].keys() == ob["state"][i].keys()
        for key in oa["state"][i]:
            assert torch.equal(oa["state"][i][key], ob["state"][i][key]), (i, key)
    assert ca["scheduler"] == cb["scheduler"]


def assert_each_equals_its_lone_run(cfgs: list[RunConfig], tmp_path: Path) -> list[fit.RunResult]:
    results = together(cfgs, tmp_path / "together")
    for cfg, result in zip(cfgs, results):
        alone = lone(cfg, tmp_path / "alone")
        assert_same_numbers(result.run_dir, alone)
        assert (result.run_dir / "config.yaml").read_text() == (alone / "config.yaml").read_text()
        if result.status == "completed":
            assert_same_checkpoint(result.run_dir, alone)
        meta = files.read_json(result.run_dir / "meta.json")
        assert meta["vectorized"] is True and meta["trained_with"] == [r.run_dir.name for r in results]
    return results


# --- the oracle: each model of a stack is its lone run ------------------------------------------

def test_sgd_models_with_their_own_hyperparameters_equal_their_lone_runs(tmp_path: Path) -> None:
    cfgs = [
        make("base"),
        make("lr", seed=1, train__lr=0.1),
        make("nomomentum", train__momentum=0.0, train__weight_decay=1e-3),
        make("clip", seed=2, train__grad_clip=0.05, model__init="kaiming"),
        make("cosine", train__schedule="cosine", train__lr=0.02, model__init="orthogonal"),
        make("plain", seed=3, model__skip__kind="none"),
        make("half", model__skip__scale=0.5, train__grad_clip=1.0),
    ]
    results = assert_each_equals_its_lone_run(cfgs, tmp_path)
    assert [r.status for r in results] == ["completed"] * len(cfgs)
    lrs = {c.name: [row["lr"] for row in runio.read_csv(r.run_dir / "metrics.csv")] for c, r in zip(cfgs, results)}
    assert lrs["lr"][0] == 0.1 and lrs["cosine"][-1] < lrs["cosine"][0]


def test_models_that_differ_only_in_their_schedule_equal_their_lone_runs(tmp_path: Path) -> None:
    results = assert_each_equals_its_lone_run([make("constant"), make("cosine", train__schedule="cosine")], tmp_path)
    lrs = [[row["lr"] for row in runio.read_csv(r.run_dir / "metrics.csv")] for r in results]
    assert lrs[0][-1] == lrs[0][0] > lrs[1][-1]


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_models_with_their_own_hyperparameters_equal_their_lone_runs(tmp_path: Path, optimizer: str) -> None:
    t = {"train__optimizer": optimizer, "train__lr": 1e-3}
    cfgs = [make("a", **t), make("b", **{**t, "train__lr": 3e-3}), make("c", **{**t, "train__momentum": 0.5}),
            make("d", **{**t, "train__weight_decay": 0.01, "seed": 5})]
    assert_each_equals_its_lone_run(cfgs, tmp_path)


def test_gated_models_with_their_own_gate_bias_and_scale_equal_their_lone_runs(tmp_path: Path) -> None:
    g = {"model__skip__kind": "gated"}
    cfgs = [make("g", **g), make("bias", **g, model__skip__gate_bias=1.0),
            make("scale", **g, model__skip__scale=0.0, seed=4)]
    assert_each_equals_its_lone_run(cfgs, tmp_path)


def test_a_model_that_diverges_leaves_the_others_equal_to_their_lone_runs(tmp_path: Path) -> None:
    cfgs = [make("calm"), make("wild", train__lr=1e6, train__momentum=0.0), make("plain", model__skip__kind="none")]
    results = assert_each_equals_its_lone_run(cfgs, tmp_path)
    assert [r.status for r in results] == ["completed", "diverged", "completed"]


def test_train_runs_refuses_models_of_different_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="per-model values"):
        train_together([make("a"), make("b", model__width=8)], [tmp_path / "a", tmp_path / "b"])


# --- grouping: a pure function of the configs ---------------------------------------------------

def test_per_model_values_share_a_group() -> None:
    cfgs = [make("a"), make("b", train__lr=0.2, seed=3), make("c", model__init="xavier", train__momentum=0.0),
            make("d", train__grad_clip=1.0, train__weight_decay=0.1, train__schedule="cosine"),
            make("e", model__skip__scale=0.0)]
    assert stackable.group_configs(cfgs) == [[0, 1, 2, 3, 4]]
    assert len({stackable.stack_key(c) for c in cfgs}) == 1


@pytest.mark.parametrize("dotted", [
    {"model__width": 8}, {"model__depth": 2}, {"model__activation": "tanh"}, {"model__norm": "layernorm"},
    {"model__skip__kind": "projection"}, {"model__skip__every": 2}, {"data__seed": 1}, {"data__n_train": 256},
    {"train__batch_size": 32}, {"train__epochs": 3}, {"train__optimizer": "adam"}, {"log__every": 3},
    {"device": "cuda"}, {"train__threads": 2},
])
def test_shared_values_split_groups(dotted: dict) -> None:
    assert stackable.group_configs([make("a"), make("b", **dotted), make("c")]) == [[0, 2], [1]]


def test_kind_none_joins_identity_of_its_shape_whatever_its_placement() -> None:
    cfgs = [make("plain", model__skip__kind="none"), make("skip"), make("every2", model__skip__every=2),
            make("plain2", model__skip__kind="none", seed=1), make("narrow", model__skip__kind="none", model__width=8),
            make("gated", model__skip__kind="gated")]
    assert stackable.group_configs(cfgs) == [[0, 1, 3], [2], [4], [5]]
    only_none = [make("p", model__skip__kind="none"), make("q", model__skip__kind="none", train__lr=0.1)]
    assert stackable.group_configs(only_none) == [[0, 1]]


def test_models_of_other_norms_are_groups_of_their_own() -> None:
    bn = [make("a", model__norm="batchnorm"), make("b", model__norm="batchnorm", seed=1), make("c")]
    assert stackable.group_configs(bn) == [[0, 1], [2]]   # batch norm stacks, with statistics per model
    with pytest.raises(ValueError, match="one config is one model"):
        stackable.group_configs([make("a", seed=[0, 1])])


@pytest.mark.parametrize("norm", ["none", "layernorm", "batchnorm"])
@pytest.mark.parametrize("kind", ["none", "identity", "projection", "rezero", "gated", "dense"])
def test_every_skipexp_model_stacks(norm: str, kind: str) -> None:
    """Grouping is a function of the configs alone because every model of skipexp's own stacks."""
    assert stacked.unstackable_reason(model_of(make("m", model__norm=norm, model__skip__kind=kind))) is None


def test_grouping_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, skipexp.training.stackable; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the optimizer alone: each model's update is its lone optimizer's, to the bit ---------------

@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_per_model_hyperparameters_update_each_slice_as_its_lone_optimizer_to_the_bit(kind: str) -> None:
    from skipexp.training.optim import build_optimizer, build_schedule, build_stacked_optimizer

    base = make("m", train__optimizer=kind).train
    trains = [base, base.__class__(**{**base.__dict__, "lr": 0.2, "momentum": 0.0}),
              base.__class__(**{**base.__dict__, "weight_decay": 0.1, "schedule": "cosine"}), base]
    torch.manual_seed(0)
    stacked_params = [torch.nn.Parameter(torch.randn(len(trains), *shape)) for shape in ((5, 4), (4,))]
    lone_params = [[torch.nn.Parameter(p[k].detach().clone()) for p in stacked_params] for k in range(len(trains))]
    opt = build_stacked_optimizer(stacked_params, trains)
    sched = build_schedule(opt, trains[0], 5, trains)
    lones = [build_optimizer(ps, t) for ps, t in zip(lone_params, trains)]
    lone_scheds = [build_schedule(o, t, 5) for o, t in zip(lones, trains)]
    assert len(opt.calls()) == 3   # models 0 and 3 share one call
    for _ in range(4):
        grads = [torch.randn_like(p) for p in stacked_params]
        for p, g in zip(stacked_params, grads):
            p.grad = g
        for k, ps in enumerate(lone_params):
            for p, g in zip(ps, grads):
                p.grad = g[k].clone()
        for o, s in [(opt, sched), *zip(lones, lone_scheds)]:
            o.step()
            s.step()
        for k, ps in enumerate(lone_params):
            for p, mine in zip(stacked_params, ps):
                assert torch.equal(p[k], mine), (kind, k)
    assert sched.get_last_lr() == [s.get_last_lr()[0] for s in lone_scheds]


def test_models_with_the_fair_inits_equal_their_lone_runs(tmp_path: Path) -> None:
    """The critical inits and looks-linear copy their own weights into the stack, as every init does."""
    cfgs = [make("critical", model__init="critical", model__skip__kind="none"),
            make("orth", model__init="orthogonal-critical", seed=1),
            make("ll", model__init="looks-linear", model__skip__kind="none", seed=2)]
    assert_each_equals_its_lone_run(cfgs, tmp_path)


def test_learned_projections_at_the_identity_and_drawn_equal_their_lone_runs(tmp_path: Path) -> None:
    p = {"model__skip__kind": "projection", "model__skip__project": "always"}
    cfgs = [make("drawn", **p), make("eye", **p, model__skip__project_init="identity"),
            make("eye-half", **p, model__skip__project_init="identity", model__skip__scale=0.5)]
    assert_each_equals_its_lone_run(cfgs, tmp_path)


def test_pre_activation_models_stack_with_each_other_not_with_post(tmp_path: Path) -> None:
    pre = {"model__order": "pre", "model__norm": "layernorm"}
    cfgs = [make("pre", **pre), make("pre-plain", **pre, model__skip__kind="none", model__init="critical")]
    assert_each_equals_its_lone_run(cfgs, tmp_path)
    assert stackable.group_configs([make("pre", **pre), make("post", model__norm="layernorm")]) == [[0], [1]]
