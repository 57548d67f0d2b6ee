"""Registries of named kinds: skip kinds, activations, norms, inits, optimizers, schedules, datasets.

The names and one-line descriptions live here, free of torch, so that config validation,
``skipexp list`` and the CLI help read the same dicts without importing heavy libraries.
The implementations register themselves where they are defined (``@ACTIVATIONS.implements("relu")``).
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from skipexp.core.errors import SkipexpError


class Registry:
    def __init__(self, what: str, kinds: dict[str, str], options: dict[str, tuple[str, ...]] | None = None):
        self.what = what
        self.docs = dict(kinds)
        # per-kind config options: option name -> the kinds it means something for
        self.options = {name: tuple(takers) for name, takers in (options or {}).items()}
        for name, takers in self.options.items():
            unknown = set(takers) - set(self.docs)
            if unknown:
                raise KeyError(f"{what} option {name!r} names undeclared kinds {sorted(unknown)}")
        self._impl: dict[str, Any] = {}

    @property
    def names(self) -> list[str]:
        return list(self.docs)

    def implements(self, name: str) -> Callable[[Any], Any]:
        if name not in self.docs:
            raise KeyError(f"{self.what} {name!r} is not declared in skipexp.core.registry")

        def deco(obj: Any) -> Any:
            self._impl[name] = obj
            return obj

        return deco

    def check(self, name: Any, key: str | None = None) -> str:
        """The name itself if it is registered, else a SkipexpError listing the valid names."""
        if name in self.docs:
            return name
        hint = difflib.get_close_matches(str(name), self.names, n=1)
        did = f' (did you mean "{hint[0]}"?)' if hint else ""
        raise SkipexpError(f"unknown {self.what} {name!r}{did}; choose from {', '.join(self.names)}", key=key)

    def get(self, name: str, key: str | None = None) -> Any:
        self.check(name, key)
        return self._impl[name]

    def takes(self, name: str, option: str) -> bool:
        """Whether kind ``name`` has a use for ``option`` (one of ``self.options``)."""
        return name in self.options[option]

    def __contains__(self, name: object) -> bool:
        return name in self.docs


# s(x) = scale * P(x) is a unit's shortcut: P is x itself, or a learned Linear (no bias) where widths change,
# and on every skipped unit with project: always (the 1x1-convolution shortcut of He et al. 2016, Fig. 2e).
SKIPS = Registry("skip kind", {
    "none": "no skip: the unit's output is F(x), as in the tutorial's SimpleBlock",
    "identity": "out = F(x) + scale * x (ResNet), scale = model.skip.scale (default 1); needs equal widths",
    "projection": "out = F(x) + scale * P(x), P a learned Linear where widths change (on every unit with "
                  "model.skip.project: always), else x",
    "rezero": "out = scale * P(x) + alpha * F(x), alpha a learned scalar starting at 0, P as in projection "
              "(Bachlechner et al. 2020)",
    "gated": "highway gate: out = T(x) * F(x) + (1 - T(x)) * scale * P(x), P as in projection "
             "(Srivastava et al. 2015; exclusive gating in He et al. 2016b)",
    "shortcut-gated": "out = F(x) + (1 - T(x)) * scale * P(x): only the shortcut gated (shortcut-only gating, "
                      "He et al. 2016b), T as in gated",
    "dense": "each block sees the concatenation of all earlier outputs in its run of units (DenseNet)",
}, options={
    # none and dense have no shortcut to scale; identity's shortcut is x by definition (its projected
    # form is projection with project: always)
    "project": ("projection", "rezero", "gated", "shortcut-gated"),
    "project_init": ("projection", "rezero", "gated", "shortcut-gated"),
    "scale": ("identity", "projection", "rezero", "gated", "shortcut-gated"),
})

ACTIVATIONS = Registry("activation", {
    "relu": "max(0, z)",
    "tanh": "hyperbolic tangent",
    "gelu": "Gaussian error linear unit",
    "sigmoid": "logistic sigmoid",
    "identity": "no non-linearity (a deep linear network)",
})

NORMS = Registry("norm", {
    "none": "no normalisation",
    "layernorm": "LayerNorm after the first Linear of each block",
    "batchnorm": "BatchNorm1d after the first Linear of each block",
})

INITS = Registry("init", {
    "default": "PyTorch's nn.Linear default (kaiming-uniform, a=sqrt(5))",
    "kaiming": "normal, std = gain / sqrt(fan_in), gain of the activation; zero biases",
    "xavier": "normal, std = sqrt(2 / (fan_in + fan_out)); zero biases",
    "orthogonal": "orthogonal with the activation's gain; zero biases",
    "critical": "normal, std = g / sqrt(fan_in), g the critical gain of what the Linear feeds (ReLU: sqrt 2 before "
                "it, 1 after): chi = 1 per plain block; zero biases",
    "orthogonal-critical": "orthogonal with the critical gain of what the Linear feeds (dynamical isometry, "
                           "Pennington et al. 2017, for tanh); zero biases",
    "looks-linear": "ReLU only: mirrored orthogonal pairs, fc1 = [W; -W], fc2 = [V, -V], so every block is the "
                    "linear map V W at init (Balduzzi et al. 2017); zero biases",
})

# Inits that mean something only for some activations (and why), checked with the config.
INIT_ACTIVATIONS = {
    "critical": ("relu", "gelu", "tanh", "identity"),
    "orthogonal-critical": ("relu", "gelu", "tanh", "identity"),
    "looks-linear": ("relu",),
}

ORDERS = Registry("order", {
    "post": "Linear -> (norm) -> act -> Linear (the tutorial's SimpleBlock); conv: conv -> (norm) -> act -> conv "
            "-> (norm), the skip, then act (He et al. 2016)",
    "pre": "(norm) -> act -> Linear -> (norm) -> act -> Linear (pre-activation, He et al. 2016b); conv: the same "
           "with 3x3 convs, nothing after the skip",
})

BLOCKS = Registry("block", {
    "mlp": "input Linear, blocks of Linear layers on flat features, a Linear head (the tutorial's net)",
    "conv": "a residual conv net on images (He et al. 2016): stem 3x3 conv, basic blocks of two 3x3 convs in "
            "model.stages stages, channels doubling and resolution halving at each stage's first block, "
            "global average pool, Linear head",
})

# Skip kinds with no conv form, and why (skipexp.core.conv builds the others).
CONV_REFUSES = {
    "dense": "dense concatenates every earlier block output along the features, but a conv net's stages change "
             "the resolution and channels between blocks (DenseNet needs transition layers skipexp does not "
             "build); use none, identity, projection, rezero, gated or shortcut-gated",
}

AUGMENTS = Registry("augmentation", {
    "crop": "random crop with zero padding: pad every side by data.crop_padding, cut the image's size at a random "
            "offset (He et al. 2016: 4 pixels on 32x32)",
    "flip": "random horizontal flip, each training image with probability 1/2",
})

OPTIMIZERS = Registry("optimizer", {
    "sgd": "SGD with momentum and weight decay",
    "adam": "Adam (weight decay as L2 in the gradient)",
    "adamw": "AdamW (decoupled weight decay)",
})

SCHEDULES = Registry("schedule", {
    "constant": "the same learning rate throughout",
    "cosine": "cosine decay from lr to 0 over the run's steps",
})

DATASETS = Registry("dataset", {
    "synthetic": "Gaussian clusters, four per class, in a subspace; made from data.seed, no files",
    "mnist": "handwritten digits, 60k/10k 28x28 (IDX files, downloaded if absent)",
    "fashion-mnist": "Zalando clothing images, 60k/10k 28x28 (IDX files; Debian's dataset-fashion-mnist)",
    "mnist1d": "MNIST-1D (Greydanus 2020), 4000/1000 sequences of 40, made locally by the mnist1d package",
    "synthetic-images": "small images, data.channels x data.image_size^2, each class a few random smooth "
                        "patterns at random shifts plus noise; made from data.seed, no files (conv's default)",
})

# Datasets that are images, with their (channels, height, width); synthetic-images reads its config.
IMAGE_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "synthetic-images": None}

ALL = (SKIPS, ACTIVATIONS, NORMS, ORDERS, BLOCKS, INITS, OPTIMIZERS, SCHEDULES, DATASETS, AUGMENTS)
