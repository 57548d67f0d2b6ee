"""Conv nets (model.block: conv): the model, its config checks, its data, and the oracles.

- option A's shortcut has no parameters and keeps x exactly in its first channels (every stride-th pixel);
- a conv block on 1x1 images equals the MLP block with the same weights (a 1x1 kernel, no padding, and a 3x3
  kernel padded on a 1x1 image, which sees only its centre tap): within float rounding (1e-13 in float64);
- every registered skip kind, order and norm builds, trains a step with a gradient on every parameter, or is
  refused in one line naming why.
"""
from __future__ import annotations

import pytest
import torch
from conftest import cli, write_config

from skipexp.core import config, data, nets, registry
from skipexp.core.conv import CONV_NORMS, CONV_ORDERS, CONV_SKIPS, ConvBlock, PreActConvBlock, ZeroPad
from skipexp.core.models import Block, PreActBlock

TINY_CONV = {
    "name": "conv", "seed": 0, "device": "cpu",
    "data": {"dataset": "synthetic-images", "n_train": 128, "n_test": 64, "image_size": 8, "channels": 2},
    "model": {"block": "conv", "depth": 3, "width": 4},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "threads": 1},
    "log": {"every": 1, "plots": False, "html": False},
}


def conv_cfg(**model) -> config.RunConfig:
    raw = {**TINY_CONV, "model": {**TINY_CONV["model"], **model}}
    return config.from_dict(raw)


def test_every_registered_kind_has_a_conv_form_or_a_reason():
    assert set(CONV_SKIPS) | set(registry.CONV_REFUSES) == set(registry.SKIPS.names)
    assert not set(CONV_SKIPS) & set(registry.CONV_REFUSES)
    assert set(CONV_ORDERS) == set(registry.ORDERS.names)
    assert set(CONV_NORMS) == set(registry.NORMS.names)


@pytest.mark.parametrize("order", ["post", "pre"])
@pytest.mark.parametrize("kind", sorted(CONV_SKIPS))
def test_every_kind_trains_a_step(kind, order):
    cfg = conv_cfg(order=order, norm="batchnorm", skip={"kind": kind}, init="kaiming")
    torch.manual_seed(0)
    model = nets.build(cfg, 2 * 8 * 8, 10)
    logits, hs = model(torch.randn(5, 2 * 8 * 8), capture=True)
    assert logits.shape == (5, 10)
    assert [tuple(h.shape[1:]) for h in hs] == [(4, 8, 8), (4, 8, 8), (8, 4, 4), (16, 2, 2)]
    torch.nn.functional.cross_entropy(logits, torch.arange(5)).backward()
    names = {n for n, _ in model.named_parameters()}
    assert names == {n for n, p in model.named_parameters() if p.grad is not None and torch.isfinite(p.grad).all()}
    assert [p for _, ps in model.layers() for p in ps] and sum(len(ps) for _, ps in model.layers()) == len(names)


def test_resnet20_has_he_et_al_parameter_count():
    """ResNet-20 (option A, 16 channels, batch norm) on CIFAR has 0.27 M parameters (He et al. 2016, Table 6):
    269,722 as the widely used CIFAR reimplementation (akamaster/pytorch_resnet_cifar10) counts them."""
    cfg = config.from_dict({"model": {"block": "conv", "depth": 9, "width": 16, "norm": "batchnorm"},
                            "data": {"image_size": 32, "channels": 3}})
    model = nets.build(cfg, 3 * 32 * 32, 10)
    assert sum(p.numel() for p in model.parameters()) == 269_722
    assert 2 * cfg.model.depth + 2 == 20   # the layers the paper counts: stem, two per block, head


def test_option_a_has_no_parameters_and_keeps_the_input():
    pad = ZeroPad(3, 8, 2)
    assert not list(pad.parameters())
    x = torch.randn(2, 3, 6, 6)
    out = pad(x)
    assert out.shape == (2, 8, 3, 3)
    assert torch.equal(out[:, :3], x[:, :, ::2, ::2])       # exactly: a copy, no arithmetic
    assert torch.equal(out[:, 3:], torch.zeros(2, 5, 3, 3))
    cfg = conv_cfg(skip={"kind": "identity"})
    model = nets.build(cfg, 2 * 8 * 8, 10)
    assert all(not list(s.parameters()) for s in model.skips.values())   # identity: option A where shapes change


def test_projection_is_option_b_and_always_is_option_c():
    model = nets.build(conv_cfg(skip={"kind": "projection"}), 128, 10)
    projected = [name for name, s in model.skips.items() if list(s.parameters())]
    assert projected == ["1", "2"]   # the stages' first blocks, where the shape changes
    assert model.skips["1"].proj.conv.kernel_size == (1, 1) and model.skips["1"].proj.conv.stride == (2, 2)
    model = nets.build(conv_cfg(skip={"kind": "projection", "project": "always"}), 128, 10)
    assert all(list(s.parameters()) for s in model.skips.values())
    # P = I at init where a stage starts: the first channels carried over, as option A does, but learned
    model = nets.build(conv_cfg(skip={"kind": "projection", "project_init": "identity"}), 128, 10)
    assert torch.equal(model.skips["1"].proj.conv.weight[:, :, 0, 0], torch.eye(8, 4))


@pytest.mark.parametrize("order, mlp", [("post", Block), ("pre", PreActBlock)])
def test_conv_block_on_one_pixel_is_the_mlp_block(order, mlp):
    torch.manual_seed(0)
    lin = mlp(6, 6, 6, "relu", "none")
    conv_cls = CONV_ORDERS[order]
    one = conv_cls(6, 6, 1, "relu", "none", kernel=1)        # 1x1 kernel, no padding
    three = conv_cls(6, 6, 1, "relu", "none", kernel=3)      # 3x3 kernel, padding 1: only the centre tap sees x
    with torch.no_grad():
        for conv in (one, three):
            centre = conv.conv1.kernel_size[0] // 2
            conv.conv1.weight.zero_()
            conv.conv2.weight.zero_()
            conv.conv1.weight[:, :, centre, centre] = lin.fc1.weight
            conv.conv2.weight[:, :, centre, centre] = lin.fc2.weight
            conv.conv1.bias.copy_(lin.fc1.bias)
            conv.conv2.bias.copy_(lin.fc2.bias)
    x = torch.randn(7, 6)
    want = lin(x)
    assert isinstance(one, (ConvBlock, PreActConvBlock))
    # float32 kernels sum a conv and a matmul in their own orders: equal within rounding, not to the bit
    torch.testing.assert_close(one(x.view(7, 6, 1, 1)).view(7, 6), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(three(x.view(7, 6, 1, 1)).view(7, 6), want, rtol=1e-6, atol=1e-6)
    lin, one, three, x = lin.double(), one.double(), three.double(), x.double()
    torch.testing.assert_close(three(x.view(7, 6, 1, 1)).view(7, 6), lin(x), rtol=1e-13, atol=1e-13)


def test_post_order_applies_act_after_the_skip():
    cfg = conv_cfg(skip={"kind": "identity"})
    model = nets.build(cfg, 128, 10)
    _, hs = model(torch.randn(4, 128), capture=True)
    assert all((h >= 0).all() for h in hs)                        # relu(F(x) + x): every boundary
    _, hs = nets.build(conv_cfg(order="pre"), 128, 10)(torch.randn(4, 128), capture=True)
    assert any((h < 0).any() for h in hs[1:])                     # pre-activation: nothing after the sum


def test_synthetic_images_are_images_and_learnable_shapes():
    cfg = conv_cfg().data
    s = data.load(cfg)
    assert s.x_train.shape == (128, 2 * 8 * 8) and cfg.image_shape() == (2, 8, 8)
    assert data.input_shape(cfg) == (128, 10)
    again = data.load(cfg)
    assert torch.equal(s.x_train, again.x_train)                 # made from data.seed alone


def test_conv_defaults_to_synthetic_images():
    cfg = config.from_dict({"model": {"block": "conv", "depth": 3}})
    assert cfg.data.dataset == "synthetic-images"
    assert config.from_dict({}).data.dataset == "synthetic"       # the MLP's default is unchanged


def test_augment_is_per_seed_and_exact():
    from skipexp.core.conv import Augment

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    flip = Augment(["flip"], 4, [0])
    out = flip(x)
    for n in range(2):   # each image either itself or mirrored, nothing else
        assert torch.equal(out[n], x[n]) or torch.equal(out[n], x[n].flip(-1))
    crop = Augment(["crop"], 1, [5])
    out = crop(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for n in range(2):   # a 4x4 window of the padded image
        assert any(torch.equal(out[n], padded[n, :, i:i + 4, j:j + 4]) for i in range(3) for j in range(3))
    # two models side by side draw what each draws alone
    a, b = Augment(["crop", "flip"], 1, [3]), Augment(["crop", "flip"], 1, [4])
    both = Augment(["crop", "flip"], 1, [3, 4])
    x2 = torch.randn(5, 2 * 3, 6, 6)
    out = both(x2)
    assert torch.equal(out[:, :3], a(x2[:, :3])) and torch.equal(out[:, 3:], b(x2[:, 3:]))
    assert int(both.draws) == 1


@pytest.mark.parametrize("override, key", [
    ("model.skip.kind=dense", "model.skip.kind: dense has no conv form"),
    ("model.depth=4", "model.depth: 4 blocks do not split into 3 equal stages"),
    ("data.dataset=synthetic", "data.dataset: model.block: conv needs images"),
    ("model.width=[4,4,4]", "model.width: a conv net takes one width"),
    ("model.init=looks-linear", "model.init: looks-linear"),
    ("model.block=cnn", 'model.block: unknown block \'cnn\''),
    ("data.augment=[flop]", 'data.augment: unknown augmentation \'flop\' (did you mean "flip"?)'),
    ("data.crop_padding=2", "data.crop_padding: must be 4 without crop"),
])
def test_bad_conv_configs_are_one_line_errors(tmp_path, override, key):
    r = cli("validate", write_config(tmp_path / "c.yaml", base=TINY_CONV), override)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and key in r.stderr, r.stderr


def test_mlp_refuses_conv_keys(tmp_path):
    r = cli("validate", write_config(tmp_path / "c.yaml"), "data.augment=[flip]")
    assert r.returncode == 2 and "data.augment: augments images for model.block: conv" in r.stderr
    r = cli("validate", write_config(tmp_path / "c.yaml"), "model.stages=2")
    assert r.returncode == 2 and "model.stages: must be 3 with model.block: mlp" in r.stderr


def test_validate_prints_the_conv_layers(tmp_path):
    r = cli("validate", write_config(tmp_path / "c.yaml", base=TINY_CONV), check=0)
    assert "blocks.1.conv1" in r.stdout and "8x4x3x3" in r.stdout and "block: conv" in r.stdout
