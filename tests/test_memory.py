"""What a config needs in memory, known before the model is built: its parameter count (against the built
model as the oracle), the optimizer state per parameter (against the optimizers' own), and the refusal of a
model too big for the machine, with parameters and sizes in one line."""
from __future__ import annotations

import pytest
import torch
from conftest import cli, write_config

from skipexp.core import config, registry
from skipexp.core.config import ModelConfig, SkipConfig, TrainConfig
from skipexp.core.models import SkipNet, count_parameters, parameter_count
from skipexp.training import memory
from skipexp.training.optim import build_optimizer

SHAPES = [dict(depth=4, width=8), dict(depth=4, width=[8, 12, 12, 6]), dict(depth=3, width=8, hidden=5),
          dict(depth=4, width=8, span=2), dict(depth=6, width=8, every=2), dict(depth=4, width=8, blocks=[1, 3])]


@pytest.mark.parametrize("kind", registry.SKIPS.names)
@pytest.mark.parametrize("norm", registry.NORMS.names)
def test_the_parameter_count_without_a_model_is_the_models(kind, norm):
    for shape in SHAPES:
        shape = dict(shape)
        skip = {k: shape.pop(k) for k in ("span", "every", "blocks") if k in shape}
        if kind == "identity" and isinstance(shape["width"], list):
            continue   # identity cannot add unequal widths
        for project in ("auto", "always") if registry.SKIPS.takes(kind, "project") else ("auto",):
            cfg = ModelConfig(norm=norm, skip=SkipConfig(kind=kind, project=project, **skip), **shape)
            assert parameter_count(cfg, 7, 3) == count_parameters(SkipNet(cfg, 7, 3)), cfg


@pytest.mark.parametrize("name", registry.OPTIMIZERS.names)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_state_per_parameter_is_what_each_optimizer_keeps(name, momentum):
    t = TrainConfig(optimizer=name, momentum=momentum)
    p = torch.nn.Parameter(torch.ones(5))
    opt = build_optimizer([p], t)
    p.grad = torch.ones(5)
    opt.step()
    kept = sum(v.numel() for s in opt.state_dict()["state"].values() for v in s.values()
               if torch.is_tensor(v) and v.numel() == p.numel())
    assert kept == memory.STATE_PER_PARAMETER[name](t) * p.numel()


def test_a_model_too_big_is_refused_before_anything_is_built_stating_parameters_and_memory(tmp_path, monkeypatch):
    path = write_config(tmp_path / "c.yaml", {"model.width": 64, "data.input_dim": 32})
    # the model.depth=100000: 832 M parameters (as it saw the model build), more than 8 GB of RAM
    need = memory.estimate([config.load(path, ["model.depth=100000"])])
    assert need.parameters == 832_002_762 and need.bytes > 4 * 4 * need.parameters
    monkeypatch.setattr(memory, "available_ram", lambda: 50 * 10**6)   # this test's machine: 50 MB free
    need = memory.estimate([config.load(path, ["model.depth=2000"])])
    assert need.bytes > 50 * 10**6 and need.parameters == (32 * 64 + 64) + 2000 * 2 * (64 * 64 + 64) + (64 * 10 + 10)
    want = (f"model: the model has 16,642,762 parameters; training needs about {memory.size(need.bytes)} (weights, "
            "gradients, optimizer state, activations at batch 64) but this machine has 50.0 MB of RAM available; "
            "make it smaller (model.depth, model.width)")
    for command in ("validate", "train"):
        p = cli(command, path, "model.depth=2000", "--out", tmp_path / "runs", check=2) if command == "train" \
            else cli(command, path, "model.depth=2000", check=2)
        assert p.stderr == f"error: {path}: {want}\n", p.stderr
    assert not (tmp_path / "runs").exists()
    # and one that fits is told: its train.log says what it needs, validate's table too
    p = cli("validate", path, check=0)
    assert "parameters, about" in p.stdout and "to train" in p.stdout
    cli("train", path, "--out", tmp_path / "runs", check=0)
    (run,) = (tmp_path / "runs").iterdir()
    need = memory.estimate([config.load(path)])
    assert f"; {need}\n" in (run / "train.log").read_text()


def test_an_unexpected_error_outside_a_run_does_not_point_at_a_train_log(tmp_path, monkeypatch):
    path = write_config(tmp_path / "c.yaml")
    # a width no machine has memory for: refused with the sizes (before: the allocator's error, "see train.log")
    p = cli("validate", path, "model.width=1000000000", check=2)
    assert "parameters; training needs about" in p.stderr and "train.log" not in p.stderr

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(SkipNet, "__init__", broken)
    p = cli("validate", path, check=1)
    assert p.stderr == "error: RuntimeError: boom (SKIPEXP_DEBUG=1 shows the traceback)\n"
