"""Models: every registered kind through the same checks, plus oracles (the tutorial's blocks, ReZero at 0, inits)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from skipexp.core import config
from skipexp.core.errors import SkipexpError
from skipexp.core.models import GAINS, SkipNet
from skipexp.core.registry import ACTIVATIONS, INITS, NORMS, SKIPS

IN, CLASSES, N = 6, 3, 5

# placements over depth 4; each is (model.skip overrides, model.width)
PLACEMENTS = {
    "every1": ({}, 8),
    "every2": ({"every": 2}, 8),
    "span2": ({"span": 2}, 8),
    "span2-every2": ({"span": 2, "every": 2}, 8),
    "blocks": ({"blocks": [0, 3]}, 8),
    "blocks-span2": ({"span": 2, "blocks": [1]}, 8),
    "equal-width-list": ({}, [8, 8, 8, 8]),
    "widths": ({}, [8, 12, 12, 6]),
    "widths-span2": ({"span": 2}, [8, 12, 12, 6]),
    "widths-blocks": ({"blocks": [1, 3]}, [8, 12, 12, 6]),
}


def model_config(kind: str, skip: dict | None = None, width=8, depth: int = 4, **model) -> config.ModelConfig:
    raw = {"model": {"depth": depth, "width": width, "skip": {"kind": kind, **(skip or {})}, **model}}
    return config.from_dict(raw).model


def widths_change_inside_a_skip(cfg: config.ModelConfig) -> bool:
    w = cfg.widths()
    bw = [w[0]] + w
    return any(has and bw[b[0]] != bw[b[-1] + 1] for b, has in cfg.units())


def check_model(model: SkipNet, x: torch.Tensor) -> None:
    """The common checks: shapes, finite outputs, a non-zero finite gradient on every parameter."""
    logits, hs = model(x, capture=True)
    assert logits.shape == (len(x), CLASSES)
    assert [tuple(h.shape) for h in hs] == [(len(x), w) for w in model.boundary_widths]
    assert torch.isfinite(logits).all() and all(torch.isfinite(h).all() for h in hs)
    assert torch.equal(model(x), logits)  # capture changes nothing
    nn.functional.cross_entropy(logits, torch.arange(len(x)) % CLASSES).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} has no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    # every parameter belongs to exactly one layer of layers(), and describe() has a row for each
    in_layers = [p for _, ps in model.layers() for p in ps]
    assert len(in_layers) == len(list(model.parameters()))
    assert {id(p) for p in in_layers} == {id(p) for p in model.parameters()}
    assert [r["name"] for r in model.describe()] == [n for n, _ in model.layers()]


def wake_rezero(model: SkipNet) -> None:
    """ReZero's alpha starts at 0, which makes F's gradient exactly 0; move it off 0 so the check can see F."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.fill_(0.5)


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("kind", SKIPS.names)
def test_every_skip_kind_and_placement(kind, placement):
    skip, width = PLACEMENTS[placement]
    raw_cfg = config.ModelConfig(depth=4, width=width, skip=config.SkipConfig(kind=kind, **skip))
    if kind == "identity" and widths_change_inside_a_skip(raw_cfg):
        with pytest.raises(SkipexpError, match=r"block \d"):
            model_config(kind, skip, width)
        return
    cfg = model_config(kind, skip, width)
    torch.manual_seed(0)
    model = SkipNet(cfg, IN, CLASSES)
    wake_rezero(model)
    check_model(model, torch.randn(N, IN))
    # a learned projection exists exactly where a skip joins different widths
    n_proj = sum(1 for n, m in model.named_modules() if n.endswith(".proj") and isinstance(m, nn.Linear))
    if kind in ("projection", "rezero", "gated"):
        bw = model.boundary_widths
        assert n_proj == sum(1 for u in model.units if u.skip is not None and bw[u.blocks[0]] != bw[u.blocks[-1] + 1])
    else:
        assert n_proj == 0
    if kind == "none":
        assert len(model.skips) == 0


@pytest.mark.parametrize("reg,key", [(ACTIVATIONS, "activation"), (NORMS, "norm"), (INITS, "init")],
                         ids=["activation", "norm", "init"])
def test_every_activation_norm_init(reg, key):
    for name in reg.names:
        torch.manual_seed(0)
        model = SkipNet(model_config("identity", **{key: name}), IN, CLASSES)
        check_model(model, torch.randn(N, IN))


def test_gains_match_pytorch():
    for name in ACTIVATIONS.names:
        torch_name = {"identity": "linear", "gelu": "relu"}.get(name, name)
        assert GAINS[name] == pytest.approx(nn.init.calculate_gain(torch_name))


# --- oracles -------------------------------------------------------------------------------------

class SimpleBlock(nn.Module):
    """The seed tutorial's block, as written there."""

    def __init__(self, in_features, hidden_features, out_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x):
        out = self.fc1(x)
        out = self.relu(out)
        out = self.fc2(out)
        return out


class SimpleBlockWithSkip(nn.Module):
    """The seed tutorial's block with a skip connection, as written there."""

    def __init__(self, in_features, hidden_features, out_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x):
        out = self.fc1(x)
        out = self.relu(out)
        out = self.fc2(out)
        return out + x


@pytest.mark.parametrize("kind,tutorial", [("identity", SimpleBlockWithSkip), ("none", SimpleBlock)])
def test_one_block_reproduces_the_tutorial(kind, tutorial):
    torch.manual_seed(1)
    ref = tutorial(16, 24, 16)
    torch.manual_seed(2)  # different weights until we load the tutorial's
    model = SkipNet(model_config(kind, depth=1, width=16, hidden=24), IN, CLASSES)
    model.blocks[0].load_state_dict(ref.state_dict())
    x = torch.randn(N, IN)
    logits, hs = model(x, capture=True)
    assert torch.equal(hs[1], ref(hs[0]))
    assert torch.equal(logits, model.head(ref(model.input(x))))
    # and the weights really were the tutorial's: a fresh model disagrees
    torch.manual_seed(2)
    other = SkipNet(model_config(kind, depth=1, width=16, hidden=24), IN, CLASSES)
    assert not torch.equal(other(x, capture=True)[1][1], hs[1])


@pytest.mark.parametrize("placement", ["every1", "every2", "span2", "blocks", "widths"])
def test_rezero_at_zero_is_the_identity_path(placement):
    skip, width = PLACEMENTS[placement]
    torch.manual_seed(0)
    model = SkipNet(model_config("rezero", skip, width), IN, CLASSES)
    x = torch.randn(N, IN)
    _, hs = model(x, capture=True)
    skipped = 0
    for unit in model.units:
        if unit.skip is None:
            continue
        skipped += 1
        x_in, out = hs[unit.blocks[0]], hs[unit.blocks[-1] + 1]
        proj = model.skips[unit.skip].proj
        assert torch.equal(out, proj(x_in))  # the unit's output is its input (projected where widths change)
        if isinstance(proj, nn.Identity):
            assert torch.equal(out, x_in)
    assert skipped > 0
    # once alpha moves, F(x) contributes
    wake_rezero(model)
    _, hs2 = model(x, capture=True)
    assert not torch.equal(hs2[-1], hs[-1])


def test_gated_is_a_highway():
    torch.manual_seed(0)
    cfg = model_config("gated", depth=1, width=8, skip={"gate_bias": -1.5})
    model = SkipNet(cfg, IN, CLASSES)
    gate = model.skips["0"].gate
    assert torch.equal(gate.bias, torch.full_like(gate.bias, -1.5))
    x = torch.randn(N, IN)
    _, hs = model(x, capture=True)
    t = torch.sigmoid(gate(hs[0]))
    assert torch.allclose(hs[1], t * model.blocks[0](hs[0]) + (1 - t) * hs[0])


@pytest.mark.parametrize("skip,width,expected_in", [
    ({}, 8, [8, 16, 24, 32]),                          # one run: block i reads h0..h_i
    ({"every": 2}, 8, [8, 8, 8, 8]),                   # one-block dense units apart from each other: plain
    ({"span": 2, "every": 2}, 8, [8, 16, 8, 8]),       # unit 0 (blocks 0-1) dense, unit 1 plain
    ({"span": 2}, 8, [8, 16, 24, 32]),
    ({"blocks": [2, 3]}, 8, [8, 8, 8, 16]),            # the run starts at block 2
    ({}, [8, 4, 4, 2], [8, 16, 20, 24]),               # widths add up
])
def test_dense_reads_the_concatenation_of_earlier_outputs(skip, width, expected_in):
    torch.manual_seed(0)
    model = SkipNet(model_config("dense", skip, width), IN, CLASSES)
    assert [b.fc1.in_features for b in model.blocks] == expected_in
    x = torch.randn(N, IN)
    _, hs = model(x, capture=True)
    # block 1 of the first case: its input is exactly [h0, h1]
    if skip == {} and width == 8:
        assert torch.equal(hs[2], model.blocks[1](torch.cat([hs[0], hs[1]], dim=-1)))


# std of each init on a wide layer, as CONTRACT defines it (default: kaiming-uniform a=sqrt(5) -> 1/sqrt(3 fan_in))
INIT_STD = {
    "default": lambda fan_in, fan_out, gain: 1 / math.sqrt(3 * fan_in),
    "kaiming": lambda fan_in, fan_out, gain: gain / math.sqrt(fan_in),
    "xavier": lambda fan_in, fan_out, gain: math.sqrt(2 / (fan_in + fan_out)),
    "orthogonal": lambda fan_in, fan_out, gain: gain / math.sqrt(max(fan_in, fan_out)),
}


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("init", INITS.names)
def test_init_std_matches_definition(init, activation):
    assert set(INIT_STD) == set(INITS.names)
    torch.manual_seed(0)
    model = SkipNet(model_config("identity", depth=1, width=512, hidden=256, init=init, activation=activation),
                    IN, CLASSES)
    gain = GAINS[activation]
    for lin in (model.blocks[0].fc1, model.blocks[0].fc2):
        fan_out, fan_in = lin.weight.shape
        assert lin.weight.std().item() == pytest.approx(INIT_STD[init](fan_in, fan_out, gain), rel=0.03)
        assert abs(lin.weight.mean().item()) < 0.05 * lin.weight.std().item()
        if init != "default":
            assert torch.equal(lin.bias, torch.zeros_like(lin.bias))
    if init == "orthogonal":
        w = model.blocks[0].fc1.weight   # (256, 512): orthonormal rows scaled by the gain
        assert torch.allclose(w @ w.T, gain ** 2 * torch.eye(256), atol=1e-4)


def test_layers_in_forward_order():
    """layers() lists parameterised modules in the order forward first calls them (pre-hooks see the calls)."""
    for kind in SKIPS.names:
        for placement in ("widths-span2", "widths-blocks", "every1"):
            skip, width = PLACEMENTS[placement]
            if kind == "identity" and isinstance(width, list):
                continue
            model = SkipNet(model_config(kind, skip, width, norm="layernorm"), IN, CLASSES)
            calls: list[str] = []
            names = {m: n for n, m in model.named_modules()}
            for m in model.modules():
                if list(m.parameters(recurse=False)):
                    m.register_forward_pre_hook(lambda mod, args: calls.append(names[mod]))
            model(torch.randn(N, IN))
            seen = list(dict.fromkeys(calls))
            assert [n for n, _ in model.layers()] == seen, (kind, placement)


def test_layer_names_for_a_projection_net():
    model = SkipNet(model_config("projection", {"blocks": [1]}, [8, 16, 16], depth=3), IN, CLASSES)
    assert [n for n, _ in model.layers()] == [
        "input", "blocks.0.fc1", "blocks.0.fc2", "blocks.1.fc1", "blocks.1.fc2", "skips.1.proj",
        "blocks.2.fc1", "blocks.2.fc2", "head"]
    assert model.boundary_names() == ["h0", "h1", "h2", "h3"]
    rows = {r["name"]: r for r in model.describe()}
    assert rows["skips.1.proj"] == {"name": "skips.1.proj", "shape": "16x8", "params": 128, "skip": "projection"}
    assert rows["blocks.0.fc1"]["skip"] == "none" and rows["blocks.1.fc1"]["skip"] == "projection"
    assert rows["head"]["shape"] == f"{CLASSES}x16 + {CLASSES}"
