"""Oracles for the measurements of landscape, jacobian and paths, on tiny models (no run folders)."""
import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from skipexp.core.config import ModelConfig, SkipConfig
from skipexp.core.models import SkipNet
from skipexp.science import jacobian, landscape, paths


def model(kind="identity", depth=3, width=6, activation="relu", norm="none", seed=0, **skip):
    torch.manual_seed(seed)
    return SkipNet(ModelConfig(depth=depth, width=width, activation=activation, norm=norm,
                               skip=SkipConfig(kind=kind, **skip)), 5, 4).eval()


def data(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 4, (n,), generator=g)


# --- landscape -------------------------------------------------------------------------------------------

def test_directions_are_filter_normalised_exactly_and_leave_biases_and_norms_alone():
    m = model(norm="layernorm", kind="rezero")
    theta = landscape.parameters(m)
    for d in landscape.directions(theta, 2, seed=3):
        for name, w in theta.items():
            if w.dim() <= 1:   # biases, the norms' scale and shift, ReZero's alpha
                assert torch.count_nonzero(d[name]) == 0, name
                continue
            got = d[name].reshape(w.shape[0], -1).double().norm(dim=1)
            want = w.reshape(w.shape[0], -1).double().norm(dim=1)
            assert torch.allclose(got, want, rtol=1e-6), name


def test_nets_of_one_shape_share_their_directions_up_to_each_rows_scale():
    """Plain and identity skips have the same parameters: the same seed gives them the same Gaussian draw,
    each row rescaled to its own weights."""
    a, b = landscape.parameters(model("none", seed=0)), landscape.parameters(model("identity", seed=5))
    da, db = landscape.directions(a, 1, seed=7)[0], landscape.directions(b, 1, seed=7)[0]
    w = "blocks.1.fc1.weight"
    unit_a = da[w] / da[w].norm(dim=1, keepdim=True)
    unit_b = db[w] / db[w].norm(dim=1, keepdim=True)
    assert torch.allclose(unit_a, unit_b, atol=1e-6)
    assert not torch.allclose(landscape.directions(a, 1, seed=8)[0][w], da[w])


def _oracle(m, params, x, y):
    """The loss of a fresh copy of the model with ``params`` loaded, through its own forward."""
    c = copy.deepcopy(m)
    c.load_state_dict({**c.state_dict(), **params})
    with torch.no_grad():
        logits = c.eval()(x)
    return float(nn.functional.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


@pytest.mark.parametrize("kind,norm", [("identity", "none"), ("none", "layernorm"), ("gated", "none"),
                                       ("rezero", "none"), ("projection", "batchnorm")])
def test_the_batched_grid_equals_point_by_point_evaluation(kind, norm):
    m = model(kind, norm=norm, width=[6, 8, 6] if kind == "projection" else 6)
    if norm == "batchnorm":   # running statistics that are not the identity
        m.train()
        m(torch.randn(64, 5) * 3)
        m.eval()
    x, y = data()
    ev = landscape.Evaluator(m, x, y, chunk=4)
    assert ev.stacked is not None   # every kind, batch norm too, is evaluated as a stack of grid points
    theta = landscape.parameters(m)
    dirs = landscape.directions(theta, 2, seed=0)
    coords = torch.tensor([[0.0, 0.0], [0.5, -0.25], [-1.0, 1.0], [0.1, 0.9], [0.3, 0.3]], dtype=torch.float64)
    loss, acc = ev.grid(theta, dirs, coords)
    for c, lo, ac in zip(coords, loss, acc):
        want = _oracle(m, landscape.point(theta, dirs, c.tolist()), x, y)
        assert lo == pytest.approx(want[0], rel=1e-5)
        assert ac == pytest.approx(want[1])
    assert loss[0] == pytest.approx(_oracle(m, theta, x, y)[0], rel=1e-6)   # the origin is the model itself


def test_nonconvexity_is_zero_for_a_bowl_one_for_a_dome_and_between_for_a_saddle():
    axis = np.linspace(-1, 1, 11)

    def grid(f):
        return [{"a": a, "b": b, "loss": f(a, b)} for a in axis for b in axis]

    assert landscape.nonconvexity(grid(lambda a, b: a * a + 2 * b * b)) == pytest.approx(0.0)
    assert landscape.nonconvexity(grid(lambda a, b: -(a * a) - b * b)) == pytest.approx(1.0)
    assert landscape.nonconvexity(grid(lambda a, b: a * a - 0.5 * b * b)) == pytest.approx(0.5)
    line = [{"a": a, "b": 0.0, "loss": np.cos(3 * a)} for a in axis]
    assert 0 < landscape.nonconvexity(line) < 1


# --- jacobian --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,kw", [("identity", {}), ("none", {"activation": "tanh"}), ("dense", {}),
                                     ("projection", {"width": [6, 9, 7]}), ("gated", {"norm": "layernorm"})])
def test_singular_values_equal_those_of_the_explicitly_built_jacobian(kind, kw):
    m = model(kind, **kw).double()
    x, _ = data(3)
    js = jacobian.jacobians(m, x)
    h0 = m.input(x.double()).detach()
    for i in range(1, m.cfg.depth + 1):
        for e in range(len(x)):
            full = torch.autograd.functional.jacobian(
                lambda h, i=i: jacobian.boundaries_from(m, h[None])[i - 1][0], h0[e])
            assert torch.allclose(js[i - 1][e], full, atol=1e-10)
            assert torch.allclose(torch.linalg.svdvals(js[i - 1][e]), torch.linalg.svdvals(full), atol=1e-10)
    rows, last = jacobian.spectrum_rows(js, "init")
    s = torch.linalg.svdvals(js[-1])
    assert rows[-1]["mean_s2"] == pytest.approx(float(s.square().mean()))
    assert rows[-1]["spread"] == pytest.approx(float(s.square().var(correction=0) / s.square().mean() ** 2))
    assert torch.equal(last, s)


def test_boundaries_from_h0_are_the_models_own():
    m = model("dense", depth=4)
    x, _ = data(5)
    with torch.no_grad():
        _, hs = m(x, capture=True)
        assert all(torch.equal(a, b) for a, b in zip(jacobian.boundaries_from(m, hs[0]), hs[1:]))


# --- paths -----------------------------------------------------------------------------------------------

def _full_gradient(m, x, y):
    h0 = m.input(x).detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(m.head(jacobian.boundaries_from(m, h0)[-1]), y, reduction="sum")
    return torch.autograd.grad(loss, h0)[0]


@pytest.mark.parametrize("kind,kw", [("identity", {"activation": "identity"}), ("identity", {}),
                                     ("rezero", {}), ("projection", {"width": [6, 8, 8, 6], "scale": 0.5}),
                                     ("identity", {"every": 2, "activation": "tanh"})])
def test_the_paths_sum_to_the_full_gradient_exactly(kind, kw):
    """2^n paths, each through the branches of one subset of units; their gradients at h_0, grouped by length
    and summed over lengths, are the whole gradient (for a deep linear net, and for any net given its forward)."""
    m = model(kind, depth=4, **kw).double()
    if kind == "rezero":
        for s in m.skips.values():
            s.alpha.data.fill_(0.7)
    x, y = data(7)
    x = x.double()
    n = len(paths.residual_units(m))
    subsets = list(itertools.product([False, True], repeat=n))
    keep = torch.tensor(subsets, dtype=torch.bool).reshape(len(subsets), n)
    g = paths.path_gradients(m, x, y, keep)                                    # (2^n, B, w0)
    per_length = [g[keep.sum(1) == k].sum(0) for k in range(n + 1)]
    full = _full_gradient(m, x, y)
    assert torch.allclose(sum(per_length), full, atol=1e-12)
    assert not torch.allclose(per_length[0], full)   # no one length carries it all


def test_a_plain_net_has_one_path_that_carries_the_whole_gradient():
    m = model("none", depth=3).double()
    x, y = data(6)
    rows = paths.measure_model(m, x.double(), y, sets=4, seed=0, state="trained")
    assert [(r["length"], r["paths"], r["share"]) for r in rows] == [(3, 1, 1.0)]
    full = _full_gradient(m, x.double(), y).norm(dim=1).mean()
    assert rows[0]["grad_per_path"] == pytest.approx(float(full))


def test_path_lengths_are_counted_and_sampled_as_the_paper_does():
    rows = paths.measure_model(model("identity", depth=5).double(), *[t.double() if t.is_floating_point() else t
                                                                     for t in data(4)], sets=3, seed=0,
                               state="init")
    assert [r["paths"] for r in rows] == [1, 5, 10, 10, 5, 1]
    assert [r["sampled"] for r in rows] == [1, 3, 3, 3, 3, 1]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert all(r["total"] == pytest.approx(r["paths"] * r["grad_per_path"]) for r in rows)


def test_units_that_mix_shortcut_and_branch_have_no_paths():
    from skipexp.core.errors import SkipexpError

    for kind in ("gated", "dense"):
        with pytest.raises(SkipexpError, match="shortcut \\+ branch"):
            paths.check(model(kind))
