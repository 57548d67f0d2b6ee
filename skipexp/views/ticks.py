"""Tick values, tick labels and the order of layers: what every figure needs, matplotlib's or the report's SVG,
without importing matplotlib (the HTML report draws its charts without it)."""
from __future__ import annotations

import math
import re
from typing import Any


def log_ticks(lo: float, hi: float, most: int = 8) -> list[float]:
    """Tick values for a log axis over [lo, hi]: at least two, at most ``most``, from 1-2-5 steps
    (0.13-2.3 gets 0.2, 0.5, 1, 2), whole decades over a wide range, two rounded ends over a narrow one."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi <= lo:
        return []
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 5), (1,), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0 ** d for d in decades for m in mantissas if lo <= m * 10.0 ** d <= hi * (1 + 1e-9)]
        if mantissas == (1,) and len(ticks) > most:
            every = math.ceil(len(ticks) / most)
            # decades on multiples of the step (1e-12, 1e-10, ... 0.01, 1): 1 is a tick wherever it is in range
            ticks = [t for t in ticks if round(math.log10(t)) % every == 0]
        if 2 <= len(ticks) <= most:
            return ticks
    return [float(f"{lo:.2g}"), float(f"{hi:.2g}")] if f"{lo:.2g}" != f"{hi:.2g}" else [float(f"{lo:.3g}")]


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def log_label(v: float, _: Any = None) -> str:
    """A log axis's tick label as text: 0.2, 1, 50, and 10⁻⁸ for a decade far from 1. Plain text, not
    mathtext: matplotlib's own log labels are mathtext, whose parser costs more to set up than a figure."""
    e = round(math.log10(v)) if v > 0 else 0
    return "10" + str(e).translate(SUPERSCRIPT) if abs(e) >= 4 and math.isclose(v, 10.0 ** e) else f"{v:g}"


_BLOCK_PART = {"fc1": 0, "norm": 1, "fc2": 2}


def layer_keys(cols: list[str]) -> list[tuple]:
    """A sort key per gradient column, by what the layer is: ``input``, then block by block (fc1, norm, fc2,
    then the skip that closes a unit after its last block), then ``head``; boundaries ``h<i>`` by i.
    Runs with different layers (a plain net has no skips.*) line up by these keys, not by column index."""
    keys, block = [], -1
    for c in cols:
        parts = c.split(".")
        if c == "input":
            keys.append((0, -1, 0, 0, c))
        elif c == "head":
            keys.append((2, 0, 0, 0, c))
        elif (h := re.fullmatch(r"h(\d+)", c)) is not None:
            keys.append((1, int(h[1]), 0, 0, c))
        elif parts[0] == "blocks" and len(parts) > 2 and parts[1].isdigit():
            block = int(parts[1])
            keys.append((1, block, 0, _BLOCK_PART.get(parts[2], len(_BLOCK_PART)), c))
        else:  # a skip (skips.3, skips.3.gate, ...) or anything else: after the block it follows
            keys.append((1, block, 1, 0, c))
    return keys
