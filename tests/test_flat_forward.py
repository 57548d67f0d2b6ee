"""The per-step shortcuts of the engine against their plain forms as oracles.

``flat_forward`` (the traced forward of non-log steps) must give the model's own logits and gradients
to the bit, for every skip kind and norm, lone and stacked; ``nonfinite`` must flag exactly a NaN or
infinite loss or gradient element and leave the gradients as they were.
"""
from __future__ import annotations

import copy

import pytest
import torch
from conftest import TINY, assert_identical, train_one
from torch import nn

from skipexp.core import config
from skipexp.core.metrics import GradProbe
from skipexp.core.models import SkipNet
from skipexp.core.registry import NORMS, SKIPS
from skipexp.training.modelstack import flat_forward, nonfinite
from skipexp.training.stacked import stack_models


def model_of(**model: object) -> SkipNet:
    raw = copy.deepcopy(TINY)
    raw["model"] = {**raw["model"], **model}
    cfg = config.from_dict(raw)
    torch.manual_seed(0)
    return SkipNet(cfg.model, 16, 10)


def assert_same_step(model: nn.Module, flat: nn.Module, x: torch.Tensor) -> None:
    """Equal logits and equal gradients of every parameter, to the bit."""
    assert isinstance(flat, torch.fx.GraphModule), "fell back to the model's own forward"
    assert not any(isinstance(m, nn.Identity) for n in flat.graph.nodes if n.op == "call_module"
                   for m in [flat.get_submodule(n.target)])
    mine, theirs = flat(x), model(x)
    assert torch.equal(mine, theirs)
    params = list(model.parameters())
    g_flat = torch.autograd.grad(mine.square().sum(), params)
    g_model = torch.autograd.grad(theirs.square().sum(), params)
    for a, b in zip(g_flat, g_model):
        assert torch.equal(a, b)


@pytest.mark.parametrize("norm", NORMS.names)
@pytest.mark.parametrize("kind", SKIPS.names)
def test_flat_forward_equals_the_model_to_the_bit(kind: str, norm: str) -> None:
    widths = [16, 24, 24, 16] if kind in ("projection", "gated", "rezero") else 16
    model = model_of(skip={"kind": kind, "span": 2}, norm=norm, width=widths)
    assert_same_step(model, flat_forward(model), torch.randn(32, 16))


def test_flat_forward_of_stacked_models_with_per_model_skip_scales() -> None:
    plain, skip = model_of(skip={"kind": "none"}), model_of(skip={"kind": "identity"})
    stacked = stack_models([skip, plain, skip])
    assert_same_step(stacked, flat_forward(stacked), torch.randn(3, 32, 16))


def test_flat_forward_shares_the_models_parameters_and_mode() -> None:
    model = model_of(norm="batchnorm")
    flat = flat_forward(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    x = torch.randn(32, 16)
    model.eval()
    assert torch.equal(flat(x), model(x))   # eval mode: running statistics, updated weights
    model.train()
    assert torch.equal(flat(x), model(x))


def test_nonfinite_flags_exactly_a_nan_or_inf_element_and_leaves_gradients_alone() -> None:
    one = torch.ones(())
    grads = [torch.randn(8, 8), torch.randn(8)]
    before = [g.clone() for g in grads]
    finite = torch.tensor(1.5)
    assert not nonfinite(finite, grads, one)
    assert all(torch.equal(a, b) for a, b in zip(grads, before))
    assert nonfinite(torch.tensor(float("inf")), grads, one)
    assert nonfinite(torch.tensor([1.0, float("nan")]), grads, one)   # stacked losses: any of them
    huge = [torch.full((8, 8), 1e30)]   # finite elements whose float32 norm overflows: left to the log step
    assert not nonfinite(finite, huge, one)
    for bad in (float("nan"), float("inf"), -float("inf")):
        g = [t.clone() for t in grads]
        g[1][3] = bad
        assert nonfinite(finite, g, one), bad


@pytest.mark.parametrize("shape", [(128, 64), (1000, 37), (257, 300)])
def test_activation_statistics_of_equal_width_boundaries_equal_the_per_boundary_formulas(shape) -> None:
    hs = [(torch.randn(*shape) * (i + 1)).requires_grad_() for i in range(6)]
    for h in hs:
        h.retain_grad()
    sum((h.sin() * h).sum() for h in hs).backward()
    n = shape[0]
    want = torch.stack([h.grad.flatten(1).norm(dim=1).mean() for h in hs]) * n
    assert torch.equal(GradProbe.act_grad_norms(hs), want)
    assert torch.equal(GradProbe.act_rms(hs), torch.stack([h.detach().square().mean().sqrt() for h in hs]))
    mixed = hs[:2] + [torch.randn(n, 5, requires_grad=True)]
    mixed[-1].retain_grad()
    mixed[-1].square().sum().backward()
    assert torch.equal(GradProbe.act_grad_norms(mixed),
                       torch.stack([h.grad.flatten(1).norm(dim=1).mean() for h in mixed]) * n)


@pytest.mark.parametrize("fails", [False, True])
def test_the_loop_leaves_the_garbage_collector_unfrozen(tmp_path, fails: bool) -> None:
    import gc

    from skipexp.training import fit
    from skipexp.training.run import Reporter

    seen = []

    class Watch(Reporter):
        def on_log(self, row: dict) -> None:
            seen.append(gc.get_freeze_count())
            if fails:
                raise RuntimeError("boom")

    raw = copy.deepcopy(TINY)
    raw["train"] = {**raw["train"], "epochs": 1}
    cfg = config.from_dict(raw)
    frozen_before = gc.get_freeze_count()
    if fails:
        with pytest.raises(RuntimeError):
            train_one(cfg, fit.create_run(cfg, tmp_path), reporter=Watch())
    else:
        train_one(cfg, fit.create_run(cfg, tmp_path), reporter=Watch())
    assert seen and seen[0] > frozen_before   # frozen while it trains
    assert gc.get_freeze_count() == frozen_before


@pytest.mark.parametrize("seeds", [[0], [0, 1]])
def test_a_run_long_enough_to_trace_equals_one_that_never_does(tmp_path, monkeypatch, seeds) -> None:
    """The engine switches to the traced forward after TracedForward.TRACE_AFTER non-log steps: every logged number
    and the final weights are those of the model's own forward throughout."""

    from skipexp.training import fit, modelstack

    raw = copy.deepcopy(TINY)
    raw["train"] = {**raw["train"], "epochs": 6}   # 48 steps, 40 of them not logged
    raw["log"] = {**raw["log"], "every": 5, "checkpoint": "last"}
    monkeypatch.setattr(modelstack.TracedForward, "TRACE_AFTER", 10)
    traced = fit.train_config(config.from_dict({**raw, "seed": seeds}), tmp_path / "traced")
    monkeypatch.setattr(modelstack.TracedForward, "TRACE_AFTER", 10**9)
    plain = fit.train_config(config.from_dict({**raw, "seed": seeds}), tmp_path / "plain")
    for a, b in zip(traced, plain):
        assert_identical(a.run_dir, b.run_dir)


def test_short_runs_never_trace() -> None:
    from skipexp.training.modelstack import TracedForward

    model = model_of()
    fast = TracedForward(model, compile=False)
    for _ in range(TracedForward.TRACE_AFTER):
        fast(torch.randn(4, 16))
    assert fast.fn is None
    fast(torch.randn(4, 16))
    assert isinstance(fast.fn, torch.fx.GraphModule)


def test_flat_forward_of_stacked_batchnorm_runs_its_own_forward_and_moves_its_statistics() -> None:
    """Traced through, a batch norm's ``if self.training`` is fixed at trace time and its running statistics
    stopped moving once steps went through the trace: evaluation, which reads them, fell to chance."""
    stacked = stack_models([model_of(norm="batchnorm"), model_of(norm="batchnorm", width=16)])
    twin = copy.deepcopy(stacked)
    flat = flat_forward(twin)
    assert isinstance(flat, torch.fx.GraphModule)
    x = torch.randn(2, 32, 16)
    for _ in range(3):
        assert torch.equal(flat(x), stacked(x))
    for (name, mine), (_, theirs) in zip(twin.named_buffers(), stacked.named_buffers()):
        assert torch.equal(mine, theirs), name
    assert int(twin.get_submodule("blocks.0.norm").num_batches_tracked) == 3
    stacked.eval()
    twin.eval()
    assert torch.equal(flat(x), stacked(x))   # eval mode reaches the traced forward: running statistics
