"""Config: every key's validation names the dotted key; overrides go through the same path; defaults round-trip."""
from __future__ import annotations

import dataclasses
import re

import pytest
import yaml
from conftest import cli

from skipexp.core import config, registry, typed
from skipexp.core.errors import SkipexpError


def load_raw(tmp_path, raw: dict, overrides: list[str] = ()) -> config.RunConfig:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return config.load(path, list(overrides))


def error_of(tmp_path, raw: dict, overrides: list[str] = ()) -> SkipexpError:
    with pytest.raises(SkipexpError) as info:
        load_raw(tmp_path, raw, overrides)
    return info.value


# (raw config, dotted key the error must name, words the message must contain)
BAD = [
    # wrong types
    ({"seed": "zero"}, "seed", ["integer"]),
    ({"seed": 1.5}, "seed", ["integer"]),
    ({"device": 3}, "device", ["string"]),
    ({"name": 5}, "name", ["string"]),
    ({"data": 3}, "data", ["mapping"]),
    ({"data": {"root": 7}}, "data.root", ["string"]),
    ({"data": {"train_size": "all"}}, "data.train_size", ["integer"]),
    ({"data": {"input_dim": 2.5}}, "data.input_dim", ["integer"]),
    ({"model": {"depth": True}}, "model.depth", ["integer"]),
    ({"model": {"depth": 2.5}}, "model.depth", ["integer"]),
    ({"model": {"width": "wide"}}, "model.width", ["integer", "list"]),
    ({"model": {"width": [8, "a"], "depth": 2}}, "model.width", ["list of integers"]),
    ({"model": {"hidden": [8]}}, "model.hidden", ["integer"]),
    ({"model": {"skip": "identity"}}, "model.skip", ["mapping"]),
    ({"model": {"skip": {"blocks": 3}}}, "model.skip.blocks", ["list of integers"]),
    ({"model": {"skip": {"gate_bias": "x"}}}, "model.skip.gate_bias", ["number"]),
    ({"train": {"lr": "fast"}}, "train.lr", ["number"]),
    ({"train": {"lr": float("nan")}}, "train.lr", ["finite"]),
    ({"train": {"lr": float("inf")}}, "train.lr", ["finite"]),
    ({"train": {"compile": "yes"}}, "train.compile", ["true or false"]),
    ({"train": {"cuda_graphs": 1}}, "train.cuda_graphs", ["true or false"]),
    ({"train": {"epochs": None}}, "train.epochs", ["integer"]),
    ({"log": {"every": "often"}}, "log.every", ["integer"]),
    ({"log": {"tensorboard": "yes"}}, "log.tensorboard", ["true or false"]),
    ({"log": {"plots": "no"}}, "log.plots", ["true or false"]),
    ({"log": {"html": "no"}}, "log.html", ["true or false"]),
    ({"log": {"plot_formats": ["png", "eps"]}}, "log.plot_formats", ["svg", "pdf", "eps"]),
    ({"log": {"plot_formats": ["svg"]}}, "log.plot_formats", ["must include png"]),
    ({"model": {"skip": {"project": "sometimes"}}}, "model.skip.project", ["auto", "always", "sometimes"]),
    ({"model": {"skip": {"scale": -0.5}}}, "model.skip.scale", [">= 0", "-0.5"]),
    ({"model": {"skip": {"kind": "none", "scale": 0.5}}}, "model.skip.scale", ["1.0", "none", "identity"]),
    ({"model": {"skip": {"kind": "projection", "project_init": "eye"}}}, "model.skip.project_init",
     ["init", "identity", "eye"]),
    ({"model": {"skip": {"kind": "identity", "project_init": "identity"}}}, "model.skip.project_init",
     ["init", "identity", "projection"]),
    ({"model": {"skip": {"kind": "projection", "project_init": "identity"}}}, "model.skip.project_init",
     ["project: always"]),
    ({"model": {"activation": "sigmoid", "init": "critical"}}, "model.init", ["relu", "sigmoid"]),
    ({"model": {"activation": "tanh", "init": "looks-linear"}}, "model.init", ["relu", "tanh"]),
    ({"model": {"init": "looks-linear", "order": "pre"}}, "model.init", ["post"]),
    ({"model": {"init": "looks-linear", "width": 7}}, "model.init", ["even", "7"]),
    # out of range
    ({"seed": -1}, "seed", [">= 0", "-1"]),
    ({"seed": []}, "seed", ["empty"]),
    ({"seed": [0, 0]}, "seed", ["repeat"]),
    ({"device": "gpu"}, "device", ["auto", "cuda:N", "gpu"]),
    ({"device": "cuda:x"}, "device", ["cuda:N"]),
    ({"name": "a b"}, "name", ["letters"]),
    ({"data": {"train_size": 0}}, "data.train_size", ["> 0"]),
    ({"data": {"test_size": -5}}, "data.test_size", ["> 0"]),
    ({"data": {"val_size": 0}}, "data.val_size", ["> 0"]),
    ({"data": {"seed": -1}}, "data.seed", [">= 0"]),
    ({"data": {"input_dim": 0}}, "data.input_dim", ["> 0"]),
    ({"data": {"num_classes": 1}}, "data.num_classes", [">= 2"]),
    ({"data": {"n_train": 0}}, "data.n_train", ["> 0"]),
    ({"data": {"n_test": 0}}, "data.n_test", ["> 0"]),
    ({"model": {"depth": 0}}, "model.depth", ["> 0"]),
    ({"model": {"width": 0}}, "model.width", ["> 0"]),
    ({"model": {"width": [8, -1], "depth": 2}}, "model.width", ["> 0", "-1"]),
    ({"model": {"width": []}}, "model.width", ["empty"]),
    ({"model": {"width": [8, 8], "depth": 3}}, "model.width", ["one per block", "2", "3"]),
    ({"model": {"hidden": 0}}, "model.hidden", ["> 0"]),
    ({"model": {"skip": {"every": 0}}}, "model.skip.every", ["> 0"]),
    ({"model": {"skip": {"span": 0}}}, "model.skip.span", ["> 0"]),
    ({"model": {"skip": {"blocks": [-1]}}}, "model.skip.blocks", [">= 0"]),
    ({"model": {"skip": {"blocks": [1, 1]}}}, "model.skip.blocks", ["repeat"]),
    ({"train": {"epochs": 0}}, "train.epochs", ["> 0"]),
    ({"train": {"steps": 0}}, "train.steps", ["> 0"]),
    ({"train": {"batch_size": 0}}, "train.batch_size", ["> 0"]),
    ({"train": {"lr": 0}}, "train.lr", ["> 0"]),
    ({"train": {"lr": -0.1}}, "train.lr", ["> 0"]),
    ({"train": {"momentum": 1.5}}, "train.momentum", ["between"]),
    ({"train": {"momentum": -0.1}}, "train.momentum", ["between"]),
    ({"train": {"weight_decay": -1}}, "train.weight_decay", [">= 0"]),
    ({"train": {"grad_clip": 0}}, "train.grad_clip", ["> 0"]),
    ({"train": {"threads": 0}}, "train.threads", ["> 0"]),
    ({"log": {"every": 0}}, "log.every", ["> 0"]),
    ({"log": {"eval_every": 0}}, "log.eval_every", ["> 0"]),
    ({"log": {"sharpness_every": 0}}, "log.sharpness_every", ["> 0"]),
    ({"log": {"train_eval_size": -1}}, "log.train_eval_size", [">= 0"]),
    ({"log": {"checkpoint": "al"}}, "log.checkpoint", ["none", "last", "every_epoch"]),
    ({"data": {"image_size": 3}}, "data.image_size", [">= 4"]),
    ({"data": {"channels": 0}}, "data.channels", ["> 0"]),
    ({"data": {"augment": ["crop", "crop"]}}, "data.augment", ["repeat"]),
    ({"data": {"augment": ["flop"]}}, "data.augment", ["flip", "crop"]),
    ({"data": {"crop_padding": 0}}, "data.crop_padding", ["> 0"]),
    ({"model": {"block": "cnn"}}, "model.block", ["mlp", "conv"]),
    ({"model": {"stages": 0}}, "model.stages", ["> 0"]),
    # structure across keys
    ({"data": {"crop_padding": 2}}, "data.crop_padding", ["crop"]),
    ({"model": {"block": "conv", "depth": 9}, "data": {"augment": ["crop"], "crop_padding": 16}},
     "data.crop_padding", ["smaller", "16"]),
    ({"model": {"stages": 2}}, "model.stages", ["mlp"]),
    ({"model": {"block": "conv", "depth": 8}}, "model.depth", ["3 equal stages", "depth 9"]),
    ({"model": {"block": "conv", "depth": 12, "skip": {"span": 3}}}, "model.skip.span", ["stage"]),
    ({"model": {"block": "conv", "depth": 3, "hidden": 4}}, "model.hidden", ["conv"]),
    ({"model": {"block": "conv", "depth": 3, "skip": {"kind": "dense"}}}, "model.skip.kind", ["conv form"]),
    ({"model": {"block": "conv", "depth": 3}, "data": {"dataset": "mnist1d"}}, "data.dataset", ["images"]),
    ({"data": {"augment": ["flip"]}}, "data.augment", ["conv"]),
    ({"model": {"depth": 6, "skip": {"span": 4}}}, "model.skip.span", ["divide", "6"]),
    ({"model": {"depth": 4, "skip": {"blocks": [4]}}}, "model.skip.blocks", ["unit 4", "0..3"]),
    ({"model": {"depth": 4, "skip": {"span": 2, "blocks": [2]}}}, "model.skip.blocks", ["unit 2", "0..1"]),
    ({"model": {"depth": 3, "width": [8, 16, 16], "skip": {"kind": "identity"}}},
     "model.skip.kind", ["block 1", "8", "16", "projection"]),
    ({"model": {"depth": 4, "width": [8, 8, 16, 16], "skip": {"kind": "identity", "span": 2}}},
     "model.skip.kind", ["block 2..3", "projection"]),
]


@pytest.mark.parametrize("raw,key,words", BAD, ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(BAD)])
def test_bad_value_names_key_and_problem(tmp_path, raw, key, words):
    e = error_of(tmp_path, raw)
    assert e.key == key, str(e)
    assert e.file == str(tmp_path / "c.yaml")
    for w in words:
        assert w in e.message, (w, e.message)
    assert "\n" not in str(e)


def all_dotted_keys(cls=config.RunConfig, prefix=""):
    for f in dataclasses.fields(cls):
        tp = typed.field_types(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            yield from all_dotted_keys(tp, prefix + f.name + ".")
        else:
            yield prefix + f.name


def test_bad_table_covers_every_key():
    """Every leaf key has at least one bad value above (a key added without a check shows up here)."""
    untested = set(all_dotted_keys()) - {key for _, key, _ in BAD}
    # keys whose every value of the right type is valid: any string name is checked via `name`, free text
    assert untested <= {"data.dataset", "model.activation", "model.norm", "model.order", "model.init",
                        "model.skip.kind", "train.optimizer", "train.schedule"}, untested


KIND_KEYS = [("data.dataset", registry.DATASETS), ("model.activation", registry.ACTIVATIONS),
             ("model.block", registry.BLOCKS),
             ("model.norm", registry.NORMS), ("model.order", registry.ORDERS), ("model.init", registry.INITS),
             ("model.skip.kind", registry.SKIPS),
             ("train.optimizer", registry.OPTIMIZERS), ("train.schedule", registry.SCHEDULES)]


@pytest.mark.parametrize("key,reg", KIND_KEYS, ids=[k for k, _ in KIND_KEYS])
def test_unknown_kind_lists_valid_names(tmp_path, key, reg):
    e = error_of(tmp_path, {}, [f"{key}=bogus-kind"])
    assert e.key == key
    assert "bogus-kind" in e.message
    for name in reg.names:
        assert name in e.message
    # and each registered name is accepted
    for name in reg.names:
        raw = {"model": {"depth": 3, "width": 8}}   # depth 3: also three conv stages of one block
        cfg = load_raw(tmp_path, raw, [f"{key}={name}"])
        section, *rest = key.split(".")
        node = getattr(cfg, section)
        for part in rest:
            node = getattr(node, part)
        assert node == name


@pytest.mark.parametrize("typo,dotted", [
    ({"model": {"depht": 3}}, "model.depth"),
    ({"model": {"skip": {"kidn": "none"}}}, "model.skip.kind"),
    ({"train": {"optimiser": "adam"}}, "train.optimizer"),
    ({"data": {"datset": "mnist"}}, "data.dataset"),
    ({"log": {"evry": 3}}, "log.every"),
    ({"sed": 1}, "seed"),
])
def test_unknown_key_did_you_mean_names_dotted_key(tmp_path, typo, dotted):
    e = error_of(tmp_path, typo)
    assert f'did you mean "{dotted}"' in e.message
    assert e.key.rpartition(".")[0] == dotted.rpartition(".")[0]  # the typo is located where it was made


def test_unknown_kind_did_you_mean(tmp_path):
    e = error_of(tmp_path, {"model": {"skip": {"kind": "identty"}}})
    assert 'did you mean "identity"' in e.message


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path):
    e = error_of(tmp_path, {"frobnicate": 1})
    assert e.key == "frobnicate" and "did you mean" not in e.message
    assert "model" in e.message and "train" in e.message


# --- overrides ------------------------------------------------------------------------------------

def test_overrides_apply_and_are_checked(tmp_path):
    base = {"model": {"depth": 4, "width": 8}}
    cfg = load_raw(tmp_path, base, ["model.depth=64", "train.lr=0.1", "model.skip.kind=none", "seed=[0, 1]"])
    assert cfg.model.depth == 64 and cfg.train.lr == 0.1 and cfg.model.skip.kind == "none"
    assert cfg.seeds == [0, 1]
    cfg = load_raw(tmp_path, base, ["model.width=[8, 16, 16, 4]", "model.skip.kind=projection"])
    assert cfg.model.width == [8, 16, 16, 4]
    assert error_of(tmp_path, base, ["model.depth=-3"]).key == "model.depth"
    # the later override wins
    assert load_raw(tmp_path, base, ["model.depth=3", "model.depth=5"]).model.depth == 5


def test_override_creates_missing_nested_sections(tmp_path):
    cfg = load_raw(tmp_path, {"name": "x"}, ["model.skip.blocks=[0, 2]", "log.eval_every=7"])
    assert cfg.model.skip.blocks == [0, 2] and cfg.log.eval_every == 7
    cfg = load_raw(tmp_path, {"train": None}, ["train.steps=3"])
    assert cfg.train.steps == 3


def test_a_mapping_override_merges_key_by_key_into_the_section(tmp_path):
    """``model={skip: {kind: none}}`` sets model.skip.kind and keeps every other key of the file's model."""
    base = {"model": {"depth": 20, "width": 16, "activation": "tanh", "skip": {"kind": "identity", "span": 2}},
            "train": {"lr": 0.07}}
    cfg = load_raw(tmp_path, base, ["model={skip: {kind: none}}"])
    assert cfg.model.skip.kind == "none" and cfg.model.skip.span == 2
    assert (cfg.model.depth, cfg.model.width, cfg.model.activation) == (20, 16, "tanh") and cfg.train.lr == 0.07
    # two levels deep at once, beside a list-valued key, which replaces (lists are values, as in OmegaConf)
    cfg = load_raw(tmp_path, base, ["model={depth: 4, width: [8, 8, 8, 8], skip: {blocks: [0]}}",
                                    "train={momentum: 0.5}"])
    assert (cfg.model.depth, cfg.model.width, cfg.model.skip.blocks) == (4, [8, 8, 8, 8], [0])
    assert (cfg.model.skip.kind, cfg.model.skip.span, cfg.model.activation) == ("identity", 2, "tanh")
    assert cfg.train.momentum == 0.5 and cfg.train.lr == 0.07
    cfg = load_raw(tmp_path, {**base, "seed": [0, 1, 2]}, ["model.skip={every: 1}", "seed=[3]"])
    assert cfg.model.skip.span == 2 and cfg.seeds == [3]
    # a key of the mapping is checked as any other, with its dotted name
    assert error_of(tmp_path, base, ["model={skip: {knd: none}}"]).key == "model.skip.knd"


def test_a_mapping_override_on_the_command_line_keeps_the_files_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"depth": 20, "width": 16, "skip": {"kind": "identity"}}}))
    p = cli("validate", path, "model={skip: {kind: none}}", check=0)
    assert re.search(r"^  depth: 20$", p.stdout, re.M) and re.search(r"^  width: 16$", p.stdout, re.M), p.stdout
    assert re.search(r"^    kind: none$", p.stdout, re.M), p.stdout


@pytest.mark.parametrize("text,key", [
    ("model.depth", "model.depth"),            # no '='
    ("model..depth=3", "model..depth=3"),      # empty part
    ("=3", "=3"),
    ("model.depth=[1,", "model.depth"),        # unparsable value
    ("model.depth.x=3", "model.depth.x"),      # a value used as a section
    ("model.dpth=3", "model.dpth"),            # unknown key via override: the same did-you-mean
    ("model=3", "model"),
])
def test_bad_override(tmp_path, text, key):
    e = error_of(tmp_path, {"model": {"depth": 4}}, [text])
    assert e.key == key, str(e)
    assert "\n" not in str(e)


# --- defaults and round-trip ---------------------------------------------------------------------

def test_defaults_match_documentation():
    cfg = config.from_dict({})
    assert cfg.seed == 0 and cfg.device == "auto" and cfg.data.dataset == "synthetic"
    assert (cfg.model.depth, cfg.model.width, cfg.model.skip.kind) == (32, 64, "identity")
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.batch_size) == ("sgd", 0.05, 128)
    assert cfg.log.every == 10 and cfg.log.checkpoint == "last" and cfg.log.plots is True
    assert cfg.name == "run"


@pytest.mark.parametrize("overrides", [
    [],
    ["model.width=[8, 16, 16, 4]", "model.depth=4", "model.skip.kind=projection", "model.skip.blocks=[0, 3]"],
    ["seed=[1, 2]", "train.steps=5", "train.grad_clip=1.5", "data.root=/tmp/x", "model.hidden=7"],
])
def test_round_trip_through_config_yaml(tmp_path, overrides):
    cfg = load_raw(tmp_path, {}, overrides)
    dumped = tmp_path / "config.yaml"
    dumped.write_text(config.dump(cfg))
    again = config.load(dumped)
    assert again == cfg
    assert config.dump(again) == config.dump(cfg)


def test_name_defaults_to_file_stem(tmp_path):
    p = tmp_path / "my-exp.yaml"
    p.write_text("seed: 1\n")
    assert config.load(p).name == "my-exp"


def test_config_is_frozen():
    cfg = config.from_dict({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.depth = 3  # type: ignore[misc]


# --- the file itself -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,words", [
    ("", ["empty"]),
    ("- 1\n- 2\n", ["mapping"]),
    ("model: {depth: 3\n", ["never closed"]),
    ("seed: 1\nseed: 2\n", ["duplicate key"]),
])
def test_bad_file(tmp_path, text, words):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(SkipexpError) as info:
        config.load(p)
    # a syntax error also says where: file:line:column
    assert info.value.file == str(p) or info.value.file.startswith(f"{p}:")
    for w in words:
        assert w in info.value.message
    assert "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SkipexpError, match="no such file"):
        config.load(tmp_path / "nope.yaml")
    with pytest.raises(SkipexpError, match="directory"):
        config.load(tmp_path)


def test_describe_documents_every_key():
    rows = config.describe()
    assert {k for k, _, _ in rows} == set(all_dotted_keys())
    assert all(doc for _, _, doc in rows)


@pytest.mark.parametrize("text,value", [("1e-3", 0.001), ("5E-2", 0.05), ("+2.5e1", 25.0), (".5e-1", 0.05)])
def test_scientific_notation_is_a_number(tmp_path, text, value):
    """PyYAML reads `lr: 1e-3` as a string; a user means the number."""
    p = tmp_path / "c.yaml"
    p.write_text(f"train:\n  lr: {text}\n  grad_clip: {text}\n")
    cfg = config.load(p, [f"train.weight_decay={text}"])
    assert cfg.train.lr == cfg.train.grad_clip == cfg.train.weight_decay == pytest.approx(value)
    assert isinstance(cfg.train.lr, float)
    assert error_of(tmp_path, {"model": {"depth": text}}).key == "model.depth"  # integers stay strict
    assert error_of(tmp_path, {"train": {"lr": "1e-3x"}}).key == "train.lr"
