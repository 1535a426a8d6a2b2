"""Tests for lightly_simmim.data.catalog: datasets by name through entry points.

Third-party datasets are real (if tiny) distributions installed by the
``install_plugin`` fixture, so discovery goes through ``importlib.metadata`` as it does
for an installed package.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

import lightly_simmim.data
from lightly_simmim import registry
from lightly_simmim.data import (
    DATASETS,
    DatasetNotFoundError,
    build_dataset,
    num_classes,
)
from lightly_simmim.registry import (
    PluginLoadError,
    PluginLoadWarning,
    UnknownComponentError,
)

OWN = {
    "fashion-mnist-embedded",
    "fashion-mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "stl10",
    "image-folder",
    "imagenet",
}
NEEDS_ROOT = sorted(OWN - {"fashion-mnist-embedded"})

# install_plugin(distribution, entry_points_txt, {module: source}) -> site folder
Installer = Callable[[str, str, dict[str, str]], Path]

# A plugin as its author would write it: a function builder, described by its
# docstring, with no num_classes; its dataset records what the builder was given.
TOY_MODULE = '''
class ToyShapes:
    classes = ["circle", "square", "star"]

    def __init__(self, root, split, transform, options):
        self.root, self.split, self.options = root, split, options
        self.transform = transform or (lambda image: image)

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return self.transform(f"shape-{index}"), index % 3


def toy_shapes(root, split, transform, options):
    """Toy shapes: 6 strings, 3 classes.

    Not shown in the listing: only the first line is.
    """
    return ToyShapes(root, split, transform, options)


class Counted:
    description = "Counted set: knows its classes without building"

    def __call__(self, root, split, transform, options):
        raise AssertionError("num_classes must not build the dataset")

    def num_classes(self, root):
        return 7


counted = Counted()


def classless(root, split, transform, options):
    return [("image", 0)]


not_a_builder = 42
'''


@pytest.fixture
def toy_plugin(install_plugin: Installer) -> None:
    install_plugin(
        "toy-datasets",
        """
        [lightly.datasets]
        toy-shapes = toy_datasets_mod:toy_shapes
        counted = toy_datasets_mod:counted
        classless = toy_datasets_mod:classless
        not-a-builder = toy_datasets_mod:not_a_builder
        broken = toy_datasets_broken_mod:anything
        """,
        {
            "toy_datasets_mod": TOY_MODULE,
            "toy_datasets_broken_mod": "raise RuntimeError('boom at import')\n",
        },
    )


# This package's own datasets.


def test_datasets__describes_every_own_name_in_one_line() -> None:
    assert set(DATASETS) == OWN
    assert list(DATASETS) == sorted(DATASETS)
    for description in DATASETS.values():
        assert description and "\n" not in description
    expected = {"fashion-mnist": 10, "mnist": 10, "cifar10": 10, "cifar100": 100}
    for name, count in {**expected, "stl10": 10}.items():
        assert num_classes(name) == count


def test_datasets__own_names_are_entry_points_of_this_distribution() -> None:
    rows = registry.describe("datasets")
    assert {name for name, _, _ in rows} == OWN
    for name, distribution, value in rows:
        assert distribution == "lightly-simmim", name
        assert value.startswith("lightly_simmim.data."), name


@pytest.mark.parametrize("name", NEEDS_ROOT)
def test_build_dataset__root_none_is_a_clear_error(name: str) -> None:
    with pytest.raises(DatasetNotFoundError, match="no root given") as info:
        build_dataset(name)
    assert "Expected" in str(info.value)


def test_build_dataset__unknown_name_lists_known_names_and_suggests() -> None:
    with pytest.raises(UnknownComponentError, match="Did you mean 'fashion-mnist'"):
        build_dataset("fashion_mnist")
    with pytest.raises(ValueError, match="Did you mean 'cifar10'") as info:
        num_classes("CIFAR10")  # case: too far for difflib, folded here
    assert isinstance(info.value, UnknownComponentError)
    for name in OWN:
        assert repr(name) in str(info.value)
    with pytest.raises(UnknownComponentError) as info:
        build_dataset("zzzzzz")
    assert "Did you mean" not in str(info.value)
    assert "Known names:" in str(info.value)


def test_build_dataset__invalid_on_corrupt_is_value_error() -> None:
    with pytest.raises(ValueError, match="on_corrupt must be 'skip' or 'error'"):
        build_dataset("fashion-mnist-embedded", on_corrupt="ignore")  # type: ignore[arg-type]


# Third-party datasets.


@pytest.mark.usefixtures("toy_plugin")
def test_build_dataset__third_party_builder_found_by_name(tmp_path: Path) -> None:
    dataset = build_dataset(
        "toy-shapes",
        root=str(tmp_path),
        train=False,
        transform=str.upper,
        download=True,
        on_corrupt="error",
        check_images=False,
    )
    assert type(dataset).__module__ == "toy_datasets_mod"
    # The builder got the uniform arguments: a Path, the split name, the options.
    assert dataset.root == tmp_path
    assert dataset.split == "test"
    options = dataset.options
    assert (options.download, options.on_corrupt, options.check_images) == (
        True,
        "error",
        False,
    )
    assert dataset[4] == ("SHAPE-4", 1)
    assert build_dataset("toy-shapes").split == "train"


@pytest.mark.usefixtures("toy_plugin")
def test_num_classes__third_party_builder_with_and_without_num_classes() -> None:
    assert num_classes("counted") == 7  # its num_classes; building would raise
    # No num_classes: the training split is built and its classes counted.
    assert num_classes("toy-shapes") == 3
    with pytest.raises(TypeError, match="no num_classes") as info:
        num_classes("classless")
    assert "'classless'" in str(info.value)


@pytest.mark.usefixtures("toy_plugin")
def test_datasets__third_party_described_and_broken_plugin_only_warns() -> None:
    with pytest.warns(PluginLoadWarning) as record:
        listed = dict(lightly_simmim.data.DATASETS)
    messages = "\n".join(str(w.message) for w in record)
    assert "'broken'" in messages and "boom at import" in messages
    assert "toy-datasets" in messages
    assert "broken" not in listed
    assert listed["toy-shapes"] == "Toy shapes: 6 strings, 3 classes."
    assert listed["counted"] == "Counted set: knows its classes without building"
    assert set(listed) >= OWN
    # The others still build; the broken one fails only when asked for by name.
    assert len(build_dataset("fashion-mnist-embedded", train=False)) == 2_000
    assert len(build_dataset("toy-shapes")) == 6
    with pytest.raises(PluginLoadError, match="boom at import"):
        build_dataset("broken")


@pytest.mark.usefixtures("toy_plugin")
def test_build_dataset__entry_point_to_a_non_callable_is_type_error() -> None:
    with pytest.raises(
        TypeError, match="'not-a-builder' names an object of type 'int'"
    ):
        build_dataset("not-a-builder")


@pytest.mark.usefixtures("toy_plugin")
def test_datasets__not_computed_at_import() -> None:
    # Re-running the package's __init__ with a broken plugin installed: importing
    # must neither load plugins (no warning) nor import them.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(lightly_simmim.data)
    assert "toy_datasets_mod" not in sys.modules
    assert "toy_datasets_broken_mod" not in sys.modules
    assert "DATASETS" not in vars(lightly_simmim.data)
    with pytest.warns(PluginLoadWarning):
        assert "toy-shapes" in lightly_simmim.data.DATASETS
    assert "toy_datasets_mod" in sys.modules
