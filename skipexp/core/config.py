"""Run configuration: one frozen dataclass per concern, validated where each field is defined.

YAML files and ``key=value`` overrides go through the same path (:func:`load`): the raw mapping is merged,
then :func:`skipexp.core.typed.build` converts and checks every key, naming the dotted key on error.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from skipexp.core import registry
from skipexp.core.checks import (  # noqa: F401 (the checks the fields below name)
    FIGURE_FORMATS,
    Check,
    at_least,
    between,
    choice,
    device_name,
    each_of,
    formats,
    installed,
    not_empty,
    one_of,
    opt,
    positive,
    unique,
)
from skipexp.core.errors import SkipexpError
from skipexp.core.typed import build, field_types
from skipexp.core.yamlio import apply_overrides, read_yaml

# --- the config ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataConfig:
    dataset: str = opt("synthetic", "synthetic | mnist | fashion-mnist | mnist1d | synthetic-images (the default "
                       "with model.block: conv)",
                       one_of(registry.DATASETS))
    root: str | None = opt(None, "folder with the IDX files / download cache (default ~/.cache/skipexp/<dataset>)")
    train_size: int | None = opt(None, "use only this many training examples (a seeded subset)", positive)
    test_size: int | None = opt(None, "use only this many test examples (a seeded subset)", positive)
    val_size: int | None = opt(None, "hold this many training examples out as a validation split (seeded by "
                               "data.seed, never trained on, never the test set), evaluated beside the test set",
                               positive)
    seed: int = opt(0, "seed of the synthetic task and of subsets: the same for every run seed", at_least(0))
    input_dim: int = opt(32, "synthetic only: input features", positive)
    num_classes: int = opt(10, "synthetic only: classes", at_least(2))
    n_train: int = opt(8192, "synthetic only: training examples", positive)
    n_test: int = opt(2048, "synthetic only: test examples", positive)
    image_size: int = opt(16, "synthetic-images only: height and width of its images", at_least(4))
    channels: int = opt(3, "synthetic-images only: channels of its images", positive)
    augment: list[str] = opt(None, "crop | flip: augmentations of the training images (model.block: conv), drawn "
                             "anew at every step from the run's seed", unique, each_of(registry.AUGMENTS),
                             factory=list)
    crop_padding: int = opt(4, "crop: zero pixels added on every side before the random crop", positive)

    def validate(self) -> None:
        if self.crop_padding != 4 and "crop" not in self.augment:
            raise SkipexpError(f"must be 4 without crop in data.augment, got {self.crop_padding}",
                               key="data.crop_padding")

    def image_shape(self) -> tuple[int, int, int] | None:
        """(channels, height, width) of the dataset's examples where they are images, else None."""
        if self.dataset not in registry.IMAGE_SHAPES:
            return None
        return registry.IMAGE_SHAPES[self.dataset] or (self.channels, self.image_size, self.image_size)


@dataclass(frozen=True)
class SkipConfig:
    kind: str = opt("identity", "none | identity | projection | rezero | gated | shortcut-gated | dense",
                    one_of(registry.SKIPS))
    every: int = opt(1, "a skip around every k-th unit (units 0, k, 2k, ...)", positive)
    blocks: list[int] | None = opt(None, "explicit unit indices with a skip (wins over every)", at_least(0), unique)
    span: int = opt(1, "blocks one skip bypasses (a unit is span consecutive blocks)", positive)
    gate_bias: float = opt(-2.0, "gated and shortcut-gated: initial bias of the gate T")
    project: str = opt("auto", "auto | always: the shortcut's learned Linear only where widths change, or on every "
                       "skipped unit (projection, rezero, gated, shortcut-gated)", choice("auto", "always"))
    project_init: str = opt("init", "init | identity: the shortcut's learned Linear P drawn by model.init, or P = I "
                            "at init (a rectangular identity where widths change)", choice("init", "identity"))
    scale: float = opt(1.0, "constant factor on the shortcut, out = F(x) + scale * x (identity, projection, "
                       "rezero, gated, shortcut-gated)", at_least(0.0))

    def validate(self) -> None:
        # an option the kind has no use for is an error, not ignored: the run would not be what its config says
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for option in registry.SKIPS.options:
            value, default = getattr(self, option), defaults[option]
            if value != default and not registry.SKIPS.takes(self.kind, option):
                raise SkipexpError(f"must be {default!r} with kind {self.kind}, got {value!r}; {option} applies "
                                   f"to kinds {', '.join(registry.SKIPS.options[option])}", key=f"model.skip.{option}")


@dataclass(frozen=True)
class ModelConfig:
    block: str = opt("mlp", "mlp | conv: Linear blocks on flat features, or a residual conv net on images "
                     "(He et al. 2016's basic blocks, in model.stages stages)", one_of(registry.BLOCKS))
    depth: int = opt(32, "number of stacked blocks (conv: residual blocks in all, 2 * depth + 2 layers: ResNet-20 "
                     "is depth 9)", positive)
    width: int | list[int] = opt(64, "width between blocks, or a list with one output width per block (conv: the "
                                 "first stage's channels, doubling at each stage)", positive, not_empty)
    stages: int = opt(3, "conv only: stages of depth / stages blocks; each stage after the first starts with a "
                      "stride-2 block that doubles the channels", positive)
    hidden: int | None = opt(None, "width inside a block (default: the block's output width)", positive)
    activation: str = opt("relu", "relu | tanh | gelu | sigmoid | identity", one_of(registry.ACTIVATIONS))
    norm: str = opt("none", "none | layernorm | batchnorm", one_of(registry.NORMS))
    order: str = opt("post", "post | pre: a block is Linear -> [norm] -> act -> Linear, or pre-activation "
                     "[norm] -> act -> Linear -> [norm] -> act -> Linear", one_of(registry.ORDERS))
    init: str = opt("default", "default | kaiming | xavier | orthogonal | critical | orthogonal-critical | "
                    "looks-linear", one_of(registry.INITS))
    skip: SkipConfig = opt(None, "how blocks are bypassed", factory=SkipConfig)

    def widths(self) -> list[int]:
        """Output width of every block (the input layer maps to the first)."""
        return list(self.width) if isinstance(self.width, list) else [self.width] * self.depth

    def units(self) -> list[tuple[list[int], bool]]:
        """The model's units: (block indices, has a skip), in forward order."""
        s = self.skip
        n_units = self.depth // s.span
        skipped = set(s.blocks) if s.blocks is not None else set(range(0, n_units, s.every))
        if s.kind == "none":
            skipped = set()
        return [(list(range(u * s.span, (u + 1) * s.span)), u in skipped) for u in range(n_units)]

    def _shape_changes(self, blocks: list[int]) -> bool:
        """Whether a unit's output has another shape than its input: other widths, or (conv) a stage's start."""
        if self.block == "conv":
            return blocks[0] > 0 and blocks[0] % (self.depth // self.stages) == 0
        return self._width_in(blocks) != self.widths()[blocks[-1]]

    def _width_in(self, blocks: list[int]) -> int:
        w = self.widths()
        return w[blocks[0] - 1] if blocks[0] > 0 else w[0]

    def _check_init(self) -> None:
        fits = registry.INIT_ACTIVATIONS.get(self.init)
        if fits is not None and self.activation not in fits:
            raise SkipexpError(f"{self.init} is defined for activations {', '.join(fits)}, not {self.activation}",
                               key="model.init")
        if self.init != "looks-linear":
            return
        if self.order != "post":
            raise SkipexpError("looks-linear mirrors fc1's rows and fc2's columns around the block's one ReLU; "
                               "it needs model.order: post", key="model.init")
        odd = sorted({h for h in ([self.hidden] if self.hidden else self.widths()) if h % 2})
        if odd:
            raise SkipexpError(f"looks-linear pairs every hidden unit with a mirrored one: the width inside a block "
                               f"must be even, got {odd[0]}", key="model.init")

    def _check_conv(self) -> None:
        """What a conv net needs of the model keys (skipexp.core.conv builds it)."""
        if self.block != "conv":
            if self.stages != 3:
                raise SkipexpError(f"must be 3 with model.block: mlp, got {self.stages}; stages are conv's",
                                   key="model.stages")
            return
        why = registry.CONV_REFUSES.get(self.skip.kind)
        if why:
            raise SkipexpError(f"{self.skip.kind} has no conv form: {why}", key="model.skip.kind")
        if isinstance(self.width, list):
            raise SkipexpError(f"a conv net takes one width, the first stage's channels (doubled at each stage), "
                               f"got a list {self.width}", key="model.width")
        if self.hidden is not None:
            raise SkipexpError(f"must be null with model.block: conv (a basic block's convs keep its stage's "
                               f"channels), got {self.hidden}", key="model.hidden")
        if self.depth % self.stages:
            raise SkipexpError(f"{self.depth} blocks do not split into {self.stages} equal stages; ResNet-20/32/44/"
                               f"56/110 are depth 9/15/21/27/54 with 3 stages", key="model.depth")
        if (self.depth // self.stages) % self.skip.span:
            raise SkipexpError(f"{self.skip.span} must divide the {self.depth // self.stages} blocks of a stage "
                               f"(a unit must not cross a stage)", key="model.skip.span")
        if self.init == "looks-linear":
            raise SkipexpError("looks-linear mirrors a Linear's rows; it has no conv form (use critical)",
                               key="model.init")

    def validate(self) -> None:
        s = self.skip
        s.validate()  # again here: a ModelConfig built in code skips build()
        self._check_conv()
        if isinstance(self.width, list) and len(self.width) != self.depth:
            raise SkipexpError(f"a list of widths needs one per block: got {len(self.width)} for depth {self.depth}",
                               key="model.width")
        if self.depth % s.span:
            raise SkipexpError(f"{s.span} does not divide model.depth {self.depth}; units are span consecutive "
                               f"blocks, so depth must be a multiple of span", key="model.skip.span")
        n_units = self.depth // s.span
        if s.blocks is not None and any(b >= n_units for b in s.blocks):
            bad = max(s.blocks)
            raise SkipexpError(f"unit {bad} does not exist: there are {n_units} units (0..{n_units - 1}) "
                               f"of span {s.span} in depth {self.depth}", key="model.skip.blocks")
        self._check_init()
        if s.project_init != "init" and s.project == "auto" and not any(
                has and self._shape_changes(blocks) for blocks, has in self.units()):
            raise SkipexpError("identity has no learned P to set: with project: auto every skipped unit keeps its "
                               "width, so P is x itself; set model.skip.project: always", key="model.skip.project_init")
        if s.kind == "identity":
            w = self.widths()
            for blocks, has_skip in self.units():
                w_in = w[blocks[0] - 1] if blocks[0] > 0 else w[0]
                if has_skip and w_in != w[blocks[-1]]:
                    raise SkipexpError(
                        f"identity skip around block {blocks[0]}" + (f"..{blocks[-1]}" if len(blocks) > 1 else "")
                        + f" cannot add width {w_in} to width {w[blocks[-1]]}; use kind: projection",
                        key="model.skip.kind")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = opt(10, "passes over the training split", positive)
    steps: int | None = opt(None, "stop after this many optimizer steps (wins over epochs)", positive)
    batch_size: int = opt(128, "examples per step", positive)
    optimizer: str = opt("sgd", "sgd | adam | adamw", one_of(registry.OPTIMIZERS))
    lr: float = opt(0.05, "learning rate", positive)
    momentum: float = opt(0.9, "sgd momentum (adam/adamw: beta1)", between(0.0, 0.999999))
    weight_decay: float = opt(0.0, "weight decay", at_least(0.0))
    grad_clip: float | None = opt(None, "clip the total gradient norm to this value", positive)
    schedule: str = opt("constant", "constant | cosine", one_of(registry.SCHEDULES))
    threads: int | None = opt(None, "torch intra-op threads (default: chosen from the model size)", positive)
    compile: bool = opt(False, "torch.compile the model (pays a compile of 10-70 s up front on 2 CPU cores)")
    cuda_graphs: bool = opt(True, "on CUDA, replay each step after the first as a captured CUDA graph: the "
                                  "same numbers without a kernel launch per op (ignored on the CPU and with compile)")


@dataclass(frozen=True)
class LogConfig:
    every: int = opt(10, "train metrics and gradient norms every N steps", positive)
    eval_every: int | None = opt(None, "test-set evaluation every N steps (default: end of each epoch)", positive)
    train_eval_size: int | None = opt(10000, "at every evaluation, also the loss and accuracy on this many training "
                                      "examples (a fixed sample drawn from data.seed; null: the whole training "
                                      "split; 0: none); summaries' train figures come from it", at_least(0))
    checkpoint: str = opt("last", "none | last | every_epoch", choice("none", "last", "every_epoch"))
    tensorboard: bool = opt(False, "write TensorBoard event files into the run folder while it trains",
                            installed("tensorboard", "tensorboard"))
    plots: bool = opt(True, "draw the run's plots into <run>/plots/ when it ends (false: CSVs only; "
                            "`skipexp report <run>` draws them later)")
    html: bool = opt(True, "write <run>/report.html when it ends: one page with the summary, interactive charts "
                           "and the plots, for a browser, offline (false: none; `skipexp report <run>` writes it "
                           "later); a comparison or sweep writes its own unless its configs say false")
    sharpness_every: int | None = opt(None, "top Hessian eigenvalue and trace of the training loss (first 512 "
                                            "training examples) at the first evaluation after every N steps and at "
                                            "the end, into sharpness.csv (default: never; 16-30 Hessian-vector "
                                            "products each, ~100 training steps' time)", positive)
    plot_formats: list[str] = opt(None, "png | svg | pdf: every figure in these formats, side by side (png always, "
                                  "for the reports; svg and pdf for papers)", not_empty, unique, formats,
                                  factory=lambda: ["png"])


@dataclass(frozen=True)
class RunConfig:
    name: str | None = opt(None, "run name (default: the config file's stem)")
    seed: int | list[int] = opt(0, "seed, or a list of seeds trained together (one run folder each)",
                                at_least(0), not_empty, unique)
    device: str = opt("auto", "auto | cpu | cuda | cuda:N (auto = cuda if available)", device_name)
    data: DataConfig = opt(None, "the dataset", factory=DataConfig)
    model: ModelConfig = opt(None, "the network", factory=ModelConfig)
    train: TrainConfig = opt(None, "optimisation", factory=TrainConfig)
    log: LogConfig = opt(None, "what is recorded and how often", factory=LogConfig)

    @property
    def seeds(self) -> list[int]:
        return list(self.seed) if isinstance(self.seed, list) else [self.seed]

    def validate(self) -> None:
        """What one section asks of another: a conv net reads images, and only a conv net is augmented."""
        conv = self.model.block == "conv"
        if conv and self.data.image_shape() is None:
            images = ", ".join(registry.IMAGE_SHAPES)
            raise SkipexpError(f"model.block: conv needs images, and {self.data.dataset} is not; use one of "
                               f"{images}", key="data.dataset")
        if self.data.augment and not conv:
            raise SkipexpError(f"augments images for model.block: conv, got {self.data.augment} with "
                               f"model.block: {self.model.block}", key="data.augment")
        shape = self.data.image_shape()
        if conv and shape and self.data.crop_padding >= shape[1] and "crop" in self.data.augment:
            raise SkipexpError(f"must be smaller than the image ({shape[1]}), got {self.data.crop_padding}",
                               key="data.crop_padding")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


# --- loading ------------------------------------------------------------------------------------

def _default_dataset(raw: dict[str, Any]) -> dict[str, Any]:
    """A conv net's data defaults to synthetic-images (the MLP's synthetic default is not images); the
    resolved config then names it, as it names every default."""
    model, data = raw.get("model"), raw.get("data")
    if not (isinstance(model, dict) and model.get("block") == "conv"):
        return raw
    if data is None:
        data = {}
    if not isinstance(data, dict) or "dataset" in data:
        return raw
    return {**raw, "data": {**data, "dataset": "synthetic-images"}}


def from_dict(raw: dict[str, Any], *, file: str | None = None, default_name: str = "run") -> RunConfig:
    try:
        raw = _default_dataset(raw)
        cfg = build(RunConfig, raw)
        if cfg.name is None:
            cfg = cfg.replace(name=default_name)
        if not re.fullmatch(r"[\w.=,+-]+", cfg.name):
            raise SkipexpError(f"{cfg.name!r} may hold only letters, digits and . _ - = , +", key="name")
    except SkipexpError as e:
        raise (e.with_file(file) if file else e) from None
    return cfg


def load(path: str | os.PathLike, overrides: list[str] = ()) -> RunConfig:
    """Read, override and check a config file: the one way configs enter skipexp."""
    raw = read_yaml(path)
    try:
        raw = apply_overrides(raw, list(overrides))
    except SkipexpError as e:
        raise e.with_file(str(path)) from None
    return from_dict(raw, file=str(path), default_name=Path(path).stem)


def option_overrides(*, name: str | None = None, device: str | None = None, threads: int | None = None) -> list[str]:
    """The options ``--name``, ``--device`` and ``--threads`` (``skipexp.train``'s arguments of those names) as the
    overrides they stand for; an option not given is none."""
    options = (("name", name), ("device", device), ("train.threads", threads))
    return [f"{key}={v}" for key, v in options if v is not None]


def dump(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as dotted key -> value."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def describe(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, doc) for every key: the source of the docs' config reference."""
    rows = []
    for f in dataclasses.fields(cls):
        tp = field_types(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, prefix + f.name + ".")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((prefix + f.name, default, f.metadata.get("doc", "")))
    return rows
