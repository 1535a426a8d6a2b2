"""Reading config values strictly: types, ranges, nearest-key errors, overrides.

:func:`from_dict` builds any settings dataclass from a mapping: an unknown key is an
error naming the nearest valid key, a value of the wrong type names the key and the
expected type, and a value out of range (see :mod:`lightly_simmim.settings`) names
the key and the allowed range. Every message is one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar, Union

import yaml

from lightly_simmim.settings import SettingError


class ConfigError(ValueError):
    """A config that cannot be used, with a message saying what to change."""


T = TypeVar("T")
_Values = TypeVar("_Values", bound=dict[str, object])


def _nearest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"{hint} Valid keys: {', '.join(sorted(valid))}."


def _type_name(tp: object) -> str:
    """``int``, ``float or null``, ``one of 'l1', 'l2'``, ... for messages."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if tp is type(None):
        return "null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: object, tp: object, where: str) -> object:
    """Checks ``value`` against the annotation ``tp``; converts int -> float."""
    origin = typing.get_origin(tp)
    if tp is typing.Any:  # a plugin's untyped setting: taken as written
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"'{where}' = {value!r} must be {_type_name(tp)}.")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"'{where}' must be null.")
    if origin is Literal:
        choices = typing.get_args(tp)
        # `True in (1, 3)` holds in Python; a YAML boolean is never a number choice.
        if value in choices and (
            not isinstance(value, bool) or any(isinstance(c, bool) for c in choices)
        ):
            return value
        if isinstance(value, int | float) and str(value) in choices:
            return str(value)  # precision: 32 written as a number
        raise ConfigError(
            f"'{where}' = {value!r} is not one of {', '.join(map(repr, choices))}."
        )
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}.")
        return from_dict(tp, value, prefix=f"{where}.")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"'{where}' must be a list, got {value!r}.")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}.")
        return dict(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads "1e-4" (no dot) as a string; accept what float() accepts.
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    raise ConfigError(
        f"'{where}' = {value!r} must be of type {_type_name(tp)}, "
        f"got {type(value).__name__}."
    )


def from_dict(cls: type[T], values: Mapping[str, object], prefix: str = "") -> T:
    """Builds dataclass ``cls`` from a mapping, strictly.

    Args:
        cls: A dataclass type.
        values: Keys and values; missing keys take the dataclass defaults.
        prefix: Dotted path of this section, for messages.

    Returns:
        The dataclass instance.

    Raises:
        ConfigError: On an unknown key (naming the nearest valid one), a value of
            the wrong type, or a value out of its allowed range.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"Unknown config key '{prefix}{key}'.{_nearest(key, names)}"
            )
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except SettingError as error:
        # The settings class knows the field; only the reader knows the section.
        raise ConfigError(
            f"'{prefix}{error.name}' = {error.value!r} {error.requirement}."
        ) from error


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _refuse_duplicate_keys(root: yaml.Node | None) -> None:
    """Raises on a mapping of the node tree that gives one key twice.

    PyYAML keeps the last of two equal keys without a word, so a setting written
    twice (``mask_ratio: 0.6`` ... ``mask_ratio: 0.75``) would be half ignored.
    Merge keys (``<<: *defaults``) may still be overridden: they are not compared.
    Keys are compared as written, with their resolved tag.
    """
    pending = [] if root is None else [root]
    visited: set[int] = set()  # an alias reuses its anchor's node
    while pending:
        node = pending.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, object], yaml.Mark] = {}
            for key_node, value_node in node.value:
                pending.extend((key_node, value_node))
                if key_node.tag == _MERGE_TAG or not isinstance(
                    key_node, yaml.ScalarNode
                ):
                    continue
                key = (key_node.tag, key_node.value)
                first = seen.setdefault(key, key_node.start_mark)
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found the key {key_node.value!r} twice (first on line "
                        f"{first.line + 1}); keep one",
                        key_node.start_mark,
                    )
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)


def load_yaml(text: str) -> object:
    """``yaml.safe_load`` that refuses duplicate keys.

    Raises:
        yaml.YAMLError: The text is not YAML, or a mapping repeats a key.
    """
    # compose builds the node tree only (no objects), checked before loading.
    _refuse_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
    return yaml.safe_load(text)


def _parse_value(item: str, text: str) -> object:
    # YAML scalars: numbers, true/false, null, [lists] and {maps} work on the CLI.
    try:
        return load_yaml(text)
    except yaml.YAMLError as error:
        # A marked error's problem ("found the key 'a' twice") over its context.
        problem = getattr(error, "problem", None)
        reason = problem if isinstance(problem, str) else str(error).splitlines()[0]
        raise ConfigError(
            f"Override '{item}': the value is not YAML ({reason})."
        ) from None


def apply_overrides(values: _Values, overrides: Sequence[str]) -> _Values:
    """Applies ``section.key=value`` overrides to a nested dict (in place).

    Args:
        values: The config as nested dicts.
        overrides: Strings like ``optim.base_lr=2e-4`` or ``method.mask_ratio=0.5``
            (values parsed as YAML).

    Returns:
        ``values``.

    Raises:
        ConfigError: If an override has no ``=``.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"Override '{item}' must look like section.key=value, e.g. "
                f"optim.base_lr=2e-4."
            )
        parts = key.strip().split(".")
        node: dict[str, object] = values
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"Override '{item}': '{part}' is not a section.")
            node = child
        node[parts[-1]] = _parse_value(item, text)
    return values


#: Keys of the ``method`` section that are not the method's own options.
METHOD_KEYS = ("name", "head", "loss", "transform")


def method_section(section: object) -> dict[str, object]:
    """The ``method`` section as written -> ``{name, head, loss, transform, options}``.

    YAML writes the method's options next to its name (``method: {name: simmim,
    mask_ratio: 0.6}``); the schema keeps them apart (``MethodConfig.options``),
    because they are checked against the chosen method's own ``Settings``.

    Raises:
        ConfigError: If the section is neither a name nor a mapping.
    """
    if isinstance(section, str):
        return {"name": section, "options": {}}
    if not isinstance(section, Mapping):
        raise ConfigError(f"'method' must be a name or a mapping, got {section!r}.")
    values = {k: v for k, v in section.items() if k in METHOD_KEYS}
    options = {k: v for k, v in section.items() if k not in (*METHOD_KEYS, "options")}
    nested = section.get("options") or {}
    if not isinstance(nested, Mapping):
        raise ConfigError(f"'method.options' must be a mapping, got {nested!r}.")
    options.update(nested)
    return {**values, "options": options}
