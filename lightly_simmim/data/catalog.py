"""Datasets by name: the ``lightly.datasets`` entry points, built through one call.

Every name, this package's own included, is an entry point in the group
``lightly.datasets`` (see :mod:`lightly_simmim.registry`) whose object follows
:class:`~lightly_simmim.data.builder.DatasetBuilder`. Discovery reads metadata only;
a builder's module is imported when its name is first used, and
:func:`dataset_descriptions` imports them all, skipping broken ones with a warning.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal, cast

from lightly_simmim import registry
from lightly_simmim.data.builder import (
    ClassCountingBuilder,
    DatasetBuilder,
    DatasetOptions,
    LabelledDataset,
    Transform,
)

__all__ = ["build_dataset", "dataset_descriptions", "get_builder", "num_classes"]

#: The registry group of dataset builders (``"lightly.datasets"`` in full).
GROUP = "datasets"


def _folded(name: str) -> str:
    """``"CIFAR_10"`` and ``"cifar-10"`` fold alike, for suggestions only."""
    return name.lower().replace("_", "-")


def get_builder(name: str) -> DatasetBuilder:
    """The builder registered under ``name``, importing only its module.

    Args:
        name: A ``lightly.datasets`` entry point name, e.g. ``"cifar10"``.

    Returns:
        The builder.

    Raises:
        UnknownComponentError: No dataset has that name (a ``ValueError``); the
            message lists the known names and suggests the nearest one.
        PluginLoadError: The builder's module fails to import.
        TypeError: The entry point names something that is not callable.
    """
    try:
        builder: object = registry.get(GROUP, name)
    except registry.UnknownComponentError as error:
        # difflib misses a pure case or separator slip ("CIFAR10" vs "cifar10").
        folded = {_folded(known): known for known in error.known}
        hint = folded.get(_folded(name))
        if error.suggestion is None and hint is not None:
            raise registry.UnknownComponentError(
                error.group, name, error.known, hint
            ) from None
        raise
    if not callable(builder):
        raise TypeError(
            f"The dataset plugin {name!r} names an object of type "
            f"{type(builder).__name__!r}, not a builder: a lightly.datasets entry "
            "point must name a callable "
            "(root, split, transform, options) -> Dataset."
        )
    # Only callability can be checked before a call; the signature is the plugin's
    # promise (see DatasetBuilder).
    return cast(DatasetBuilder, builder)


def _description(builder: object) -> str:
    description = getattr(builder, "description", None)
    if not isinstance(description, str):
        description = inspect.getdoc(builder) or ""
    lines = description.strip().splitlines()
    return lines[0] if lines else "(no description)"


def dataset_descriptions() -> Mapping[str, str]:
    """Every registered dataset name with its one-line description.

    Imports every dataset plugin; one that fails to import is left out with a
    warning, so a broken plugin cannot break a listing of the others.

    Returns:
        Read-only name -> description, sorted by name.

    Warns:
        PluginLoadWarning: For each plugin that fails to import.
    """
    builders = registry.items(GROUP)
    return MappingProxyType(
        {name: _description(builder) for name, builder in builders.items()}
    )


def _path(root: str | Path | None) -> Path | None:
    return None if root is None else Path(root).expanduser()


def build_dataset(
    name: str,
    root: str | Path | None = None,
    train: bool = True,
    transform: Transform | None = None,
    download: bool = False,
    on_corrupt: Literal["skip", "error"] = "skip",
    check_images: bool = True,
) -> LabelledDataset:
    """Builds a dataset of ``(image, label)`` pairs by name.

    Args:
        name: A registered dataset name (``lightly-simmim list``; exact spelling,
            a near miss is suggested).
        root: The folder holding the data (layouts in each dataset's module and in
            :class:`~lightly_simmim.data.ImageFolderDataset`). Unused, with a
            warning, for ``fashion-mnist-embedded``; required for this package's
            other datasets.
        train: The training split if True, else the test / validation split
            (``stl10``: the 5,000 labelled ``train`` images vs ``test``).
        transform: Applied to each PIL image: mode ``"L"`` for ``fashion-mnist*`` /
            ``mnist``, ``"RGB"`` otherwise. Without it the image is returned as is.
        download: Let torchvision download the data into ``root`` if it is missing
            (``fashion-mnist``, ``mnist``, ``cifar10``, ``cifar100``, ``stl10``).
            Never implied. Ignored for ``fashion-mnist-embedded``; an error for
            image folders.
        on_corrupt: For image folders: ``"skip"`` undecodable images with a
            warning, or raise on them (``"error"``). Ignored for the other sets.
        check_images: For image folders: decode every image once at construction
            to find corrupt files (about 0.6 ms per ImageNet JPEG on 2 cores);
            False trusts the files, and ``on_corrupt`` then applies to a corrupt
            one when it is loaded.

    Returns:
        A map-style dataset; item ``i`` is ``(image, label)`` with ``label`` an int
        in ``[0, num_classes(name, root))``. It has a ``classes`` attribute (class
        names, index = label).

    Raises:
        UnknownComponentError: ``name`` is unknown (a ``ValueError``; the message
            lists the known names).
        PluginLoadError: The dataset's plugin fails to import.
        ValueError: ``on_corrupt`` is invalid, or ``download=True`` for an image
            folder.
        DatasetNotFoundError: ``root`` is None where one is needed, or the data is
            not at ``root`` in the expected layout (the message says where it
            looked and what it expected).
        IDXFormatError: An IDX file is corrupt.
        CorruptImageError: See :class:`~lightly_simmim.data.ImageFolderDataset`.
    """
    options = DatasetOptions(
        download=download, on_corrupt=on_corrupt, check_images=check_images
    )
    builder = get_builder(name)
    return builder(_path(root), "train" if train else "test", transform, options)


def num_classes(name: str, root: str | Path | None = None) -> int:
    """Number of classes of a dataset, without loading it where possible.

    Asks the builder's ``num_classes(root)``; a builder without one (a plugin's
    choice) has its training split built, images unchecked, and its ``classes``
    counted.

    Args:
        name: A registered dataset name.
        root: Needed only for sets read from a folder whose classes are not fixed,
            such as image folders (the class folders of ``root/train`` or of
            ``root``; see :class:`~lightly_simmim.data.ImageFolderDataset`).

    Returns:
        The number of classes; labels lie in ``[0, num_classes)``.

    Raises:
        UnknownComponentError: ``name`` is unknown (a ``ValueError``).
        PluginLoadError: The dataset's plugin fails to import.
        DatasetNotFoundError: An image folder without ``root``, or ``root`` missing.
        TypeError: A plugin builder has no ``num_classes`` and its dataset no
            ``classes`` attribute.
    """
    builder = get_builder(name)
    if isinstance(builder, ClassCountingBuilder):
        return builder.num_classes(_path(root))
    dataset = builder(_path(root), "train", None, DatasetOptions(check_images=False))
    classes = getattr(dataset, "classes", None)
    if classes is None:
        raise TypeError(
            f"Cannot tell how many classes dataset {name!r} has: its builder has no "
            "num_classes(root) method and the dataset it builds no 'classes' "
            "attribute; the plugin must provide one of them."
        )
    return len(classes)
