"""Seeds trained together: each folder must equal a lone run of its seed (the oracle), for every model kind."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml
from conftest import assert_same_numbers, cli, lone_run, model_of, together, write_config

from skipexp.core import config
from skipexp.rundir import files
from skipexp.training import stacked

CSVS = ["metrics.csv", "eval.csv", "grad_norms.csv", "act_grad_norms.csv", "act_norms.csv"]


def test_cli_seed_list_writes_folders_equal_to_lone_runs(tmp_path: Path) -> None:
    cfg_path = write_config(tmp_path / "tiny.yaml", {"log.checkpoint": "last", "log.plots": True})
    p = cli("train", cfg_path, "seed=[0,1]", "--out", tmp_path / "runs", "--threads", "1", check=0)
    dirs = sorted((tmp_path / "runs").iterdir())
    assert [d.name.rsplit("-", 1)[-1] for d in dirs] == ["seed0", "seed1"]
    assert all(str(d) in p.stdout for d in dirs)
    for seed in (0, 1):
        alone = lone_run(yaml.safe_load(cfg_path.read_text()), seed, tmp_path / "alone")
        mine = dirs[seed]
        assert_same_numbers(mine, alone)
        meta = files.read_json(mine / "meta.json")
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
    assert stacked.unstackable_reason(model_of(config.from_dict({**raw, "seed": [0, 1]}))) is None
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
        steps.append(files.read_json(result.run_dir / "meta.json")["diverged_at_step"])
        assert result.status == "diverged"
    assert len(set(steps)) == 3, steps   # otherwise the test shows nothing about seeds going on alone


def test_batchnorm_seeds_train_together_each_over_its_own_batch(tmp_path: Path) -> None:
    """The oracle for stacked batch norm in a run: every seed's CSVs (test evaluations use its own running
    statistics) equal its lone run's to the bit, running statistics too."""
    raw = yaml.safe_load(write_config(tmp_path / "bn.yaml", {
        "model.norm": "batchnorm", "train.epochs": 3, "log.eval_every": 5, "log.checkpoint": "last"}).read_text())
    assert stacked.unstackable_reason(model_of(config.from_dict({**raw, "seed": [0, 1, 2]}))) is None
    results = together(raw, [0, 1, 2], tmp_path / "runs")
    for seed, result in enumerate(results):
        assert files.read_json(result.run_dir / "meta.json")["vectorized"] is True
        alone = lone_run(raw, seed, tmp_path / "alone")
        assert_same_numbers(result.run_dir, alone)
        mine, theirs = (torch.load(d / "checkpoints" / "last.pt", weights_only=True)["model"]
                        for d in (result.run_dir, alone))
        for key in ("blocks.0.norm.running_mean", "blocks.3.norm.running_var", "blocks.1.norm.num_batches_tracked"):
            assert torch.equal(mine[key], theirs[key]), key


def test_batchnorm_running_statistics_move_every_step_of_a_long_run(tmp_path: Path) -> None:
    """Past the steps after which the engine traces its forward (``TracedForward.TRACE_AFTER``), every step still
    updates the running statistics, and the test evaluation (eval mode: running statistics) agrees with the
    checkpoint's model: a run whose statistics froze evaluated at chance while it trained well."""
    from skipexp.core import data as data_mod
    from skipexp.training.checkpoint import load_trained
    from skipexp.training.modelstack import TracedForward

    steps = TracedForward.TRACE_AFTER + 16
    raw = yaml.safe_load(write_config(tmp_path / "bn.yaml", {
        "model.norm": "batchnorm", "train.steps": steps, "log.every": steps, "log.eval_every": steps,
        "log.checkpoint": "last"}).read_text())
    run_dir = lone_run(raw, 0, tmp_path / "runs")
    _, model, splits, step = load_trained(run_dir, lambda c: data_mod.load(c.data))
    assert step == steps
    assert int(model.get_submodule("blocks.0.norm").num_batches_tracked) == steps
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(splits.x_test), splits.y_test).item()
    with open(run_dir / "eval.csv") as f:
        logged = float(list(csv.DictReader(f))[-1]["test_loss"])
    assert loss == pytest.approx(logged, rel=1e-5)


@pytest.mark.parametrize("h", [16, 12])
def test_stacked_batchnorm_is_each_models_batchnorm_and_does_not_depend_on_k(h: int):
    """Each model's slice of StackedBatchNorm is its own BatchNorm1d within float rounding (forward, backward,
    running statistics over many steps, eval mode on them), and to the bit the same whatever K."""
    torch.manual_seed(0)
    k, n = 3, 64
    lone = [torch.nn.BatchNorm1d(h) for _ in range(k)]
    for b in lone:
        with torch.no_grad():
            b.weight.uniform_(0.5, 1.5)
            b.bias.uniform_(-0.5, 0.5)

    def stack_of(bns: list) -> stacked.StackedBatchNorm:
        return stacked.StackedBatchNorm(*(torch.stack([getattr(b, a).detach() for b in bns]) for a in
                                          ("weight", "bias", "running_mean", "running_var")),
                                        bns[0].num_batches_tracked.clone(), 1e-5, 0.1)

    stack, first = stack_of(lone), stack_of(lone[:1])   # K = 3, and model 0 alone as K = 1
    for _ in range(50):
        x = (torch.randn(k, n, h) * 3 + 1).requires_grad_(True)
        x0 = x.detach()[:1].clone().requires_grad_(True)
        g = torch.randn(k, n, h)
        y, y0 = stack(x), first(x0)
        (y * g).sum().backward()
        (y0 * g[:1]).sum().backward()
        assert torch.equal(y[0], y0[0]) and torch.equal(x.grad[0], x0.grad[0])
        assert torch.equal(stack.running_var[0], first.running_var[0])
        for i, b in enumerate(lone):
            xi = x.detach()[i].clone().requires_grad_(True)
            yi = b(xi)
            (yi * g[i]).sum().backward()
            torch.testing.assert_close(y[i], yi, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(x.grad[i], xi.grad, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(stack.running_mean[i], b.running_mean)
            torch.testing.assert_close(stack.running_var[i], b.running_var)
    assert torch.equal(stack.weight.grad[0], first.weight.grad[0])
    assert torch.equal(stack.bias.grad[0], first.bias.grad[0])
    for i, b in enumerate(lone):
        torch.testing.assert_close(stack.weight.grad[i], b.weight.grad, rtol=1e-4, atol=1e-4)
        assert b.num_batches_tracked == stack.num_batches_tracked == 50
    stack.eval()
    x = torch.randn(k, n, h)
    assert all(torch.allclose(b.eval()(x[i]), stack(x)[i], rtol=1e-5, atol=1e-5) for i, b in enumerate(lone))


def test_a_model_that_cannot_stack_is_refused_in_one_line_and_leaves_no_folder(tmp_path: Path, monkeypatch) -> None:
    """Every model trains as a stack (a lone run is a stack of one); a module without a stacked form (none of
    skipexp's own today: here ReLU's registration taken away) is a clear error before anything trains."""
    monkeypatch.delitem(stacked.STACKABLE, torch.nn.ReLU)
    out = tmp_path / "runs"
    r = cli("train", write_config(tmp_path / "t.yaml", {"train.steps": 3}), "--out", out, check=2)
    assert "cannot train this model" in r.stderr and "no stacked form of ReLU" in r.stderr
    assert not out.exists() or not any(out.iterdir())
