"""Sweeps from the command line: ``KEY=V1,V2,...`` is a grid axis, ``KEY=VALUE`` holds for every point.

    skipexp sweep configs/skip.yaml model.depth=2,4,8 seed=0,1,2 train.epochs=2   # a grid, no sweep file
    skipexp sweep configs/sweeps/depth.yaml train.epochs=1 model.width=64,128     # a sweep file, overridden

The first argument is told apart by what it holds: a sweep file has ``base``/``grid``, a run config has
config sections (``data``, ``model``, ``train``, ...). The rules follow Hydra's multirun:

- a value is split at commas outside brackets, braces and quotes: ``model.depth=2,4,8`` is an axis of three
  values, ``seed=[0,1,2]`` and ``model.width=[64,32]`` are one value each (a list), and
  ``model.width=[64,32],[32,32]`` is an axis of two lists; ``"key='a,b'"`` is the one string ``a,b``;
- axes keep the order given; a key given twice, an empty item (``2,,4``) or a value listed twice is an
  error, and ``name`` can be neither swept nor fixed (points are named from their values; use ``--name``);
- on a sweep file, an axis is appended to the grid, or replaces the values of a grid key it names, and a
  single value of a grid key makes that axis one value (so point names keep their form); other single
  values are fixed overrides, which win over the file's own ``overrides``;
- a named axis (variants) is chosen like a Hydra config group: ``shortcut=identity,plain`` keeps those
  variants, ``shortcut=plain`` one; a key that variants set is theirs: a value for it, one or a list
  (``model.skip.kind=none``), is refused, as the sweep file refuses it in ``overrides:``.

A grid from the command line is named ``<config stem>-<swept keys>`` (``skip-depth-seed``), the keys as
point names show them; ``--name`` names it otherwise.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from skipexp.core import yamlio
from skipexp.core.config import RunConfig
from skipexp.core.errors import SkipexpError
from skipexp.core.fmt import short_key
from skipexp.experiments.sweep.spec import (
    Sweep,
    check_disjoint,
    check_distinct,
    check_name,
    check_variant_keys,
    leaf_keys,
    load,
)

_OPEN, _CLOSE = "[{", "]}"


def split_items(text: str) -> list[str]:
    """The comma-separated items of an override's value, split only at commas outside brackets, braces
    and quotes. A quote opens only where a YAML scalar can start (so ``it's`` is a plain word). Text that
    does not balance is one item: the YAML parser then says what is wrong with it."""
    items, start, depth, quote, prev = [], 0, 0, None, ","
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1  # an escaped character inside double quotes
            elif c == quote:
                quote = None
        elif c in "'\"" and prev in ",:[{":
            quote = c
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
            if depth < 0:
                return [text]
        elif c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
        if not c.isspace():
            prev = c
        i += 1
    if quote or depth:
        return [text]
    return items + [text[start:]]


@dataclasses.dataclass(frozen=True)
class Overrides:
    axes: dict[str, list]      # dotted key -> its values (a comma list), in the order given
    fixed: dict[str, Any]      # dotted key -> its one value
    texts: tuple[str, ...]     # the words as given


def parse(texts: list[str]) -> Overrides:
    """Split ``KEY=VALUE`` words into grid axes (comma lists) and fixed values, checking each."""
    axes: dict[str, list] = {}
    fixed: dict[str, Any] = {}
    first: dict[str, str] = {}
    for text in texts:
        if "=" not in text:
            yamlio.parse_override(text)  # says what an override looks like
        key, _, raw = text.partition("=")
        try:
            key = ".".join(yamlio.parse_override(f"{key}=")[0])  # the key alone: the value may be a list
        except SkipexpError as e:
            raise SkipexpError(e.message, key=text) from None
        if key in first:
            raise SkipexpError(f"given twice ({first[key]} and {text}); give each key once", key=key)
        first[key] = text
        if key == "name":
            raise SkipexpError("points are named from their values; name the sweep with --name instead", key=key)
        items = split_items(raw)
        if len(items) == 1:
            fixed[key] = yamlio.parse_override(text)[1]
            continue
        if any(not item.strip() for item in items):
            raise SkipexpError(f"empty item in the comma list {raw!r}; quote a value that holds a comma: "
                               f"\"{key}='a,b'\"", key=key)
        values = [yamlio.parse_override(f"{key}={item.strip()}")[1] for item in items]
        check_distinct(values, key=key)
        axes[key] = values
    check_disjoint([*axes, *leaf_keys(fixed)])
    return Overrides(axes, fixed, tuple(texts))


def file_kind(path: Path) -> str:
    """``sweep`` or ``config``, from what the file holds (a SkipexpError when it is neither)."""
    raw = yamlio.read_yaml(path)
    if "grid" in raw or "base" in raw:
        return "sweep"
    sections = [f.name for f in dataclasses.fields(RunConfig)]
    if any(k in sections for k in raw):
        return "config"
    found = ", ".join(str(k) for k in list(raw)[:5])
    raise SkipexpError(f"neither a sweep file (name, base, grid) nor a run config ({', '.join(sections)}); "
                       f"it has {found}", file=str(path))


def resolve(path: Path, texts: list[str], name: str | None = None) -> Sweep:
    """The sweep that ``skipexp sweep PATH KEY=VALUE... [--name NAME]`` asks for, checked but not expanded."""
    kind = file_kind(path)
    ov = parse(texts)
    args = [*ov.texts, *(["--name", name] if name is not None else [])]
    if name is not None:
        check_name(name, key="--name")
    if kind == "sweep":
        return _on_sweep_file(load(path), ov, name, tuple(args))
    if not ov.axes:
        raise SkipexpError("nothing to sweep: give at least one KEY=V1,V2,... override, e.g. model.depth=2,4,8 "
                           "(for one run: skipexp train)", file=str(path))
    stem = "".join(c if c.isalnum() or c in "._+-" else "_" for c in Path(path).stem)
    auto = "-".join([stem, *(short_key(k) for k in ov.axes)])
    return Sweep(name or auto, Path(path).resolve(), ov.axes, Path(path), ov.fixed, tuple(args), inline=True)


def _on_sweep_file(sweep: Sweep, ov: Overrides, name: str | None, args: tuple[str, ...]) -> Sweep:
    grid, fixed, src = dict(sweep.grid), dict(sweep.overrides), str(sweep.source)
    variants = {axis: dict(labels) for axis, labels in sweep.variants.items()}
    for k, values in ov.axes.items():
        if k in variants:
            grid[k] = _labels(sweep, k, values)
            continue
        _refuse_variant_key(variants, k, src)
        fixed.pop(k, None)
        grid[k] = values  # a grid key keeps its place; a new one is appended
    for k, v in ov.fixed.items():
        if k in variants:
            grid[k] = _labels(sweep, k, [v])  # one variant: still an axis, so the point names keep their form
        elif k in grid:
            grid[k] = [v]  # one value of a swept key: still an axis, so the point names keep their form
        else:
            _refuse_variant_key(variants, k, src)
            fixed[k] = v
    variants = {axis: {label: variants[axis][label] for label in grid[axis]} for axis in variants}
    check_disjoint([*grid, *leaf_keys(fixed)], file=src)
    check_variant_keys(grid, fixed, variants, file=src)
    return dataclasses.replace(sweep, name=name or sweep.name, grid=grid, overrides=fixed, args=args,
                               variants=variants)


def _refuse_variant_key(variants: dict[str, dict[str, dict[str, Any]]], key: str, src: str) -> None:
    """A key the variants set stays theirs: one value for every point would leave the labels naming
    variants that no longer differ (``shortcut=identity`` training a plain net), a list would undo them."""
    axis = _set_by_variant(variants, key)
    if axis:
        raise SkipexpError(f"is set by the variants of the named axis {axis}; choose variants with "
                           f"{axis}=LABEL,... or change them in the sweep file", file=src, key=key)


def _set_by_variant(variants: dict[str, dict[str, dict[str, Any]]], key: str) -> str | None:
    """The named axis whose variants set ``key`` (or a key inside it, or one it is inside), if any."""
    for axis, labels in variants.items():
        for variant in labels.values():
            if any(k == key or k.startswith(key + ".") or key.startswith(k + ".") for k in leaf_keys(variant)):
                return axis
    return None


def _labels(sweep: Sweep, axis: str, given: list) -> list[str]:
    """The labels of a named axis chosen on the command line (``shortcut=identity,plain``), checked."""
    labels = list(sweep.variants[axis])
    out = []
    for v in given:
        label = str(v)
        if label not in labels:
            hint = difflib.get_close_matches(label, labels, n=1)
            did = f' (did you mean "{hint[0]}"?)' if hint else ""
            raise SkipexpError(f"no variant {label!r}{did}; its variants: {', '.join(labels)}",
                               file=str(sweep.source), key=axis)
        out.append(label)
    return out
