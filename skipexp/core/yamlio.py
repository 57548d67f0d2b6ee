"""Reading config text: YAML files (strict: duplicate keys and Python tags refused, syntax errors in plain
words with file, line and column) and ``key=value`` overrides, into the raw mapping that
:func:`skipexp.core.typed.build` checks.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

from skipexp.core.errors import SkipexpError


class _StrictLoader(yaml.SafeLoader):
    """safe_load, but a duplicate key is an error rather than a silent overwrite."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for k, _ in node.value:
        key = loader.construct_object(k, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", k.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# libyaml's parser where PyYAML was built with it (its wheels are): ~10x faster on a config than the Python
# one, which still reads whatever libyaml refuses, so that every error is the Python parser's, in plain words.
_FAST_SAFE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _FastStrictLoader(_FAST_SAFE):
    """_StrictLoader on libyaml's parser."""


_FastStrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse(text: str) -> Any:
    """A YAML document as ``yaml.safe_load`` reads it, on libyaml's parser where there is one."""
    return yaml.load(text, Loader=_FAST_SAFE)  # noqa: S506 - a SafeLoader


# PyYAML's problems in plain words: (words in its problem, words in its context, what we say, whether the
# context mark (where the opening quote, bracket or key is) locates it better than the problem mark).
_YAML_PROBLEMS = (
    ("expected <block end>", "", "the indentation does not match the lines above (a key is indented more or "
     "less than its siblings)", False),
    ("'\\t'", "", "a tab character; YAML indents with spaces only", False),
    ("end of stream", "quoted scalar", "a quote opened here is never closed", True),
    ("expected ',' or '}'", "", "a '{' opened here is never closed, or a ',' is missing between its items", True),
    ("expected ',' or ']'", "", "a '[' opened here is never closed, or a ',' is missing between its items", True),
    ("could not find expected ':'", "", "a key without ': ' after it (write `key: value`, a space after the ':')",
     True),
    ("mapping values are not allowed here", "", "a ':' where none can be: a key needs a space after its ':' "
     "(`key: value`), a value holding ': ' needs quotes, or this line is indented too far", False),
)


def _yaml_problem(e: yaml.YAMLError) -> tuple[str, str]:
    """(``:line:column`` or '', what is wrong in plain words) for a PyYAML error."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None) or ""
    mark = getattr(e, "problem_mark", None)
    words = f"invalid YAML: {problem}"
    for in_problem, in_context, plain, at_context in _YAML_PROBLEMS:
        if in_problem in problem and in_context in context:
            words = plain
            mark = (getattr(e, "context_mark", None) if at_context else None) or mark
            break
    return (f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""), words


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML mapping from a file, or a SkipexpError saying what is wrong with the file."""
    p = Path(path)
    if not p.exists():
        raise SkipexpError("no such file", file=str(path))
    if p.is_dir():
        raise SkipexpError("is a directory, expected a YAML file", file=str(path))
    try:
        text = p.read_text(encoding="utf-8")
    except PermissionError:
        raise SkipexpError("permission denied: cannot read the file", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SkipexpError(f"cannot read the file ({e.__class__.__name__}: {e})", file=str(path)) from None
    try:
        try:
            raw = yaml.load(text, Loader=_FastStrictLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError:
            raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - the Python parser says what is wrong
    except yaml.YAMLError as e:
        where, words = _yaml_problem(e)
        raise SkipexpError(words.replace("\n", " "), file=f"{path}{where}") from None
    if raw is None:
        raise SkipexpError("the file is empty; expected a mapping of config keys", file=str(path))
    if not isinstance(raw, dict):
        raise SkipexpError(f"expected a mapping of config keys, got {type(raw).__name__}", file=str(path))
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """``model.depth=64`` -> (["model", "depth"], 64); the value is read as a YAML scalar or list."""
    if "=" not in text:
        raise SkipexpError(f"{text!r} is not an override; expected KEY=VALUE, e.g. model.depth=64", key=text)
    key, _, value = text.partition("=")
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
        raise SkipexpError(f"{key!r} is not a dotted key like model.skip.kind", key=text)
    try:
        parsed = parse(value) if value.strip() else None
    except yaml.YAMLError:
        raise SkipexpError(f"cannot parse the value {value!r}", key=key) from None
    return key.split("."), parsed


def set_dotted(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``path`` in ``raw`` to ``value``: the one way an override (command line, sweep grid or variant,
    Python dict) enters a config. A mapping merges key by key into the section it names, as Hydra and
    OmegaConf merge one: ``model={skip: {kind: none}}`` sets ``model.skip.kind`` and keeps every other key
    of ``model``. Anything else (a number, a string, a list, null) replaces what was there."""
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SkipexpError(f"{part!r} is a value, not a section", key=".".join(path))
        node = child
    last = path[-1]
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        merge_into(node[last], value)
    else:
        node[last] = value


def merge_into(base: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge ``update`` into ``base`` key by key, recursively; a list or a value replaces."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge_into(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        set_dotted(raw, path, value)
    return raw


