"""How numbers, values and keys are written for people (tables, folder names, plots) and for CSVs.

One place, so that a table, a plot label and a sweep folder name never disagree about a value.
"""
from __future__ import annotations

import functools
import math
from typing import Any


def value(v: Any) -> str:
    """A value as a YAML scalar that reads back the same (``none``, ``0.05``, ``[64, 32]``)."""
    if isinstance(v, (str, int, float, type(None))) and v == v and not (isinstance(v, float) and v == 0.0):
        return _scalar(v)   # not nan, not -0.0 (equal to 0.0, so one cache entry); typed: True apart from 1
    return _dump(v)


def _dump(v: Any) -> str:
    import yaml

    return yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


_scalar = functools.lru_cache(maxsize=4096, typed=True)(_dump)   # a sweep formats the same few values often


def short_key(key: str) -> str:
    """A dotted key as folder names and plots show it: ``model.skip.kind`` -> ``skip.kind``."""
    return key[len("model."):] if key.startswith("model.") else key


def number(v: Any, pct: bool = False, sci: bool = False) -> str:
    """A table cell: ``-`` for nothing, 4 significant digits, or a percentage, or scientific notation."""
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        if v != v:
            return "nan"
        if pct:
            return f"{v:.1%}"
        return f"{v:.2e}" if sci else f"{v:.4g}"
    return str(v)


def csv_cell(v: Any) -> str:
    """A CSV cell that reads back exactly: floats by repr, non-finite ones as nan/inf/-inf, nothing as ''."""
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, list):
        return value(v)
    return str(v)
