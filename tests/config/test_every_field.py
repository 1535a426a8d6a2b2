"""Every config field, fed a value out of range or of the wrong type, is refused.

The fields are read from the schema itself (every section dataclass and every
registered method's Settings), so a field added later is covered without touching
this file; the bad values are derived from each field's type and declared range.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal, Union

import pytest

from lightly_simmim import registry
from lightly_simmim.config import Config, ConfigError, from_dict, load_config
from lightly_simmim.settings import Bounds, bounds_of

_SKIP: set[str] = set()  # every field; method options: each method's Settings below


def _fields(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, Bounds | None]]:
    """(dotted key, annotation, declared range) of every leaf field of a dataclass."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        if dataclasses.is_dataclass(annotation):
            yield from _fields(annotation, f"{prefix}{field.name}.")  # type: ignore[arg-type]
        elif f"{prefix}{field.name}" not in _SKIP:
            yield f"{prefix}{field.name}", annotation, bounds_of(field)


def _options(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _wrong_type(annotation: Any) -> object:
    """A YAML value no option of ``annotation`` accepts."""
    options = _options(annotation)
    if any(typing.get_origin(o) is dict for o in options):
        return 3  # a number where a mapping belongs
    if str in options or any(typing.get_origin(o) is Literal for o in options):
        return {"a": 1}  # a mapping where a name / choice belongs
    return "not-a-number" if bool not in options else "maybe"


def _out_of_range(bounds: Bounds) -> float | None:
    """A number just outside the declared range, or None if it is unbounded."""
    if bounds.ge is not None:
        return bounds.ge - 1
    if bounds.gt is not None:
        return bounds.gt
    if bounds.le is not None:
        return bounds.le + 1
    if bounds.lt is not None:
        return bounds.lt
    return None


def _cases() -> Iterator[tuple[str, str, object]]:
    for key, annotation, bounds in _fields(Config):
        yield key, "wrong type", _wrong_type(annotation)
        if bounds is not None and (value := _out_of_range(bounds)) is not None:
            is_list = any(typing.get_origin(o) is list for o in _options(annotation))
            yield key, "out of range", [value] if is_list else value
            yield key, "NaN", [float("nan")] if is_list else float("nan")
            if float in _options(annotation) and not is_list:
                # Above every lower bound, but no setting means anything by it.
                yield key, "infinity", float("inf")


CASES = list(_cases())


def test_every_field__cases_cover_the_schema() -> None:
    keys = {key for key, _, _ in CASES}
    assert len(keys) >= 60  # every section's every field
    assert {"data.batch_size", "optim.accumulate_grad_batches"} <= keys
    kinds = {(key, kind) for key, kind, _ in CASES}
    assert ("data.batch_size", "out of range") in kinds
    assert ("optim.accumulate_grad_batches", "out of range") in kinds


def _yaml(value: object) -> str:
    if isinstance(value, float) and value != value:
        return ".nan"
    if value == float("inf"):
        return ".inf"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


@pytest.mark.parametrize(("key", "kind", "value"), CASES, ids=lambda v: str(v))
def test_every_field__bad_value_is_a_one_line_error_naming_it(
    key: str, kind: str, value: object
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("fashion_mnist_cpu", [f"{key}={_yaml(value)}"])
    message = str(caught.value)
    assert "\n" not in message, message
    assert f"'{key}" in message, message  # the key itself, or an item of it


def _method_cases() -> Iterator[tuple[str, str, object]]:
    for name in registry.list_names("methods"):
        settings = registry.get("methods", name).Settings
        for key, annotation, bounds in _fields(settings):
            yield name, key, _wrong_type(annotation)
            if bounds is not None and (value := _out_of_range(bounds)) is not None:
                yield name, key, value


@pytest.mark.parametrize(("method", "key", "value"), list(_method_cases()))
def test_every_method_option__bad_value_is_a_one_line_error_naming_it(
    method: str, key: str, value: object
) -> None:
    settings = registry.get("methods", method).Settings
    with pytest.raises(ConfigError) as caught:
        from_dict(settings, {key: value}, prefix="method.")
    message = str(caught.value)
    assert "\n" not in message and f"'method.{key}'" in message, message


def test_empty_config__defaults_fit_together(tmp_path: Any) -> None:
    # Issue #9: an empty file combined a 3-channel encoder with 1-channel data.
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    config = load_config(empty)
    assert config.encoder.kwargs["in_chans"] == config.data.in_chans == 1
    assert config.encoder.kwargs["img_size"] == config.data.input_size
    assert config.data.input_size % config.method.options["mask_patch_size"] == 0
