"""The network: an input Linear, ``depth`` blocks grouped into units that a skip may bypass, a head.

A block is the tutorial's ``SimpleBlock`` (Linear -> act -> Linear, with an optional norm); a skip is
an object that combines a unit's input ``x`` with the unit's output ``F(x)``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from skipexp.core.config import ModelConfig, SkipConfig
from skipexp.core.inits import CRITICAL_GAINS, GAINS, Site
from skipexp.core.registry import ACTIVATIONS, INITS, NORMS, ORDERS, SKIPS

# --- activations and norms (the inits: skipexp.core.inits) --------------------------------------

ACTIVATIONS.implements("relu")(nn.ReLU)
ACTIVATIONS.implements("tanh")(nn.Tanh)
ACTIVATIONS.implements("gelu")(nn.GELU)
ACTIVATIONS.implements("sigmoid")(nn.Sigmoid)
ACTIVATIONS.implements("identity")(nn.Identity)

NORMS.implements("none")(lambda width: nn.Identity())
NORMS.implements("layernorm")(nn.LayerNorm)
NORMS.implements("batchnorm")(nn.BatchNorm1d)


# --- the block -----------------------------------------------------------------------------------

@ORDERS.implements("post")
class Block(nn.Module):
    """The seed tutorial's SimpleBlock: fc1 -> (norm) -> act -> fc2."""

    reads_act = False   # its input goes into a Linear first (what the Linear before it feeds, for the inits)

    def __init__(self, d_in: int, hidden: int, d_out: int, activation: str = "relu", norm: str = "none"):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.norm = NORMS.get(norm)(hidden)
        self.act = ACTIVATIONS.get(activation)()
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm(self.fc1(x))))


@ORDERS.implements("pre")
class PreActBlock(nn.Module):
    """Pre-activation (He et al. 2016b, "Identity mappings"): (norm1) -> act -> fc1 -> (norm2) -> act -> fc2."""

    reads_act = True

    def __init__(self, d_in: int, hidden: int, d_out: int, activation: str = "relu", norm: str = "none"):
        super().__init__()
        self.norm1 = NORMS.get(norm)(d_in)
        self.act = ACTIVATIONS.get(activation)()
        self.fc1 = nn.Linear(d_in, hidden)
        self.norm2 = NORMS.get(norm)(hidden)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.norm2(self.fc1(self.act(self.norm1(x))))))


# --- skips: combine a unit's input x with its output fx ------------------------------------------

def projection(d_in: int, d_out: int, project: str) -> nn.Module:
    """P: x itself where the widths agree; a learned Linear (no bias) where they differ, or everywhere with
    ``project: always``."""
    if d_in == d_out and project == "auto":
        return nn.Identity()
    return nn.Linear(d_in, d_out, bias=False)


class Skip(nn.Module):
    """Base of the skip kinds; ``forward(x, fx)`` returns the unit's output."""

    def __init__(self, d_in: int, d_out: int, cfg: SkipConfig):
        super().__init__()

    def extra_repr(self) -> str:
        return self.__class__.__doc__.splitlines()[0] if self.__class__.__doc__ else ""


class ShortcutSkip(Skip):
    """Base of the kinds that carry x past F: the shortcut s(x) = scale * P(x)."""

    def __init__(self, d_in: int, d_out: int, cfg: SkipConfig):
        super().__init__(d_in, d_out, cfg)
        self.build(d_in, d_out, cfg)
        # P after build(): layers() lists modules in the order they were built, which is the order forward
        # uses them, and the seeded init draws them in that order too
        self.proj = projection(d_in, d_out, cfg.project)
        self.scale = cfg.scale  # a constant, not a parameter (He et al. 2016's constant scaling)

    def build(self, d_in: int, d_out: int, cfg: SkipConfig) -> None:
        """A kind's own layers that forward uses before the shortcut (the highway gate)."""

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        px = self.proj(x)
        return px if self.scale == 1.0 else self.scale * px  # scale 1: no multiply, the common case stays as fast

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", scale={self.scale}" if self.scale != 1.0 else "")


@SKIPS.implements("none")
class NoSkip(Skip):
    """out = F(x)"""

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return fx


@SKIPS.implements("identity")
class IdentitySkip(ShortcutSkip):
    """out = F(x) + scale * x"""

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return fx + self.shortcut(x)


@SKIPS.implements("projection")
class ProjectionSkip(ShortcutSkip):
    """out = F(x) + scale * P(x)"""

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return fx + self.shortcut(x)


@SKIPS.implements("rezero")
class ReZeroSkip(ShortcutSkip):
    """out = scale * P(x) + alpha * F(x), alpha = 0 at init"""

    def __init__(self, d_in: int, d_out: int, cfg: SkipConfig):
        super().__init__(d_in, d_out, cfg)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.alpha * fx


@SKIPS.implements("gated")
class GatedSkip(ShortcutSkip):
    """out = T(x) * F(x) + (1 - T(x)) * scale * P(x), T = sigmoid(gate(x))"""

    def build(self, d_in: int, d_out: int, cfg: SkipConfig) -> None:
        self.gate = nn.Linear(d_in, d_out)
        self.gate_bias = cfg.gate_bias

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return t * fx + (1 - t) * self.shortcut(x)


@SKIPS.implements("shortcut-gated")
class ShortcutGatedSkip(GatedSkip):
    """out = F(x) + (1 - T(x)) * scale * P(x), T = sigmoid(gate(x))"""

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return fx + (1 - t) * self.shortcut(x)


# Dense units have no combining object: their blocks read concatenated inputs (see SkipNet.plan).
SKIPS.implements("dense")(None)


# --- the network ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    blocks: tuple[int, ...]   # indices into SkipNet.blocks
    bypassed: bool            # whether the config puts a skip around this unit
    skip: str | None          # key into SkipNet.skips, or None (no skip, or dense)
    sources: tuple[tuple[int, ...], ...]  # per block: the boundaries h_s whose concatenation it reads


def plan(cfg: ModelConfig) -> list[Unit]:
    """The units of a model of ``cfg`` in forward order, with what each block reads (its sources)."""
    kind = cfg.skip.kind
    units: list[Unit] = []
    run_start: int | None = None  # first boundary of the current run of dense units
    for u, (blocks, has_skip) in enumerate(cfg.units()):
        first = blocks[0]
        if kind == "dense" and has_skip:
            run_start = first if run_start is None else run_start
            src = [tuple(range(run_start, i + 1)) for i in blocks]
        else:
            run_start = None
            src = [(i,) for i in blocks]
        skip = str(u) if has_skip and kind != "dense" else None
        units.append(Unit(tuple(blocks), has_skip, skip, tuple(src)))
    return units


def block_shapes(cfg: ModelConfig, units: list[Unit] | None = None) -> list[tuple[int, int, int]]:
    """(input width, hidden width, output width) of every block, without building the model (``units``:
    ``plan(cfg)``, where the caller has it)."""
    widths = cfg.widths()
    bw = [widths[0]] + widths
    sources = [src for unit in (units or plan(cfg)) for src in unit.sources]
    return [(sum(bw[s] for s in sources[i]), cfg.hidden or widths[i], widths[i]) for i in range(cfg.depth)]


def parameter_count(cfg: ModelConfig, input_dim: int, num_classes: int, units: list[Unit] | None = None) -> int:
    """The parameters of ``SkipNet(cfg, input_dim, num_classes)``, counted without building it (a model too big
    to build can be refused by its size). A norm's and a skip's own parameters are counted on modules of
    their shape built on the meta device, which allocates nothing."""
    widths = cfg.widths()
    bw = [widths[0]] + widths
    units = units or plan(cfg)

    def linear(i: int, o: int, bias: bool = True) -> int:
        return i * o + (o if bias else 0)

    def own(make: Callable[..., nn.Module], *args: object) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in make(*args).parameters())

    norms: dict[int, int] = {}
    total = linear(input_dim, bw[0]) + linear(bw[-1], num_classes)
    for d_in, hidden, d_out in block_shapes(cfg, units):
        if hidden not in norms:
            norms[hidden] = own(NORMS.get(cfg.norm), hidden)
        total += linear(d_in, hidden) + norms[hidden] + linear(hidden, d_out)
    skips: dict[tuple[int, int], int] = {}
    for unit in units:
        if unit.skip is not None:
            shape = (bw[unit.blocks[0]], bw[unit.blocks[-1] + 1])
            if shape not in skips:
                skips[shape] = own(SKIPS.get(cfg.skip.kind), *shape, cfg.skip)
            total += skips[shape]
    return total


class UnitNet(nn.Module):
    """What a net of blocks grouped in units (:func:`plan`) tells about itself, whatever its blocks: the names
    of its boundaries h0..h_depth and a row per layer, and its forward. Its subclass gives ``cfg``, ``units``,
    ``layers()``, ``input``, ``head`` and ``boundaries(h0)``."""

    def forward(self, x: torch.Tensor, capture: bool = False):
        """Logits (N, classes), a stack's (K, N, classes); with ``capture``, also the boundaries h0..h_depth."""
        hs = self.boundaries(self.input(x))
        logits = self.head(hs[-1])
        return (logits, hs) if capture else logits

    def boundary_names(self) -> list[str]:
        return [f"h{i}" for i in range(self.cfg.depth + 1)]

    def describe(self) -> list[dict]:
        """One row per layer: name, shape, parameters, the skip kind of the unit it is in."""
        unit_of = {}
        for unit in self.units:
            kind = self.cfg.skip.kind if unit.bypassed else "none"
            for i in unit.blocks:
                unit_of[f"blocks.{i}"] = kind
            if unit.skip is not None:
                unit_of[f"skips.{unit.skip}"] = kind
        rows = []
        for name, params in self.layers():
            owner = ".".join(name.split(".")[:2])
            shape = " + ".join("x".join(map(str, p.shape)) or "scalar" for p in params)
            rows.append({"name": name, "shape": shape, "params": sum(p.numel() for p in params),
                         "skip": unit_of.get(owner, "-")})
        return rows


class SkipNet(UnitNet):
    """input Linear -> blocks (in units, some bypassed by a skip) -> head Linear.

    Boundaries ``h0 .. h<depth>`` are the activations between blocks: ``h0`` is the input layer's
    output, ``h<i+1>`` the output of block ``i`` (after the skip, where a unit ends there).
    """

    def __init__(self, cfg: ModelConfig, input_dim: int, num_classes: int):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        widths = cfg.widths()
        bw = [widths[0]] + widths  # width of every boundary h0..h_depth
        self.boundary_widths = bw
        kind = cfg.skip.kind
        self.units = plan(cfg)
        sources = [src for unit in self.units for src in unit.sources]

        self.input = nn.Linear(input_dim, bw[0])
        hidden = cfg.hidden
        block = ORDERS.get(cfg.order)
        self.blocks = nn.ModuleList(
            block(sum(bw[s] for s in sources[i]), hidden or widths[i], widths[i], cfg.activation, cfg.norm)
            for i in range(cfg.depth)
        )
        skip_cls = SKIPS.get(kind)
        self.skips = nn.ModuleDict({
            unit.skip: skip_cls(bw[unit.blocks[0]], bw[unit.blocks[-1] + 1], cfg.skip)
            for unit in self.units if unit.skip is not None
        })
        self.head = nn.Linear(bw[-1], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        init = INITS.get(self.cfg.init)
        sites = self.sites()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init(module, sites.get(module, sites[None]))
        for skip in self.skips.values():
            if isinstance(skip, GatedSkip):
                nn.init.constant_(skip.gate.bias, skip.gate_bias)
            if isinstance(getattr(skip, "proj", None), nn.Linear) and self.cfg.skip.project_init == "identity":
                nn.init.eye_(skip.proj.weight)   # after the draws above: every other weight is what init draws

    def sites(self) -> dict:
        """Where each block Linear sits (:class:`~skipexp.core.inits.Site`); key None: every other Linear
        (input layer, head, projections, gates), whose output goes into the next block or the head."""
        gain = GAINS[self.cfg.activation]
        crit = CRITICAL_GAINS.get(self.cfg.activation, gain)
        into_block = crit if type(self.blocks[0]).reads_act else 1.0   # a block's input: a Linear, or an act
        sites = {None: Site(gain, into_block)}
        for i, blk in enumerate(self.blocks):
            sites[blk.fc1] = Site(gain, crit, "rows")
            sites[blk.fc2] = Site(gain, into_block if i + 1 < len(self.blocks) else 1.0, "cols")
        last = self.units[-1].skip if self.units else None
        for name, skip in self.skips.items():
            if isinstance(getattr(skip, "proj", None), nn.Linear) and name == last:
                sites[skip.proj] = Site(gain)   # into the head
            if isinstance(skip, GatedSkip):
                sites[skip.gate] = Site(gain)   # into the gate's sigmoid, which has no critical gain
        sites[self.head] = Site(gain)
        return sites

    def boundaries(self, h0: torch.Tensor) -> list[torch.Tensor]:
        """The boundaries h0..h_depth from h0 (N, width), the input layer's output."""
        hs = [h0]
        for unit in self.units:
            start = hs[-1]
            for i, src in zip(unit.blocks, unit.sources):
                inp = hs[src[0]] if len(src) == 1 else torch.cat([hs[s] for s in src], dim=-1)
                hs.append(self.blocks[i](inp))
            if unit.skip is not None:
                hs[-1] = self.skips[unit.skip](start, hs[-1])
        return hs

    def layers(self) -> list[tuple[str, list[nn.Parameter]]]:
        """Parameterised layers in forward order, named by module path (``input``, ``blocks.0.fc1``, ...)."""
        order: list[nn.Module] = [self.input]
        for unit in self.units:
            order += [self.blocks[i] for i in unit.blocks]
            if unit.skip is not None:
                order.append(self.skips[unit.skip])
        order.append(self.head)
        path = {m: name for name, m in self.named_modules()}
        out = []
        for top in order:
            # a module's own parameters form one layer (alpha of rezero); each child with parameters another
            own = list(top.parameters(recurse=False))
            if own:
                out.append((path[top], own))
            for _, child in top.named_modules():
                if child is top:
                    continue
                params = list(child.parameters(recurse=False))
                if params:
                    out.append((path[child], params))
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
