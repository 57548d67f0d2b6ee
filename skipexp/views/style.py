"""How figures look and speak: a colour-blind-safe palette with markers and line styles, words for config
values, units on axes, and saving in every format a run asks for.

Colours are Okabe & Ito's (2008), safe for the common colour-vision deficiencies; on their own eight of them
would still be too few and too close for ten lines, so every line also gets its own marker and a line style:
line i has colour i mod 8, marker i mod 10 and line style (i div 8) mod 4, so ten lines never share all three.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from skipexp.core.fmt import short_key
from skipexp.core.fmt import value as format_value
from skipexp.rundir import files
from skipexp.views.layout import DPI  # every figure's resolution (print quality starts near 150)

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")
LINESTYLES = ("-", "--", "-.", ":")


def look(i: int) -> dict[str, Any]:
    """Line i's colour, marker and line style (see the module doc)."""
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)],
            "ls": LINESTYLES[(i // len(OKABE_ITO)) % len(LINESTYLES)]}


# --- words for values ------------------------------------------------------------------------------

SKIP_WORDS = {"none": "plain (no skip)", "identity": "identity skip", "projection": "projection skip",
              "rezero": "ReZero", "gated": "gated (highway)", "shortcut-gated": "shortcut-only gating",
              "dense": "dense"}
NORM_WORDS = {"none": "no norm", "layernorm": "layer norm", "batchnorm": "batch norm"}
ORDER_WORDS = {"post": "post-activation", "pre": "pre-activation"}
INIT_WORDS = {"default": "PyTorch's default init", "critical": "critical init", "orthogonal-critical":
              "orthogonal critical init", "looks-linear": "looks-linear init"}
# axis titles with their units, by dotted key
AXES = {"model.width": "width (units)",
        "model.hidden": "hidden width (units)", "train.lr": "learning rate", "train.batch_size": "batch size",
        "train.momentum": "momentum", "train.weight_decay": "weight decay", "model.skip.scale": "shortcut scale λ",
        "model.skip.gate_bias": "gate bias", "model.skip.every": "a skip every k units",
        "model.skip.span": "blocks per unit", "train.epochs": "epochs", "train.steps": "steps"}


FIELD_WORDS = {"final_val_loss": "the final validation loss", "best_val_loss": "the best validation loss",
               "final_val_acc": "the final validation accuracy", "best_val_acc": "the best validation accuracy",
               "final_train_loss": "the final train loss", "final_train_acc": "the final train accuracy"}


def words(settings: dict[str, Any]) -> str:
    """Config settings (dotted key -> value) as a reader's words: ``{model.skip.kind: none}`` -> "plain (no
    skip)", ``{model.skip.kind: identity, model.skip.scale: 0.5}`` -> "scaled, λ = 0.5", a learned projection
    at P = I -> "projection, P = I at init"; other keys as ``name value``."""
    s = dict(settings)
    parts: list[str] = []
    bias = s.pop("model.skip.gate_bias", None)
    kind = s.pop("model.skip.kind", None)
    scale = s.pop("model.skip.scale", None)
    project = s.pop("model.skip.project", None)
    eye = s.pop("model.skip.project_init", None) == "identity"
    if kind is not None:
        if kind == "identity" and scale not in (None, 1, 1.0):
            parts.append(f"scaled, λ = {format_value(scale)}")
            scale = None
        elif kind == "projection" or (project == "always" and kind in ("rezero", "gated", "shortcut-gated")):
            base = "projection" if kind == "projection" else SKIP_WORDS[kind]
            parts.append(base + (", P = I at init" if eye else (", learned P" if kind != "projection" else "")))
        else:
            parts.append(SKIP_WORDS.get(str(kind), str(kind)))
    if scale not in (None, 1, 1.0):
        parts.append(f"{'scaled, ' if kind is None else ''}λ = {format_value(scale)}")
    if bias is not None:
        parts.append(f"gate bias {format_value(bias)}")
    for key, v in s.items():
        parts.append(word(key, v))
    return ", ".join(p for p in parts if p)


def word(key: str, v: Any) -> str:
    """One setting in words: ``model.depth=8`` -> "8 blocks", ``train.lr=0.05`` -> "lr 0.05"."""
    table = {"model.skip.kind": SKIP_WORDS, "model.norm": NORM_WORDS, "model.order": ORDER_WORDS,
             "model.init": INIT_WORDS}
    if key in table:
        return table[key].get(str(v), f"{v} init" if key == "model.init" else str(v))
    if key == "model.depth":
        return f"{format_value(v)} blocks"
    if key == "train.lr":
        return f"lr {format_value(v)}"
    if key == "seed":
        return f"seed {v}"
    return f"{short_key(key).split('.')[-1].replace('_', ' ')} {format_value(v)}"


# depth's unit by model.block; "" where a sweep's points have more than one kind of block
DEPTH_UNITS = {"mlp": "depth (blocks of 2 Linear layers)", "conv": "depth (blocks of two 3×3 convolutions)",
               "": "depth (blocks)"}


def axis_label(key: str, block: str = "mlp") -> str:
    """An axis's title for a swept key or named axis, with its unit (depth's from the nets' ``block``)."""
    if key == "model.depth":
        return DEPTH_UNITS.get(block, DEPTH_UNITS[""])
    return AXES.get(key, short_key(key).replace("_", " "))


# --- saving ----------------------------------------------------------------------------------------

PNG_OPTIONS = {"compress_level": 1}   # zlib's fastest level: ~1.4x faster than 6 for ~10 % more bytes


def formats_of(run_dir: Path | None) -> list[str]:
    """The formats a run's config asks its figures in (``log.plot_formats``; png alone where unreadable)."""
    if run_dir is None:
        return ["png"]
    try:
        got = files.read_config_dict(run_dir).get("log", {}).get("plot_formats") or ["png"]
    except Exception:   # noqa: BLE001 - a figure is still drawn as PNG from a folder without a readable config
        return ["png"]
    return [f for f in got if f in ("png", "svg", "pdf")] or ["png"]


def save(fig: Any, out: Path, formats: list[str] | tuple[str, ...] = ("png",)) -> list[Path]:
    """``fig`` to ``out`` (a .png path, written as given, perhaps a temporary name) and, for every other
    format asked for, atomically to the same name with that suffix; returns the paths written."""
    fig.savefig(out, dpi=DPI, pil_kwargs=PNG_OPTIONS)
    written = [out]
    for fmt in formats:
        if fmt == "png":
            continue
        target = out.with_suffix(f".{fmt}")
        if target.stem.startswith("."):   # a temporary .name.tmp.png: the vector file gets the real name
            target = target.with_name(target.stem.split(".")[1] + f".{fmt}")
        with files.atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=DPI, format=fmt)
        written.append(target)
    if fig.canvas.manager is not None:   # made through pyplot, which holds on to it until closed
        import matplotlib.pyplot as plt

        plt.close(fig)
    return written
