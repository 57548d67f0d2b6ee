"""Stacked models: K SkipNets of one shape as one module whose every weight has a leading K dimension.

Linear layers become ``torch.baddbmm`` over that dimension: one batched matmul instead of K small ones; a
batch norm normalises each model's features over that model's own batch, with running statistics of its own.
Which models the stacked form expresses exactly is :func:`unstackable_reason`'s one answer, from the module
types registered with :func:`register_stackable`. Models may differ in
values that leave the shapes alone: their initial weights (seed, init, gate bias) are copied in, and a
skip's constant scale becomes one per model, 0 for a model without that skip (``none`` in a stack of
``identity``), since ``F(x) + 0 * x`` is ``F(x)`` exactly.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from skipexp.core.conv import ConvNet
from skipexp.core.models import Block, PreActBlock, ShortcutSkip, Skip, SkipNet
from skipexp.training.stacked_conv import stack_conv_models, unsupported_conv

# Module types that stack, each with its check: why an instance cannot be stacked, or None. A model family
# registers its modules (and gives them a stacked form in stack_models) with register_stackable.
STACKABLE: dict[type, Callable[[nn.Module], str | None]] = {}
WHOLE: set[type] = set()   # types whose check answers for every module inside them too (a whole model family)


def register_stackable(*types: type, check: Callable[[nn.Module], str | None] = lambda m: None,
                       whole: bool = False) -> None:
    """Declare that modules of ``types`` stack, where ``check(module)`` (default: always) gives no reason not to;
    with ``whole``, the check also answers for the modules inside them."""
    for cls in types:
        STACKABLE[cls] = check
        if whole:
            WHOLE.add(cls)


def unstackable_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained as a stack (a lone run is a stack of one), or None where it can."""
    covered: list[str] = []   # names of modules whose check answered for what is inside them
    for name, m in model.named_modules():
        if any(name.startswith(c + ".") or c == "" for c in covered):
            continue
        check = next((STACKABLE[cls] for cls in type(m).__mro__ if cls in STACKABLE), None)
        why = f"no stacked form of {type(m).__name__}" if check is None else check(m)
        if why is not None:
            return f"{name or 'model'}: {why}"
        if type(m) in WHOLE:
            covered.append(name)
    return None


def _layer_norm(m: nn.Module) -> str | None:
    if not m.elementwise_affine or len(m.normalized_shape) != 1:
        return "only a LayerNorm over the last dimension with weight and bias is stacked"
    return None


def _batch_norm(m: nn.Module) -> str | None:
    if not (m.affine and m.track_running_stats) or m.momentum is None:
        return "only a BatchNorm1d with weight, bias, running statistics and a momentum is stacked"
    return None


def _container(m: nn.Module) -> str | None:
    # a module's own parameters (ReZero's alpha) are stacked only where they are scalars
    if any(p.dim() > 0 for p in m.parameters(recurse=False)):
        return f"a {type(m).__name__} with non-scalar parameters of its own"
    if any(True for _ in m.buffers(recurse=False)):
        return f"a {type(m).__name__} with buffers"
    return None


# Linear layers and elementwise modules (whose forward works unchanged on (K, N, features) inputs once their
# weights are stacked); norms with their conditions; the containers around them.
register_stackable(nn.Linear, nn.Identity, nn.ReLU, nn.Tanh, nn.GELU, nn.Sigmoid)
register_stackable(nn.LayerNorm, check=_layer_norm)
register_stackable(nn.BatchNorm1d, check=_batch_norm)
register_stackable(SkipNet, Block, PreActBlock, Skip, nn.ModuleList, nn.ModuleDict, check=_container)
register_stackable(ConvNet, check=unsupported_conv, whole=True)   # conv nets stack as a whole (stacked_conv)


class StackedLinear(nn.Module):
    """K Linear layers at once: (K, N, in) -> (K, N, out) with one batched matmul.

    The weight is stored transposed, (K, in, out), unlike nn.Linear's (out, in): a transposed view as
    bmm operand makes the CPU kernel copy every seed's matrix, which costs ~15 % of a width-64 step.
    """

    def __init__(self, weight_t: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.weight = nn.Parameter(weight_t)                                 # (K, in, out)
        self.bias = nn.Parameter(bias) if bias is not None else None         # (K, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)


class StackedLayerNorm(nn.Module):
    """K LayerNorms: normalise the last dimension, then each seed's own scale and shift."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(weight), nn.Parameter(bias), eps  # (K, H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)
        return h * self.weight.unsqueeze(1) + self.bias.unsqueeze(1)   # not addcmul: see StackedBatchNorm


class StackedBatchNorm(nn.Module):
    """K BatchNorm1d layers: model k's features normalised over model k's batch, with its own scale, shift and
    running statistics; in training mode the running variance takes the unbiased batch variance, as
    BatchNorm1d's does.

    Written out from means along the batch dimension and single-rounding elementwise ops (no fused kernel):
    torch's batch_norm kernel rounds a channel differently depending on how many channels it is given, so
    model k's numbers would depend on K. These ops compute model k's rows the same way whatever K is; they
    agree with BatchNorm1d within float rounding."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, running_mean: torch.Tensor,
                 running_var: torch.Tensor, num_batches_tracked: torch.Tensor, eps: float, momentum: float):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)                 # (K, H)
        self.register_buffer("running_mean", running_mean)                                # (K, H)
        self.register_buffer("running_var", running_var)                                  # (K, H)
        self.register_buffer("num_batches_tracked", num_batches_tracked)                  # ()
        self.eps, self.momentum = eps, momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:                                    # (K, N, H)
        if self.training:
            n = x.shape[1]
            mean = x.mean(1, keepdim=True)                                                  # (K, 1, H)
            centred = x - mean
            var = centred.square().mean(1, keepdim=True)                                    # biased, to normalise
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(mean.squeeze(1) * m)
                self.running_var.mul_(1 - m).add_(var.squeeze(1) * (n / (n - 1)) * m)
        else:
            centred, var = x - self.running_mean.unsqueeze(1), self.running_var.unsqueeze(1)
        return centred / torch.sqrt(var + self.eps) * self.weight.unsqueeze(1) + self.bias.unsqueeze(1)


@torch.no_grad()
def copy_buffers(stack: nn.Module, model: nn.Module, k: int) -> None:
    """Model k's buffers from the stack into its own model (what evaluation and checkpoints read): a buffer of
    each model's own (batch norms' running statistics, with a leading model dimension) gives its slice k, a
    buffer the models share (a step count: batch norm's batches, augmentation's draws) is copied whole."""
    mine = dict(model.named_buffers())
    for name, buf in stack.named_buffers():
        own = mine.get(name)
        if own is not None:
            own.copy_(buf[k] if buf.dim() == own.dim() + 1 else buf)


def stack_models(models: list[SkipNet]) -> SkipNet:
    """One SkipNet whose every weight has a leading model dimension; parameters stay in the same order.

    The stack is built like the model with the most skips; a model without one of them (kind none) must
    then have no parameters there, and gets a scale of 0 on that skip's shortcut. Conv nets are stacked by
    :func:`~skipexp.training.stacked_conv.stack_conv_models`.
    """
    if isinstance(models[0], ConvNet):
        return stack_conv_models(models)
    template = max(models, key=lambda m: len(m.skips))
    net = copy.deepcopy(template)
    k = len(models)
    per_model = [dict(m.named_modules()) for m in models]
    for name, m in list(net.named_modules()):
        same = [mods.get(name) for mods in per_model]
        if any(s is None for s in same):
            if any(True for _ in m.parameters()):
                raise ValueError(f"{name}: a layer with parameters that not every stacked model has")
            continue
        if isinstance(m, nn.Linear):
            bias = torch.stack([s.bias.detach() for s in same]) if m.bias is not None else None
            new: nn.Module = StackedLinear(torch.stack([s.weight.detach().t() for s in same]).contiguous(), bias)
        elif isinstance(m, nn.LayerNorm):
            new = StackedLayerNorm(torch.stack([s.weight.detach() for s in same]),
                                   torch.stack([s.bias.detach() for s in same]), m.eps)
        elif isinstance(m, nn.BatchNorm1d):
            new = StackedBatchNorm(*(torch.stack([getattr(s, a).detach() for s in same])
                                     for a in ("weight", "bias", "running_mean", "running_var")),
                                   m.num_batches_tracked.detach().clone(), m.eps, m.momentum)
        else:
            for pname, _ in list(m.named_parameters(recurse=False)):  # scalars: (K, 1, 1) broadcasts on (K, N, H)
                stacked = torch.stack([getattr(s, pname).detach() for s in same]).view(k, 1, 1)
                setattr(m, pname, nn.Parameter(stacked))
            continue
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, new)
    for name, skip in net.skips.items():
        if not isinstance(skip, ShortcutSkip):
            continue
        scales = [m.skips[name].scale if name in m.skips else 0.0 for m in models]
        if any(s != skip.scale for s in scales):
            device = next(net.parameters()).device
            _scale_per_model(skip, torch.tensor(scales, device=device).view(k, 1, 1))
    return net


_SCALED: dict[type, type] = {}


def _scale_per_model(skip: ShortcutSkip, scale: torch.Tensor) -> None:
    """Give ``skip`` one constant shortcut scale per model, ``scale`` (K, 1, 1), in place of its one float."""
    cls = type(skip)
    if cls not in _SCALED:
        def shortcut(self: ShortcutSkip, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x) * self.model_scale   # the lone skip's scale * P(x), elementwise: the same numbers
        _SCALED[cls] = type(f"PerModel{cls.__name__}", (cls,), {"shortcut": shortcut})
    skip.__class__ = _SCALED[cls]
    skip.model_scale = scale
