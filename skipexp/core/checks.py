"""The checks a config field's value must pass (:func:`opt` declares a field with its checks): each raises
:class:`~skipexp.core.errors.SkipexpError` naming the dotted key."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import field
from typing import Any

from skipexp.core import registry
from skipexp.core.errors import SkipexpError

Check = Callable[[Any, str], None]


def opt(default: Any, doc: str, *checks: Check, factory: Callable[[], Any] | None = None) -> Any:
    """A config field: its default, a one-line doc, and the checks its value must pass."""
    meta = {"doc": doc, "checks": checks}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# --- checks: each raises SkipexpError naming the key, the value and what is allowed --------------

def at_least(lo: float) -> Check:
    def check(v: Any, key: str) -> None:
        for x in v if isinstance(v, list) else [v]:
            if x is not None and x < lo:
                raise SkipexpError(f"must be >= {lo}, got {x}", key=key)
    return check


def between(lo: float, hi: float) -> Check:
    def check(v: Any, key: str) -> None:
        if v is not None and not lo <= v <= hi:
            raise SkipexpError(f"must be between {lo} and {hi}, got {v}", key=key)
    return check


def positive(v: Any, key: str) -> None:
    for x in v if isinstance(v, list) else [v]:
        if x is not None and x <= 0:
            raise SkipexpError(f"must be > 0, got {x}", key=key)


def one_of(reg: registry.Registry) -> Check:
    def check(v: Any, key: str) -> None:
        reg.check(v, key)
    return check


def each_of(reg: registry.Registry) -> Check:
    def check(v: Any, key: str) -> None:
        for x in v:
            reg.check(x, key)
    return check


def choice(*allowed: str) -> Check:
    def check(v: Any, key: str) -> None:
        if v not in allowed:
            raise SkipexpError(f"must be one of {', '.join(allowed)}, got {v!r}", key=key)
    return check


def device_name(v: Any, key: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
        raise SkipexpError(f"must be auto, cpu, cuda or cuda:N, got {v!r}", key=key)


def installed(module: str, extra: str) -> Check:
    """A true value needs an optional package: say so when the config is read, not after training."""
    def check(v: Any, key: str) -> None:
        import importlib.util

        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module blocked in sys.modules
            found = False
        if v and not found:
            raise SkipexpError(f"needs the {module} package, which is not installed; "
                               f"pip install 'skipexp[{extra}]'", key=key)
    return check


FIGURE_FORMATS = ("png", "svg", "pdf")


def formats(v: Any, key: str) -> None:
    for x in v:
        if x not in FIGURE_FORMATS:
            raise SkipexpError(f"must be a list of {', '.join(FIGURE_FORMATS)}, got {x!r}", key=key)
    if "png" not in v:
        raise SkipexpError(f"must include png (reports and the console show it; add svg or pdf beside it), "
                           f"got {v}", key=key)


def not_empty(v: Any, key: str) -> None:
    if isinstance(v, list) and not v:
        raise SkipexpError("must not be an empty list", key=key)


def unique(v: Any, key: str) -> None:
    if isinstance(v, list) and len(set(v)) != len(v):
        raise SkipexpError(f"must not repeat a value, got {v}", key=key)
