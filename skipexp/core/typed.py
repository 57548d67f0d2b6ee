"""Frozen dataclasses from plain mappings (parsed YAML, overrides): :func:`build` converts every value to its
field's type, runs the field's checks and the dataclass's ``validate``, and names the dotted key of any error.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Union

from skipexp.core.errors import SkipexpError

_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """Each field's type of the dataclass ``cls``, resolved (cached: configs are built often)."""
    if cls not in _FIELD_TYPES:
        _FIELD_TYPES[cls] = typing.get_type_hints(cls)
    return _FIELD_TYPES[cls]


def _type_name(tp: Any) -> str:
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        item = typing.get_args(tp)[0]
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(item, _type_name(item))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, str(tp))


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _convert(value: Any, tp: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise SkipexpError(f"must be a mapping of keys, got {value!r}", key=key)
        return build(tp, value, prefix=key + ".")
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:  # the first type that accepts the value wins (int before list, etc.)
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except SkipexpError:
                pass
        raise SkipexpError(f"must be {_type_name(tp)}, got {value!r}", key=key)
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            raise SkipexpError(f"must be {_type_name(tp)}, got {value!r}", key=key)
        (item,) = typing.get_args(tp)
        return [_convert(v, item, key) for v in value]
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string; everyone means the number
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[tp]
    if not ok:
        raise SkipexpError(f"must be {_type_name(tp)}, got {value!r}", key=key)
    if tp is float:
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise SkipexpError(f"must be a finite number, got {value!r}", key=key)
    return value


def build(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    """Check ``raw`` against the dataclass ``cls`` and return the frozen instance."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in raw:
        if k not in fields:
            hint = difflib.get_close_matches(str(k), fields, n=1)
            did = f' (did you mean "{prefix}{hint[0]}"?)' if hint else ""
            raise SkipexpError(f"unknown key{did}; valid keys here: {', '.join(fields)}", key=f"{prefix}{k}")
    hints = field_types(cls)
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if name in raw:
            v = _convert(raw[name], hints[name], key)
            for check in f.metadata.get("checks", ()):
                check(v, key)
            values[name] = v
    obj = cls(**values)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj
