"""The one place a run's network is built from its config: ``model.block`` picks the kind (registry.BLOCKS)."""
from __future__ import annotations

from torch import nn

from skipexp.core.config import RunConfig
from skipexp.core.conv import ConvNet
from skipexp.core.models import SkipNet
from skipexp.core.registry import BLOCKS

BLOCKS.implements("mlp")(lambda cfg, input_dim, num_classes: SkipNet(cfg.model, input_dim, num_classes))
BLOCKS.implements("conv")(lambda cfg, input_dim, num_classes: ConvNet(
    cfg.model, cfg.data.image_shape(), num_classes, cfg.data.augment, cfg.data.crop_padding, cfg.seeds[0]))


def build(cfg: RunConfig, input_dim: int, num_classes: int) -> nn.Module:
    """The network of ``cfg`` for inputs of ``input_dim`` features (a conv net: its images, flat) and
    ``num_classes`` classes: a :class:`~skipexp.core.models.SkipNet` or a :class:`~skipexp.core.conv.ConvNet`."""
    return BLOCKS.get(cfg.model.block, "model.block")(cfg, input_dim, num_classes)


def conv_footprint(cfg: RunConfig) -> tuple[int, int]:
    """(parameters, floats one training example keeps for backward) of a conv net, without allocating it (built
    on the meta device): its input, the stem's output three times (conv, norm, act), and per block its input
    and four maps of its output's size (conv, norm, act, conv; the norm after and the sum share them)."""
    import torch

    with torch.device("meta"):
        model = build(cfg, *data_footprint(cfg))
    params = sum(p.numel() for p in model.parameters())
    c, h, w = cfg.data.image_shape()
    floats, side = c * h * w + 3 * cfg.model.width * h * w, h * w
    for blk in model.blocks:
        stride = blk.conv1.stride[0]
        floats += blk.conv1.in_channels * side
        side = max(1, side // (stride * stride))
        floats += 4 * blk.conv1.out_channels * side
    return params, floats


def data_footprint(cfg: RunConfig) -> tuple[int, int]:
    from skipexp.core.data import input_shape

    return input_shape(cfg.data)


def conv_median_flops(cfg: RunConfig) -> int:
    """FLOPs of the median conv of a conv net's blocks in one forward pass (2 x batch x output pixels x 9 x
    in x out channels): the size of one job threads share, as a Linear's matmul is for an MLP."""
    c, h, w = cfg.data.image_shape()
    per = cfg.model.depth // cfg.model.stages
    sizes, c_in, side = [], cfg.model.width, h * w
    for i in range(cfg.model.depth):
        c_out = cfg.model.width * 2 ** (i // per)
        if i and i % per == 0:
            side = max(1, side // 4)
        sizes += [2 * cfg.train.batch_size * side * 9 * c_in * c_out, 2 * cfg.train.batch_size * side * 9 * c_out ** 2]
        c_in = c_out
    sizes.sort()
    return sizes[len(sizes) // 2]


# Block kinds whose memory estimate is their own (skipexp.training.memory counts the MLP's from its shapes).
FOOTPRINTS = {"conv": conv_footprint}
# Block kinds whose thread choice weighs their own layers (skipexp.training.threads: the MLP's matmuls).
MEDIAN_FLOPS = {"conv": conv_median_flops}
