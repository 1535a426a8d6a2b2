"""Tests for lightly_simmim.data.builder: the options and the builder contract."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from lightly_simmim import registry
from lightly_simmim.data import ClassCountingBuilder, DatasetOptions


def test_dataset_options__defaults_and_frozen() -> None:
    options = DatasetOptions()
    assert (options.download, options.on_corrupt, options.check_images) == (
        False,
        "skip",
        True,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.download = True  # type: ignore[misc]


def test_dataset_options__invalid_on_corrupt_is_one_line_error() -> None:
    with pytest.raises(ValueError, match="got 'warn'") as info:
        DatasetOptions(on_corrupt="warn")  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_own_builders__follow_the_contract() -> None:
    own = [
        name
        for name, distribution, _ in registry.describe("datasets")
        if distribution == "lightly-simmim"
    ]
    assert len(own) == 8
    for name in own:
        builder = registry.get("datasets", name)
        assert isinstance(builder, ClassCountingBuilder), name
        parameters = list(inspect.signature(builder).parameters)
        assert parameters == ["root", "split", "transform", "options"], name
        assert isinstance(builder.description, str), name
        assert builder.description and "\n" not in builder.description, name
