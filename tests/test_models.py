"""Models: every registered kind through the same checks, plus oracles (the tutorial's blocks, ReZero at 0, inits)."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import model_of
from torch import nn

from skipexp.core import config
from skipexp.core.errors import SkipexpError
from skipexp.core.inits import CRITICAL_GAINS
from skipexp.core.models import GAINS, SkipNet
from skipexp.core.registry import ACTIVATIONS, INIT_ACTIVATIONS, INITS, NORMS, ORDERS, SKIPS

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


@pytest.mark.parametrize("order", ORDERS.names)
@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("kind", SKIPS.names)
def test_every_skip_kind_and_placement(kind, placement, order):
    skip, width = PLACEMENTS[placement]
    raw_cfg = config.ModelConfig(depth=4, width=width, skip=config.SkipConfig(kind=kind, **skip))
    if kind == "identity" and widths_change_inside_a_skip(raw_cfg):
        with pytest.raises(SkipexpError, match=r"block \d"):
            model_config(kind, skip, width, order=order)
        return
    cfg = model_config(kind, skip, width, order=order, norm="layernorm")
    torch.manual_seed(0)
    model = SkipNet(cfg, IN, CLASSES)
    wake_rezero(model)
    check_model(model, torch.randn(N, IN))
    # a learned projection exists exactly where a skip joins different widths
    n_proj = sum(1 for n, m in model.named_modules() if n.endswith(".proj") and isinstance(m, nn.Linear))
    if kind in ("projection", "rezero", "gated", "shortcut-gated"):
        bw = model.boundary_widths
        assert n_proj == sum(1 for u in model.units if u.skip is not None and bw[u.blocks[0]] != bw[u.blocks[-1] + 1])
    else:
        assert n_proj == 0
    if kind == "none":
        assert len(model.skips) == 0


@pytest.mark.parametrize("reg,key", [(ACTIVATIONS, "activation"), (NORMS, "norm"), (ORDERS, "order"),
                                     (INITS, "init")], ids=["activation", "norm", "order", "init"])
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
# the critical inits put on each Linear the critical gain of what it feeds: fc1 feeds the activation, fc2 nothing
CRITICAL = {"fc1": lambda act: CRITICAL_GAINS[act], "fc2": lambda act: 1.0}
INIT_STD.update({
    "critical": lambda fan_in, fan_out, gain: gain / math.sqrt(fan_in),
    "orthogonal-critical": lambda fan_in, fan_out, gain: gain / math.sqrt(max(fan_in, fan_out)),
    "looks-linear": lambda fan_in, fan_out, gain: gain / math.sqrt(max(fan_in, fan_out)),
})


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("init", INITS.names)
def test_init_std_matches_definition(init, activation):
    assert set(INIT_STD) == set(INITS.names)
    fits = INIT_ACTIVATIONS.get(init, ACTIVATIONS.names)
    if activation not in fits:
        return   # refused by the config (tests/test_config.py)
    torch.manual_seed(0)
    model = SkipNet(model_config("identity", depth=1, width=512, hidden=256, init=init, activation=activation),
                    IN, CLASSES)
    for part in ("fc1", "fc2"):
        lin = getattr(model.blocks[0], part)
        gain = CRITICAL[part](activation) if init in INIT_ACTIVATIONS else GAINS[activation]
        fan_out, fan_in = lin.weight.shape
        assert lin.weight.std().item() == pytest.approx(INIT_STD[init](fan_in, fan_out, gain), rel=0.03)
        assert abs(lin.weight.mean().item()) < 0.05 * lin.weight.std().item()
        if init != "default":
            assert torch.equal(lin.bias, torch.zeros_like(lin.bias))
    w = model.blocks[0].fc1.weight   # (256, 512): orthonormal rows scaled by the gain
    if init in ("orthogonal", "orthogonal-critical"):
        gain = CRITICAL_GAINS[activation] if init == "orthogonal-critical" else GAINS[activation]
        assert torch.allclose(w @ w.T, gain ** 2 * torch.eye(256), atol=1e-4)
    if init == "looks-linear":   # mirrored pairs: [W; -W] and [V, -V], W and V orthogonal
        half, v = w[:128], model.blocks[0].fc2.weight[:, :128]
        assert torch.equal(w[128:], -half) and torch.equal(model.blocks[0].fc2.weight[:, 128:], -v)
        assert torch.allclose(half @ half.T, 2 * torch.eye(128), atol=1e-4)
        assert torch.allclose(v.T @ v, torch.eye(128), atol=1e-4)


def test_pre_activation_block_as_he_et_al_write_it():
    """norm -> ReLU -> Linear -> norm -> ReLU -> Linear, the unit adding x to it (He et al. 2016b, Fig. 4e)."""
    torch.manual_seed(0)
    model = SkipNet(model_config("identity", depth=2, width=8, norm="layernorm", order="pre"), IN, CLASSES)
    x = torch.randn(N, IN)
    _, hs = model(x, capture=True)
    for i, blk in enumerate(model.blocks):
        h = hs[i]
        branch = blk.fc2(torch.relu(blk.norm2(blk.fc1(torch.relu(blk.norm1(h))))))
        assert torch.equal(hs[i + 1], branch + h)
    assert [n for n, _ in model.layers()][1:5] == ["blocks.0.norm1", "blocks.0.fc1", "blocks.0.norm2", "blocks.0.fc2"]


def test_looks_linear_blocks_are_linear_at_init():
    """Balduzzi et al.'s point: with mirrored pairs every ReLU block computes the linear map (W2 W1 / 2) x."""
    torch.manual_seed(0)
    model = SkipNet(model_config("none", depth=3, width=16, init="looks-linear"), IN, CLASSES)
    x = torch.randn(N, 16)
    for blk in model.blocks:
        linear = x @ (blk.fc2.weight @ blk.fc1.weight).T / 2
        assert torch.allclose(blk(x), linear, atol=1e-5)


@pytest.mark.parametrize("kind", ["projection", "rezero", "gated"])
def test_projection_at_identity(kind):
    """project_init: identity sets P = I and leaves every other weight as model.init draws it."""
    cfgs = [model_config(kind, {"project": "always", "project_init": p}, width=[8, 8, 12, 12], init="kaiming")
            for p in ("init", "identity")]
    torch.manual_seed(0)
    drawn = SkipNet(cfgs[0], IN, CLASSES)
    torch.manual_seed(0)
    eye = SkipNet(cfgs[1], IN, CLASSES)
    for (name, a), (_, b) in zip(drawn.named_parameters(), eye.named_parameters()):
        if name.endswith("proj.weight"):
            assert torch.equal(b, torch.eye(*b.shape)), name   # rectangular where the widths change
            assert not torch.equal(a, b)
        else:
            assert torch.equal(a, b), name


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
                    m.register_forward_pre_hook(lambda mod, args: calls.append(names[mod]))  # noqa: B023 (runs now)
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


# --- shortcut options: model.skip.project and model.skip.scale ---------------------------------------

def shortcut_units(model: SkipNet) -> list:
    return [u for u in model.units if u.skip is not None]


def equal_width(model: SkipNet, unit) -> bool:
    bw = model.boundary_widths
    return bw[unit.blocks[0]] == bw[unit.blocks[-1] + 1]


@pytest.mark.parametrize("scale", [1.0, 0.5])
@pytest.mark.parametrize("project", ["auto", "always"])
@pytest.mark.parametrize("placement", ["every1", "span2-every2", "widths-blocks"])
@pytest.mark.parametrize("kind", SKIPS.names)
def test_every_kind_with_every_shortcut_option(kind, placement, project, scale):
    skip, width = PLACEMENTS[placement]
    options = {**skip, "project": project, "scale": scale}
    for option, value, default in (("project", project, "auto"), ("scale", scale, 1.0)):
        if value != default and kind not in SKIPS.options[option]:
            # a kind with no use for the option refuses it, naming the key, what it must be and what was given
            with pytest.raises(SkipexpError) as info:
                model_config(kind, options, width)
            assert info.value.key == f"model.skip.{option}"
            assert all(w in info.value.message for w in (repr(default), repr(value), kind, *SKIPS.options[option]))
            return
    if kind == "identity" and widths_change_inside_a_skip(config.ModelConfig(depth=4, width=width,
                                                                             skip=config.SkipConfig(kind=kind))):
        with pytest.raises(SkipexpError, match="use kind: projection"):
            model_config(kind, options, width)
        return
    cfg = model_config(kind, options, width)
    torch.manual_seed(0)
    model = SkipNet(cfg, IN, CLASSES)
    wake_rezero(model)
    check_model(model, torch.randn(N, IN))
    # where a learned projection sits: where widths change, and with project: always on every skipped unit
    expect = {f"skips.{u.skip}.proj" for u in shortcut_units(model) if project == "always" or not equal_width(model, u)}
    have = {n for n, m in model.named_modules() if n.endswith(".proj") and isinstance(m, nn.Linear)}
    assert have == expect
    for name in have:
        assert model.get_submodule(name).bias is None
    assert all(s.scale == scale for s in model.skips.values())


@pytest.mark.parametrize("placement", ["every1", "span2", "blocks"])
def test_scale_one_is_todays_identity_exactly(placement):
    skip, width = PLACEMENTS[placement]
    torch.manual_seed(0)
    model = SkipNet(model_config("identity", {**skip, "scale": 1.0}, width), IN, CLASSES)
    x = torch.randn(N, IN)
    _, hs = model(x, capture=True)
    for unit in model.units:
        h = hs[unit.blocks[0]]
        for i in unit.blocks:
            h = model.blocks[i](h)
        if unit.skip is not None:
            h = h + hs[unit.blocks[0]]  # out = F(x) + x, as the tutorial writes it
        assert torch.equal(hs[unit.blocks[-1] + 1], h)
    torch.manual_seed(0)
    default = SkipNet(model_config("identity", skip, width), IN, CLASSES)
    assert torch.equal(default(x), model(x))


# a unit's output from its input x, F(x), its skip s and the scale lam, written from the formulas
FORMULAS = {
    "identity": lambda s, x, fx, lam: fx + lam * x,
    "projection": lambda s, x, fx, lam: fx + lam * s.proj(x),
    "rezero": lambda s, x, fx, lam: lam * s.proj(x) + s.alpha * fx,
    "gated": lambda s, x, fx, lam: torch.sigmoid(s.gate(x)) * fx + (1 - torch.sigmoid(s.gate(x))) * lam * s.proj(x),
}


@pytest.mark.parametrize("scale", [0.5, 2.0, 0.0])
@pytest.mark.parametrize("kind", list(FORMULAS))
def test_scaled_shortcut_follows_the_formula(kind, scale):
    project = "always" if kind in SKIPS.options["project"] else "auto"
    torch.manual_seed(0)
    model = SkipNet(model_config(kind, {"span": 2, "project": project, "scale": scale}), IN, CLASSES)
    wake_rezero(model)
    x = torch.randn(N, IN)
    _, hs = model(x, capture=True)
    for unit in model.units:
        x_in = hs[unit.blocks[0]]
        fx = model.blocks[unit.blocks[1]](model.blocks[unit.blocks[0]](x_in))  # F: the unit's two blocks
        skip = model.skips[unit.skip]
        torch.testing.assert_close(hs[unit.blocks[-1] + 1], FORMULAS[kind](skip, x_in, fx, scale))
    if scale != 1.0:
        assert f"scale={scale}" in repr(model.skips["0"])


@pytest.mark.parametrize("kind,project", [("identity", "auto"), ("projection", "auto"), ("projection", "always"),
                                          ("rezero", "always")])
@pytest.mark.parametrize("placement", ["every1", "span2-every2", "widths-blocks"])
def test_scale_zero_is_the_plain_net(kind, project, placement):
    """out = F(x) + 0 * s(x) is the plain net's F(x): same weights, same numbers, exactly."""
    skip, width = PLACEMENTS[placement]
    if kind == "identity" and isinstance(width, list):
        return
    torch.manual_seed(0)
    plain = SkipNet(model_config("none", skip, width), IN, CLASSES)
    scaled = SkipNet(model_config(kind, {**skip, "project": project, "scale": 0.0}, width), IN, CLASSES)
    missing, unexpected = scaled.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.endswith(".proj.weight") or k.endswith(".alpha") for k in missing)
    with torch.no_grad():
        for name, p in scaled.named_parameters():
            if name.endswith("alpha"):
                p.fill_(1.0)  # rezero: out = 0 * P(x) + 1 * F(x)
    x = torch.randn(N, IN)
    logits, hs = scaled(x, capture=True)
    ref_logits, ref_hs = plain(x, capture=True)
    assert len(shortcut_units(scaled)) > 0
    assert torch.equal(logits, ref_logits) and all(torch.equal(a, b) for a, b in zip(hs, ref_hs))


@pytest.mark.parametrize("kind,reference", [("projection", "identity"), ("rezero", "rezero"), ("gated", "gated")])
@pytest.mark.parametrize("placement", ["every1", "span2-every2", "widths"])
def test_project_always_with_the_identity_matrix_is_the_unprojected_net(kind, reference, placement):
    skip, width = PLACEMENTS[placement]
    if reference == "identity" and isinstance(width, list) and len(set(width)) > 1:
        reference = "projection"  # identity cannot join different widths; projection does it the same way
    torch.manual_seed(0)
    ref = SkipNet(model_config(reference, skip, width), IN, CLASSES)
    wake_rezero(ref)
    model = SkipNet(model_config(kind, {**skip, "project": "always"}, width), IN, CLASSES)
    # a Linear on every skipped unit; the ones at equal widths are what auto lacks
    equal = [u for u in shortcut_units(model) if equal_width(model, u)]
    assert equal and all(isinstance(model.skips[u.skip].proj, nn.Linear) for u in shortcut_units(model))
    missing, unexpected = model.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected and set(missing) == {f"skips.{u.skip}.proj.weight" for u in equal}
    x = torch.randn(N, IN)
    assert not torch.equal(model(x), ref(x))  # a random P changes the net ...
    with torch.no_grad():
        for u in equal:
            model.skips[u.skip].proj.weight.copy_(torch.eye(model.boundary_widths[u.blocks[0]]))
    logits, hs = model(x, capture=True)  # ... P = I (no bias) is the identity shortcut, exactly
    ref_logits, ref_hs = ref(x, capture=True)
    assert torch.equal(logits, ref_logits) and all(torch.equal(a, b) for a, b in zip(hs, ref_hs))


@pytest.mark.parametrize("skip,key,words", [
    ({"project": "sometimes"}, "model.skip.project", ["auto", "always", "sometimes"]),
    ({"scale": -0.5}, "model.skip.scale", [">= 0", "-0.5"]),
    ({"scale": float("nan")}, "model.skip.scale", ["finite"]),
    ({"scale": float("inf")}, "model.skip.scale", ["finite"]),
    ({"scale": "half"}, "model.skip.scale", ["number", "half"]),
    ({"kind": "identity", "project": "always"}, "model.skip.project",
     ["must be 'auto' with kind identity, got 'always'", "projection, rezero, gated"]),
    ({"kind": "none", "scale": 0.5}, "model.skip.scale",
     ["must be 1.0 with kind none, got 0.5", "identity, projection, rezero, gated"]),
    ({"kind": "dense", "scale": 2}, "model.skip.scale", ["must be 1.0 with kind dense, got 2.0"]),
])
def test_shortcut_options_are_checked(skip, key, words):
    with pytest.raises(SkipexpError) as info:
        config.from_dict({"model": {"skip": skip}})
    assert info.value.key == key
    for w in words:
        assert w in info.value.message, (w, info.value.message)
    # a SkipConfig built in code is checked when the model is built
    if "kind" in skip:
        with pytest.raises(SkipexpError):
            SkipNet(config.ModelConfig(depth=2, width=8, skip=config.SkipConfig(**skip)), IN, CLASSES)


@pytest.mark.parametrize("kind", ["identity", "projection", "rezero", "gated"])
def test_seeds_with_shortcut_options_still_train_together(kind):
    """Seeds stack (one batched model) with the new options, and the stacked net equals each seed's own."""
    from skipexp.training import stacked

    project = "always" if kind in SKIPS.options["project"] else "auto"
    raw = {"seed": [0, 1], "data": {"input_dim": IN, "num_classes": CLASSES},
           "model": {"depth": 4, "width": 8, "skip": {"kind": kind, "project": project, "scale": 0.5}}}
    cfg = config.from_dict(raw)
    assert stacked.unstackable_reason(model_of(cfg)) is None
    models = []
    for seed in cfg.seeds:
        torch.manual_seed(seed)
        models.append(SkipNet(cfg.model, IN, CLASSES))
        wake_rezero(models[-1])
    stacked = stacked.stack_models(models)
    x = torch.randn(N, IN)
    out = stacked(x.expand(len(models), N, IN))                  # (K, N, classes)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(x))
