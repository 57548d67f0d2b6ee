"""Residual conv nets as He et al. (2016) built them for CIFAR: a stem 3x3 conv, ``model.stages`` stages of basic
blocks (two 3x3 convs), the channels doubling and the resolution halving at each later stage's first block, a
global average pool and a Linear head.

Inside, every activation is laid out (N, K*C, H, W): K models' channels side by side, K = 1 for a model of its
own. :mod:`skipexp.training.stacked_conv` stacks K models by swapping their layers for K-model ones and keeps
this forward. A net reads its input as the flat rows every dataset here is stored as,
(N, C*H*W), each one its (C, H, W) image (row-major: the same memory).
"""
from __future__ import annotations

import torch
import torch.fx  # imported by torch itself already
from torch import nn
from torch.nn import functional as F

from skipexp.core.config import ModelConfig, SkipConfig
from skipexp.core.inits import CRITICAL_GAINS, GAINS, Site
from skipexp.core.models import UnitNet, plan
from skipexp.core.registry import ACTIVATIONS, INITS

# model.norm for conv nets: layernorm normalises each example over (C, H, W), GroupNorm with one group
CONV_NORMS = {
    "none": lambda c: nn.Identity(),
    "batchnorm": nn.BatchNorm2d,
    "layernorm": lambda c: nn.GroupNorm(1, c),
}


class _PerModel(torch.autograd.Function):
    """a[k] * model k's channels of t (N, K*C, H, W); a's gradient summed over each model's own elements, copied
    out contiguous, so that model k's sum is the same whatever K (a broadcast multiply's backward reduces
    over the batch and the pixels of all models at once, in an order that depends on K)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, t)
        n, k = t.shape[0], a.shape[0]
        return (t.view(n, k, -1) * a.view(1, k, 1)).view(t.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, t = ctx.saved_tensors
        n, k = t.shape[0], a.shape[0]
        g, tv = grad.reshape(n, k, -1), t.view(n, k, -1)
        grad_t = (g * a.view(1, k, 1)).view(t.shape) if ctx.needs_input_grad[1] else None
        grad_a = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.stack([(g[:, j].contiguous() * tv[:, j].contiguous()).sum() for j in range(k)])
        return grad_a, grad_t


def times(a: torch.Tensor | float, t: torch.Tensor) -> torch.Tensor:
    """``a * t`` where ``a`` is one number per model: a float or a () tensor (one model), or a (K,) tensor that
    scales model k's channels of ``t`` (N, K*C, H, W)."""
    if not torch.is_tensor(a) or a.dim() == 0:
        return a * t
    return _PerModel.apply(a, t)


# --- blocks --------------------------------------------------------------------------------------

class ConvBlock(nn.Module):
    """He et al.'s basic block, F(x) = norm2(conv2(act(norm1(conv1(x))))); the unit applies act after the skip."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str, norm: str, kernel: int = 3):
        super().__init__()
        bias = norm == "none"   # a norm's shift makes a conv's bias redundant (He et al. use none)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=bias)
        self.norm1 = CONV_NORMS[norm](c_out)
        self.act = ACTIVATIONS.get(activation)()
        self.conv2 = nn.Conv2d(c_out, c_out, kernel, 1, kernel // 2, bias=bias)
        self.norm2 = CONV_NORMS[norm](c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))

    def finish(self, h: torch.Tensor) -> torch.Tensor:
        """The block's output from F(x) combined with its skip: act after the addition."""
        return self.act(h)


class PreActConvBlock(nn.Module):
    """Pre-activation (He et al. 2016b): F(x) = conv2(act(norm2(conv1(act(norm1(x)))))), nothing after the skip."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str, norm: str, kernel: int = 3):
        super().__init__()
        bias = norm == "none"
        self.norm1 = CONV_NORMS[norm](c_in)
        self.act = ACTIVATIONS.get(activation)()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=bias)
        self.norm2 = CONV_NORMS[norm](c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel, 1, kernel // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.norm2(self.conv1(self.act(self.norm1(x))))))

    def finish(self, h: torch.Tensor) -> torch.Tensor:
        return h


CONV_ORDERS = {"post": ConvBlock, "pre": PreActConvBlock}   # keyed by registry.ORDERS


# --- shortcuts: what carries x past a unit whose shape changes ------------------------------------

class ZeroPad(nn.Module):
    """Option A (He et al. 2016): every stride-th pixel of x, zero channels appended; no parameters, and x kept
    exactly in the first c_in channels."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:                      # (N, K*c_in, H, W)
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        n, kc, h, w = x.shape
        k = kc // self.c_in
        padded = F.pad(x.reshape(n, k, self.c_in, h, w), (0, 0, 0, 0, 0, self.c_out - self.c_in))
        return padded.reshape(n, k * self.c_out, h, w)                       # (N, K*c_out, H/s, W/s)

    def extra_repr(self) -> str:
        return f"{self.c_in} -> {self.c_out}, stride={self.stride}"


class Projection(nn.Module):
    """Option B (He et al. 2016): a learned 1x1 conv with the unit's stride, then the model's norm."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, stride, bias=norm == "none")
        self.norm = CONV_NORMS[norm](c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def shortcut_map(kind: str, c_in: int, c_out: int, stride: int, cfg: SkipConfig, norm: str) -> nn.Module:
    """P of a unit: x itself where the shape stays (and ``project: auto``); where it changes, option A for the
    parameter-free identity kind and option B (projection) for every other kind; ``project: always``: B on every
    unit (option C)."""
    same = c_in == c_out and stride == 1
    if same and cfg.project == "auto":
        return nn.Identity()
    if kind == "identity":
        return ZeroPad(c_in, c_out, stride)
    return Projection(c_in, c_out, stride, norm)


# --- skips: combine a unit's input x with its output fx (the formulas of skipexp.core.models) -----

class ConvSkip(nn.Module):
    """Base of the conv skip kinds: the shortcut s(x) = scale * P(x)."""

    def __init__(self, kind: str, c_in: int, c_out: int, stride: int, cfg: SkipConfig, norm: str):
        super().__init__()
        self.build(c_in, c_out, stride, cfg)
        self.proj = shortcut_map(kind, c_in, c_out, stride, cfg, norm)   # after build(): forward's order
        self.scale: float | torch.Tensor = cfg.scale   # a stack of none beside identity: one per model

    def build(self, c_in: int, c_out: int, stride: int, cfg: SkipConfig) -> None:
        """A kind's own layers that forward uses before the shortcut (the highway gate)."""

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        px = self.proj(x)
        return px if isinstance(self.scale, float) and self.scale == 1.0 else times(self.scale, px)

    def extra_repr(self) -> str:
        return self.__class__.__doc__.splitlines()[0]


class ConvNoSkip(ConvSkip):
    """out = F(x)"""

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return fx


class ConvAddSkip(ConvSkip):
    """out = F(x) + scale * P(x)"""

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return fx + self.shortcut(x)


class ConvReZeroSkip(ConvSkip):
    """out = scale * P(x) + alpha * F(x), alpha = 0 at init"""

    def build(self, c_in: int, c_out: int, stride: int, cfg: SkipConfig) -> None:
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + times(self.alpha, fx)


class ConvGatedSkip(ConvSkip):
    """out = T(x) * F(x) + (1 - T(x)) * scale * P(x), T = sigmoid(gate(x)), gate a 1x1 conv"""

    def build(self, c_in: int, c_out: int, stride: int, cfg: SkipConfig) -> None:
        self.gate = nn.Conv2d(c_in, c_out, 1, stride)
        self.gate_bias = cfg.gate_bias

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return t * fx + (1 - t) * self.shortcut(x)


class ConvShortcutGatedSkip(ConvGatedSkip):
    """out = F(x) + (1 - T(x)) * scale * P(x), T = sigmoid(gate(x))"""

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return fx + (1 - t) * self.shortcut(x)


# keyed by registry.SKIPS; the kinds with no conv form are registry.CONV_REFUSES (config validation names why)
CONV_SKIPS = {"none": ConvNoSkip, "identity": ConvAddSkip, "projection": ConvAddSkip, "rezero": ConvReZeroSkip,
              "gated": ConvGatedSkip, "shortcut-gated": ConvShortcutGatedSkip}


# --- augmentation ----------------------------------------------------------------------------------

class Augment(nn.Module):
    """Random crop with zero padding and random horizontal flip of each training image (in training mode only).

    Model k draws from its own seed and the number of training forwards so far (a buffer, so a checkpoint
    holds it and a resumed run draws on), never from a global RNG: a model draws the same crops and flips
    alone and in a stack of any K.
    """

    def __init__(self, kinds: list[str], padding: int, seeds: list[int]):
        super().__init__()
        self.crop, self.flip = "crop" in kinds, "flip" in kinds
        self.padding = padding if self.crop else 0
        self.seeds = list(seeds)
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:                      # (N, K*C, H, W)
        if isinstance(x, torch.fx.Proxy):   # a trace (skipexp.training.modelstack.flat_forward) must not count a draw
            raise torch.fx.proxy.TraceError("augmentation draws on the host, once per step: not traced")
        n, kc, h, w = x.shape
        k, p = len(self.seeds), self.padding
        draw = int(self.draws)
        self.draws += 1
        offsets, flips = [], []
        for seed in self.seeds:
            g = torch.Generator().manual_seed(seed * 2_000_003 + draw * 7 + 3)
            offsets.append(torch.randint(0, 2 * p + 1, (n, 2), generator=g))
            flips.append(torch.rand(n, generator=g) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool))
        off, flip = torch.stack(offsets).to(x.device), torch.stack(flips).to(x.device)   # (K, N, 2), (K, N)
        ar_h, ar_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        rows = off[..., :1] + ar_h                                                       # (K, N, H)
        cols = off[..., 1:] + torch.where(flip[..., None], w - 1 - ar_w, ar_w)           # (K, N, W)
        xp = F.pad(x, (p, p, p, p)).view(n, k, kc // k, h + 2 * p, w + 2 * p)
        kk = torch.arange(k, device=x.device).view(k, 1, 1, 1)
        nn_ = torch.arange(n, device=x.device).view(1, n, 1, 1)
        out = xp[nn_, kk, :, rows[:, :, :, None], cols[:, :, None, :]]                 # (K, N, H, W, C)
        return out.permute(1, 0, 4, 2, 3).reshape(n, kc, h, w)

    def extra_repr(self) -> str:
        return f"crop={self.crop}, padding={self.padding}, flip={self.flip}"


# --- the network -----------------------------------------------------------------------------------

class Input(nn.Module):
    """The input layer, ``model.input``: flat rows (N, C*H*W), or a stack's (K, N, C*H*W), viewed as images
    (N, K*C, H, W), augmented in training, then a 3x3 conv to the first stage's channels; post order adds norm
    and act (pre-activation blocks normalise their own input)."""

    def __init__(self, image: tuple[int, int, int], width: int, activation: str, norm: str, order: str,
                 augment: Augment | None):
        super().__init__()
        self.image, self.stacked = tuple(image), False   # a stack (skipexp.training.stacked_conv) sets stacked
        self.augment = augment
        self.conv = nn.Conv2d(image[0], width, 3, 1, 1, bias=norm == "none")
        post = order == "post"
        self.norm = CONV_NORMS[norm](width) if post else nn.Identity()
        self.act = ACTIVATIONS.get(activation)() if post else nn.Identity()

    def images(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image
        if self.stacked:
            k, n = x.shape[:2]
            return x.view(k, n, c, h, w).transpose(0, 1).reshape(n, k * c, h, w)
        return x.view(-1, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.images(x)
        if self.augment is not None and self.training:
            x = self.augment(x)
        return self.act(self.norm(self.conv(x)))


class Head(nn.Module):
    """``model.head``: (pre-activation nets: norm and act, He et al. 2016b), global average pool, Linear."""

    def __init__(self, c: int, num_classes: int, activation: str, norm: str, order: str):
        super().__init__()
        self.stacked, self.channels = False, c
        pre = order == "pre"
        self.norm = CONV_NORMS[norm](c) if pre else nn.Identity()
        self.act = ACTIVATIONS.get(activation)() if pre else nn.Identity()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:                     # (N, K*C, H, W)
        pooled = self.act(self.norm(h)).mean((2, 3))                         # (N, K*C)
        if self.stacked:                                                     # (K, N, C): each model's own rows
            pooled = pooled.view(pooled.shape[0], -1, self.channels).transpose(0, 1).contiguous()
        return self.fc(pooled)


class _AsLinear:
    """What an init reads of a Linear, for a conv (fan_in = input channels x kernel area, as torch counts)."""

    def __init__(self, conv: nn.Conv2d):
        self.weight, self.bias = conv.weight, conv.bias
        area = conv.weight[0, 0].numel()
        self.in_features, self.out_features = conv.in_channels * area, conv.out_channels * area


class ConvNet(UnitNet):
    """input (stem conv) -> blocks (in units, some bypassed by a skip; stages of depth / stages blocks) -> head
    (pool, Linear): ``model.input(x)`` is h0 and ``model.head(h_last)`` the logits, as in a SkipNet.

    Boundaries ``h0 .. h<depth>`` are the activations between blocks, (N, C_i, H_i, W_i): ``h0`` the stem's
    output, ``h<i+1>`` the output of block ``i`` (after its skip and, in post order, its act).
    """

    def __init__(self, cfg: ModelConfig, image: tuple[int, int, int], num_classes: int,
                 augment: list[str] = (), crop_padding: int = 4, seed: int = 0):
        super().__init__()
        cfg.validate()
        self.cfg, self.image = cfg, tuple(image)
        per = cfg.depth // cfg.stages
        chans = [cfg.width * 2 ** (i // per) for i in range(cfg.depth)]
        strides = [2 if i % per == 0 and i > 0 else 1 for i in range(cfg.depth)]
        bc = [cfg.width] + chans   # channels of every boundary h0..h_depth
        self.boundary_widths = bc
        aug = Augment(list(augment), crop_padding, [seed]) if augment else None
        self.input = Input(image, cfg.width, cfg.activation, cfg.norm, cfg.order, aug)
        self.units = plan(cfg)
        block = CONV_ORDERS[cfg.order]
        self.blocks = nn.ModuleList(block(bc[i], chans[i], strides[i], cfg.activation, cfg.norm)
                                    for i in range(cfg.depth))
        skip = CONV_SKIPS[cfg.skip.kind]
        self.skips = nn.ModuleDict({
            u.skip: skip(cfg.skip.kind, bc[u.blocks[0]], bc[u.blocks[-1] + 1], strides[u.blocks[0]], cfg.skip,
                         cfg.norm)
            for u in self.units if u.skip is not None})
        self.head = Head(bc[-1], num_classes, cfg.activation, cfg.norm, cfg.order)
        self._init_weights()

    def _init_weights(self) -> None:
        init = INITS.get(self.cfg.init)
        gain = GAINS[self.cfg.activation]
        crit = CRITICAL_GAINS.get(self.cfg.activation, gain)
        gates = {skip.gate for skip in self.skips.values() if isinstance(skip, ConvGatedSkip)}
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # every conv's output goes into an act (after a norm or a sum); a gate's into its sigmoid
                init(_AsLinear(module), Site(gain) if module in gates else Site(gain, crit))
        init(self.head.fc, Site(gain))
        for skip in self.skips.values():
            if isinstance(skip, ConvGatedSkip):
                nn.init.constant_(skip.gate.bias, skip.gate_bias)
            if isinstance(skip.proj, Projection) and self.cfg.skip.project_init == "identity":
                with torch.no_grad():
                    skip.proj.conv.weight.zero_()
                    nn.init.eye_(skip.proj.conv.weight[:, :, 0, 0])

    def boundaries(self, h0: torch.Tensor) -> list[torch.Tensor]:
        """The boundaries h0..h_depth from h0, the stem's output."""
        hs = [h0]
        for unit in self.units:
            start = hs[-1]
            for i in unit.blocks:
                fx = self.blocks[i](hs[-1])
                if unit.skip is not None and i == unit.blocks[-1]:
                    fx = self.skips[unit.skip](start, fx)
                hs.append(self.blocks[i].finish(fx))
        return hs

    def layers(self) -> list[tuple[str, list[nn.Parameter]]]:
        """Parameterised layers in forward order, named by module path (``input.conv``, ``blocks.0.conv1``, ...,
        ``head.fc``)."""
        order: list[nn.Module] = [self.input]
        for unit in self.units:
            order += [self.blocks[i] for i in unit.blocks]
            if unit.skip is not None:
                order.append(self.skips[unit.skip])
        order.append(self.head)
        path = {m: name for name, m in self.named_modules()}
        out = []
        for top in order:
            for _, child in top.named_modules():   # the module itself first: ReZero's alpha, the head
                params = list(child.parameters(recurse=False))
                if params:
                    out.append((path[child], params))
        return out
