"""Hessian top eigenvalue and trace from Hessian-vector products, against a dense Hessian of a tiny model."""
import math

import pytest
import torch
from torch import nn

from skipexp.core.config import ModelConfig, SkipConfig
from skipexp.core.curvature import hessian_vector_product, hutchinson, lanczos, sharpness
from skipexp.core.models import SkipNet


def tiny(kind: str = "identity", activation: str = "tanh", norm: str = "none") -> tuple[SkipNet, torch.Tensor,
                                                                                            torch.Tensor]:
    torch.manual_seed(0)
    cfg = ModelConfig(depth=2, width=3, activation=activation, norm=norm, skip=SkipConfig(kind=kind))
    model = SkipNet(cfg, 4, 3)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    return model.double(), x.double(), y


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for name, shape in zip(names, shapes):
            k = math.prod(shape)
            params[name] = flat[i:i + k].reshape(shape)
            i += k
        model.eval()
        return nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat0)


@pytest.mark.parametrize("kind,activation", [("identity", "tanh"), ("none", "tanh"), ("rezero", "gelu"),
                                             ("gated", "tanh")])
def test_top_eigenvalue_and_trace_equal_the_dense_hessians(kind, activation):
    model, x, y = tiny(kind, activation)
    h = dense_hessian(model, x, y)
    eig = torch.linalg.eigvalsh(h)
    n = h.shape[0]
    s = sharpness(model, x, y, iterations=n, probes=1000, seed=1, tol=0.0)
    assert s.top == pytest.approx(float(eig[-1]), rel=1e-6, abs=1e-9)
    assert s.bottom == pytest.approx(float(eig[0]), rel=1e-6, abs=1e-9)
    exact = float(torch.trace(h))
    assert abs(s.trace - exact) < 4 * s.trace_se, (s.trace, exact, s.trace_se)
    assert s.trace_se < 0.1 * abs(exact) + 1e-6


def test_lanczos_finds_the_top_eigenvalue_in_far_fewer_products_than_parameters():
    model, x, y = tiny("identity", "tanh")
    h = dense_hessian(model, x, y)
    top = float(torch.linalg.eigvalsh(h)[-1])
    s = sharpness(model, x, y, iterations=30, probes=2, tol=1e-6)
    assert s.iterations <= 30 < h.shape[0]
    assert s.top == pytest.approx(top, rel=1e-3)


def test_hessian_vector_products_match_the_dense_hessian_one_at_a_time_and_batched():
    model, x, y = tiny()
    h = dense_hessian(model, x, y)
    params = list(model.parameters())
    model.eval()
    hvp = hessian_vector_product(nn.functional.cross_entropy(model(x), y), params)
    v = torch.randn(3, h.shape[0], dtype=torch.float64)
    assert torch.allclose(hvp(v[0]), h @ v[0], atol=1e-10)
    assert torch.allclose(hvp(v), v @ h, atol=1e-10)   # h is symmetric


def test_exact_operators_are_recovered():
    """On a known diagonal operator: Lanczos with n steps gives its extremes, Hutchinson its trace exactly
    (for a diagonal matrix every Rademacher probe gives v^T D v = tr D)."""
    d = torch.tensor([5.0, -2.0, 0.5, 3.0], dtype=torch.float64)

    def op(v):
        return v * d

    g = torch.Generator().manual_seed(0)
    e = lanczos(op, 4, iterations=4, tol=0.0, generator=g, dtype=torch.float64)
    assert (e.top, e.bottom) == (pytest.approx(5.0), pytest.approx(-2.0))
    t = hutchinson(op, 4, probes=7, generator=g, dtype=torch.float64)
    assert t.value == pytest.approx(6.5) and t.se == pytest.approx(0.0, abs=1e-12)


def test_the_measurement_changes_neither_the_model_nor_the_random_state():
    model, x, y = tiny()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    sharpness(model, x, y, iterations=5, probes=3)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(state, torch.get_rng_state())
