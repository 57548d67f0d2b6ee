"""Which one-model configs can train together as one stack: a pure function of the configs (no torch).

Contract, for whoever groups sweep points or compare members:

- A config is one model: exactly one seed (expand ``seed: [..]`` first). :func:`group_configs` raises
  ``ValueError`` otherwise.
- Models train together when their configs are equal but for the per-model keys :data:`PER_MODEL`:
  values that change only one model's own arithmetic or initial weights. Everything else must be equal
  in a group: tensor shapes and layer structure (depth, widths, hidden, activation, norm, skip placement,
  span, project), the data (``data.*``), batch size, epochs/steps, logging and checkpoint cadence, device,
  threads, compile, cuda_graphs and the optimizer kind.
- ``model.skip.kind`` ``none`` also joins ``identity``: a unit without a skip is an identity skip of scale
  0, exactly (``fx + 0 * x``), and neither kind has parameters of its own, so both write the same columns.
  A ``none`` config's placement keys (``every``, ``blocks``) mean nothing and are ignored; its span counts.
- Groups keep the input order: each group lists indices ascending, groups ordered by their first index.
  Every index is in exactly one group. Training a group (:func:`skipexp.training.fit.fit`) writes each
  member's own ordinary run folder, equal to its lone run (to the bit on the CPU).
"""
from __future__ import annotations

import json
from collections.abc import Hashable

from skipexp.core.config import RunConfig, flatten

# Dotted keys a model of a stack may have its own value of.
PER_MODEL: frozenset[str] = frozenset({
    "name", "seed",                                   # its folder and its init and batch order
    "train.lr", "train.momentum", "train.weight_decay", "train.grad_clip", "train.schedule",
    "model.init", "model.skip.gate_bias", "model.skip.scale", "model.skip.project_init",
})
# With kind none the skip's placement builds nothing; the stack builds such a model as identity of scale 0.
_JOINS_IDENTITY = "none"
_PLACEMENT = ("model.skip.every", "model.skip.blocks")


def stack_key(cfg: RunConfig) -> Hashable:
    """``cfg`` without its per-model keys, with kind none read as identity: configs with equal keys can train
    together (placement aside, see :func:`group_configs`)."""
    flat = {k: v for k, v in flatten(cfg.to_dict()).items() if k not in PER_MODEL}
    if flat["model.skip.kind"] == _JOINS_IDENTITY:
        flat["model.skip.kind"] = "identity"
        for key in _PLACEMENT:
            flat[key] = None   # a wildcard: group_configs matches it to any identity placement
    return json.dumps(flat, sort_keys=True)


def _placement_free(key: str) -> str:
    flat = json.loads(key)
    for k in _PLACEMENT:
        flat[k] = None
    return json.dumps(flat, sort_keys=True)


def group_configs(cfgs: list[RunConfig]) -> list[list[int]]:
    """Indices of ``cfgs`` split into groups that can each train as one stack (see the module's contract)."""
    for i, c in enumerate(cfgs):
        if len(c.seeds) != 1:
            raise ValueError(f"config {i} ({c.name}) lists seeds {c.seeds}: one config is one model")
    keys = [stack_key(c) for c in cfgs]
    groups: list[list[int]] = []
    by_key: dict[str, list[int]] = {}
    for i, (c, key) in enumerate(zip(cfgs, keys)):
        if c.model.skip.kind == _JOINS_IDENTITY:
            continue   # placed once every identity group exists
        if key not in by_key:
            by_key[key] = []
            groups.append(by_key[key])
        by_key[key].append(i)
    # a none model joins the first group of its shape with a placement; otherwise a group of the none ones
    free = {}
    for key, members in by_key.items():
        free.setdefault(_placement_free(key), members)
    for i, (c, key) in enumerate(zip(cfgs, keys)):
        if c.model.skip.kind != _JOINS_IDENTITY:
            continue
        members = free.get(key)
        if members is None:
            members = free[key] = []
            groups.append(members)
        members.append(i)
    for g in groups:
        g.sort()
    return sorted(groups, key=lambda g: g[0])
