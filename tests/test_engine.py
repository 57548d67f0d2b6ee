"""One engine for K >= 1 models: each model of a stacked run follows the rules of its lone run.

The oracle is the lone run (K = 1) of each seed: a stacked model's status, ``diverged_at_step``, rows
and checkpoint equal its lone run's, however its neighbours fare.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_same_numbers, lone_run, together, train_together

from skipexp.core import config
from skipexp.rundir import files
from skipexp.training import fit, modelstack


def tiny(**changes: dict) -> dict:
    raw = copy.deepcopy(TINY)
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


def test_seeds_that_diverge_at_different_steps_each_record_their_own_step(tmp_path: Path) -> None:
    # at this learning rate seed 0 trains to the end and seeds 2, 4, 6 blow up at steps 12, 9 and 7 on their
    # lone runs; with a log step every 4, two of those are found by the per-step check alone
    raw = tiny(model={"init": "kaiming"}, train={"lr": 0.05}, log={"every": 4, "checkpoint": "none"})
    seeds = [0, 2, 4, 6]
    results = together(raw, seeds, tmp_path / "together")
    steps = {}
    for seed, result in zip(seeds, results):
        alone = lone_run(raw, seed, tmp_path / "alone")
        assert_same_numbers(result.run_dir, alone)   # status and diverged_at_step too
        assert result.status == files.read_json(alone / "meta.json")["status"]
        steps[seed] = files.read_json(result.run_dir / "meta.json").get("diverged_at_step")
    assert steps[0] is None and results[0].status == "completed"
    diverged = [steps[s] for s in seeds[1:]]
    assert len(set(diverged)) == 3 and all(diverged), steps   # otherwise the test shows nothing
    assert any(s % 4 for s in diverged), steps                 # found between log steps


def poison_gradient(monkeypatch: pytest.MonkeyPatch, seed: int, step: int) -> None:
    """Make one weight gradient of ``seed``'s model NaN at ``step`` while its loss stays finite."""
    def wrap(backward):
        def poisoned(self, losses):
            backward(self, losses)
            for k, run in enumerate(self.runs):
                if run.cfg.seeds[0] == seed and run.step == step - 1:
                    next(self.model.parameters()).grad[k].view(-1)[0] = float("nan")
        return poisoned
    monkeypatch.setattr(modelstack.ModelStack, "backward", wrap(modelstack.ModelStack.backward))


def test_a_gradient_that_is_not_finite_retires_its_model_at_that_step(tmp_path: Path, monkeypatch) -> None:
    # the loss is finite at step 10 (not a log step): only the every-step check of the gradients sees it
    poison_gradient(monkeypatch, seed=3, step=10)
    raw = tiny(log={"every": 100, "checkpoint": "last"})
    results = together(raw, [1, 3, 5], tmp_path / "together")
    assert [r.status for r in results] == ["completed", "diverged", "completed"]
    assert files.read_json(results[1].run_dir / "meta.json")["diverged_at_step"] == 10
    for seed, result in zip([1, 3, 5], results):
        assert_same_numbers(result.run_dir, lone_run(raw, seed, tmp_path / "alone"))
    # its last checkpoint stays the one at the end of epoch 1 (8 steps), before the bad gradient
    assert torch.load(results[1].run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 8


def test_an_update_that_overflows_one_model_retires_it_without_a_checkpoint(tmp_path: Path) -> None:
    # one step at a learning rate where seed 6's first update overflows its weights (its largest gradient is
    # ~24, 3e37 * 24 > float32's max) and seed 5's (largest ~4) does not: finite gradients, non-finite weights
    raw = tiny(model={"init": "kaiming"}, train={"steps": 1, "lr": 3e37}, log={"every": 4, "checkpoint": "last"})
    raw["train"].pop("epochs")
    results = together(raw, [5, 6], tmp_path / "together")
    assert [r.status for r in results] == ["completed", "diverged"]
    assert files.read_json(results[1].run_dir / "meta.json")["diverged_at_step"] == 1
    assert not (results[1].run_dir / "checkpoints" / "last.pt").exists()   # no checkpoint with NaNs
    for seed, result in zip([5, 6], results):
        assert_same_numbers(result.run_dir, lone_run(raw, seed, tmp_path / f"alone{seed}"))
    # the survivor's checkpoint is finite and holds its own seed's RNG state, as its lone run's does
    mine = torch.load(results[0].run_dir / "checkpoints" / "last.pt", weights_only=True)
    alone = torch.load(next((tmp_path / "alone5").iterdir()) / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in mine["model"].values())
    assert torch.equal(mine["rng"]["torch"], alone["rng"]["torch"])
    assert mine["rng"]["python"] == alone["rng"]["python"]


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_optimizers_equal_torch_optim_fused_to_the_bit(kind: str, schedule: str) -> None:
    """The oracle: torch.optim's own fused optimizer and LambdaLR, same steps, same numbers and state_dict."""
    from skipexp.training import optim

    t = config.from_dict(tiny(train={"optimizer": kind, "schedule": schedule, "weight_decay": 0.01,
                                     "momentum": 0.8})).train
    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    theirs.load_state_dict(ours.state_dict())
    opt = optim.build_optimizer(ours.parameters(), t)
    sched = optim.build_schedule(opt, t, 6)
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
    kw = {"momentum": t.momentum} if kind == "sgd" else {"betas": (t.momentum, 0.999)}
    ref = cls(theirs.parameters(), lr=t.lr, weight_decay=t.weight_decay, fused=True, **kw)
    factor = optim.SCHEDULES.get(schedule)
    ref_sched = torch.optim.lr_scheduler.LambdaLR(ref, lambda s: factor(s, 6))
    for step in range(5):
        x = torch.randn(4, 5)
        for model, o, s in ((ours, opt, sched), (theirs, ref, ref_sched)):
            o.zero_grad()
            model(x).square().sum().backward()
            o.step()
            s.step()
        for a, b in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(a, b), step
    assert sched.get_last_lr() == ref_sched.get_last_lr()
    mine, ref_state = opt.state_dict(), ref.state_dict()
    assert mine["param_groups"] == ref_state["param_groups"] and sched.state_dict() == ref_sched.state_dict()
    for i, state in ref_state["state"].items():
        assert mine["state"][i].keys() == state.keys()
        assert all(torch.equal(mine["state"][i][k], v) for k, v in state.items())
    # and torch's state loads into ours (checkpoints written before these optimizers resume)
    again = optim.build_optimizer(ours.parameters(), t)
    again.load_state_dict(ref_state)
    assert again.state_dict()["param_groups"] == ref_state["param_groups"]


def test_training_does_not_import_torch_dynamo(tmp_path: Path) -> None:
    """torch.optim's optimizers import torch._dynamo when built or stepped: seconds per process."""
    import subprocess
    import sys

    import yaml

    code = ("import sys, yaml; from pathlib import Path; from skipexp.core import config; "
            "from skipexp.training import fit; "
            f"cfg = config.from_dict(yaml.safe_load(Path({str(tmp_path / 'c.yaml')!r}).read_text())); "
            f"fit.fit([cfg], [fit.create_run(cfg, Path({str(tmp_path)!r}))]); "
            "print('torch._dynamo' in sys.modules)")
    for kind in ("sgd", "adam"):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny(train={"optimizer": kind, "steps": 2, "grad_clip": 1.0})))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False", (kind, out.stdout, out.stderr)


def test_models_trained_together_must_differ_only_in_per_model_values(tmp_path: Path) -> None:
    cfg = config.from_dict(tiny())
    cfgs = [cfg.replace(seed=1, name="a"), cfg.replace(seed=2, name="b", device="cuda")]
    with pytest.raises(ValueError, match="but for per-model values"):
        train_together(cfgs, [tmp_path / "a", tmp_path / "b"])


def test_train_config_makes_a_folder_per_seed_trained_together(tmp_path: Path) -> None:
    cfg = config.from_dict(tiny(train={"steps": 2}, log={"checkpoint": "none"})).replace(seed=[4, 7])
    results = fit.train_config(cfg, tmp_path / "runs")
    assert [r.run_dir.name.rsplit("-", 1)[-1] for r in results] == ["seed4", "seed7"]
    assert [r.status for r in results] == ["completed", "completed"]
    assert [files.read_json(r.run_dir / "meta.json")["seeds_together"] for r in results] == [[4, 7], [4, 7]]
    single = fit.train_config(cfg.replace(seed=4, name="one"), tmp_path / "one")
    assert [r.status for r in single] == ["completed"] and single[0].run_dir.parent == tmp_path / "one"
