"""Stacked conv nets: K ConvNets of one shape as one ConvNet whose activations hold the K models' channels side
by side, (N, K*C, H, W), and whose every weight has a leading K dimension.

A conv becomes K convolutions, each on its model's own channels (see :class:`StackedConv2d` for why not
one grouped convolution), a batch norm normalises each channel over the batch as it does anyway, a layer norm
(GroupNorm with one group) becomes a GroupNorm with K groups, the head a batched matmul (:class:`StackedHead`).
The ConvNet's own forward runs unchanged on the stack (see :mod:`skipexp.core.conv`). A lone conv run is a stack of
one. Every op computes model k from model k's own elements the same way whatever K, so model k's numbers are
those of its lone run to the bit on the CPU (tests/test_conv_stacked.py); on CUDA within rounding, as cuDNN
picks kernels by shape.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from skipexp.core.conv import Augment, ConvNet, ConvSkip


class StackedConv2d(nn.Module):
    """K Conv2d layers at once: (N, K*I, H, W) -> (N, K*O, H', W'), model k's conv on model k's channels.

    Not one convolution with ``groups=K``: its forward is model k's own to the bit, but on the CPU its backward
    (weight and input gradients) rounds differently from a lone conv's, so a model's numbers would depend on K.
    Each model's channels are made contiguous and convolved on their own: the kernels of a lone run, on the
    same memory layout, forward and backward."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple, padding: tuple):
        super().__init__()
        self.weight = nn.Parameter(weight)                                   # (K, O, I, kh, kw)
        self.bias = nn.Parameter(bias) if bias is not None else None         # (K, O)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, i = self.weight.shape[0], self.weight.shape[2]
        # split and unbind, not indexing: their backward is one cat / stack, where K index backwards would
        # each write a zero tensor of the whole stack's size; a stack of one needs neither split nor its cat
        xs = (x,) if k == 1 else x.split(i, dim=1)
        ws = self.weight.unbind(0)
        bs = self.bias.unbind(0) if self.bias is not None else [None] * k
        outs = [_ContiguousGrad.apply(F.conv2d(xj.contiguous(), wj, bj, self.stride, self.padding))
                for xj, wj, bj in zip(xs, ws, bs)]
        return outs[0] if k == 1 else torch.cat(outs, dim=1)


class _ContiguousGrad(torch.autograd.Function):
    """Identity forward; backward hands on a contiguous gradient. A conv's backward rounds by its gradient's
    memory layout, and that layout depends on K (a slice of the stack's gradient, or the expanded gradient of
    the pool): made contiguous, model k's conv backward is the same whatever K."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class StackedHead(nn.Module):
    """K Linear heads: (K, N, in) -> (K, N, out), one batched matmul; the weight as nn.Linear keeps it, (K, out, in)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)   # (K, out, in), (K, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class StackedBatchNorm2d(nn.Module):
    """K BatchNorm2d layers: every channel normalised over the batch and the pixels, as BatchNorm2d does; model
    k's channels have its own scale, shift and running statistics (views of (K, C) tensors)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
                 running_var: torch.Tensor, num_batches_tracked: torch.Tensor, eps: float, momentum: float):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)                 # (K, C)
        self.register_buffer("running_mean", running_mean)                                # (K, C)
        self.register_buffer("running_var", running_var)                                  # (K, C)
        self.register_buffer("num_batches_tracked", num_batches_tracked)                  # ()
        self.eps, self.momentum = eps, momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:                                    # (N, K*C, H, W)
        if self.training:
            self.num_batches_tracked.add_(1)
        # the running statistics are updated in place through the views
        return F.batch_norm(x, self.running_mean.view(-1), self.running_var.view(-1), self.weight.view(-1),
                            self.bias.view(-1), self.training, self.momentum, self.eps)


class StackedGroupNorm(nn.Module):
    """K GroupNorm(1, C) layers (conv's layernorm): K groups, one per model, then each model's scale and shift."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(weight), nn.Parameter(bias), eps  # (K, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[0]
        return F.group_norm(x, k, self.weight.view(-1), self.bias.view(-1), self.eps)


def unsupported_conv(model: nn.Module) -> str | None:
    """Why a ConvNet cannot be stacked, or None where it can (every layer skipexp builds can)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and not (m.affine and m.track_running_stats and m.momentum is not None):
            return f"{name}: only a BatchNorm2d with weight, bias, running statistics and a momentum is stacked"
        if isinstance(m, nn.GroupNorm) and (m.num_groups != 1 or not m.affine):
            return f"{name}: only a GroupNorm with one group and weight and bias is stacked"
        if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros"):
            return f"{name}: only an ungrouped, undilated, zero-padded Conv2d is stacked"
    return None


def _stack(same: list[nn.Module], attr: str) -> torch.Tensor:
    return torch.stack([getattr(s, attr).detach() for s in same])


def stack_conv_models(models: list[ConvNet]) -> ConvNet:
    """One ConvNet of ``models`` side by side; parameters stay in the same order as each model's own.

    As for MLPs (skipexp.training.stacked.stack_models), the stack is built like the model with the most
    skips, and a model without one of them (kind none beside identity) gets a shortcut scale of 0 there."""
    template = max(models, key=lambda m: len(m.skips))
    net = copy.deepcopy(template)
    net.input.stacked = net.head.stacked = True
    per_model = [dict(m.named_modules()) for m in models]
    for name, m in list(net.named_modules()):
        same = [mods.get(name) for mods in per_model]
        if any(s is None for s in same):
            if any(True for _ in m.parameters()):
                raise ValueError(f"{name}: a layer with parameters that not every stacked model has")
            continue
        if isinstance(m, nn.Conv2d):
            bias = _stack(same, "bias") if m.bias is not None else None
            new: nn.Module = StackedConv2d(_stack(same, "weight"), bias, m.stride, m.padding)
        elif isinstance(m, nn.BatchNorm2d):
            new = StackedBatchNorm2d(*(_stack(same, a) for a in ("weight", "bias", "running_mean", "running_var")),
                                     m.num_batches_tracked.detach().clone(), m.eps, m.momentum)
        elif isinstance(m, nn.GroupNorm):
            new = StackedGroupNorm(_stack(same, "weight"), _stack(same, "bias"), m.eps)
        elif isinstance(m, nn.Linear):
            new = StackedHead(_stack(same, "weight"), _stack(same, "bias"))
        elif isinstance(m, Augment):
            m.seeds = [s.seeds[0] for s in same]
            continue
        else:
            for pname, _ in list(m.named_parameters(recurse=False)):   # ReZero's alpha: one per model, (K,)
                setattr(m, pname, nn.Parameter(_stack(same, pname)))
            continue
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, new)
    for name, skip in net.skips.items():
        scales = [m.skips[name].scale if name in m.skips else 0.0 for m in models]
        if any(s != skip.scale for s in scales) and isinstance(skip, ConvSkip):
            skip.scale = torch.tensor(scales, device=next(net.parameters()).device)   # (K,)
    return net
