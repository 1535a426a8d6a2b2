"""Datasets by name: the embedded Fashion-MNIST subset, torchvision sets, image folders.

:func:`build_dataset` maps a dataset name to a map-style dataset of
``(image, label)`` pairs, where ``image`` is a PIL image (mode ``"L"`` for the MNIST
family, ``"RGB"`` for everything else) passed through ``transform`` if one is given,
and ``label`` is an ``int`` class index. Every dataset it returns has a ``classes``
attribute (the class names, index = label), and :func:`num_classes` gives the count
without building a dataset (for sizing a classifier head from a config).

Names are entry points in the group ``lightly.datasets``: this package registers
``fashion-mnist-embedded``, ``fashion-mnist``, ``mnist``, ``cifar10``, ``cifar100``,
``stl10``, ``image-folder`` and ``imagenet`` exactly as another distribution
registers its own (the builder contract is in :mod:`lightly_simmim.data.builder`).
:data:`DATASETS` maps every registered name to a one-line description; it is
computed when first read, not on import, because it imports every dataset plugin.

Nothing here touches the network unless the caller passes ``download=True``; then
torchvision's own downloader runs for the sets it supports. Root layouts are
described in each source's module: :mod:`~lightly_simmim.data.mnist`,
:mod:`~lightly_simmim.data.torchvision_sets` and :class:`ImageFolderDataset`.
"""

from __future__ import annotations

from collections.abc import Mapping

from lightly_simmim.data.builder import (
    ClassCountingBuilder,
    DatasetBuilder,
    DatasetOptions,
    ImageDataset,
    LabelledDataset,
)
from lightly_simmim.data.catalog import build_dataset, dataset_descriptions, num_classes
from lightly_simmim.data.embedded import (
    FASHION_MNIST_CLASSES,
    EmbeddedFashionMNIST,
    load_embedded_fashion_mnist,
)
from lightly_simmim.data.errors import (
    CorruptImageError,
    DatasetNotFoundError,
    IDXFormatError,
)
from lightly_simmim.data.folder import IMAGE_EXTENSIONS, ImageFolderDataset
from lightly_simmim.data.idx import read_idx
from lightly_simmim.data.wrappers import TransformedDataset

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "ClassCountingBuilder",
    "CorruptImageError",
    "DatasetBuilder",
    "DatasetNotFoundError",
    "DatasetOptions",
    "EmbeddedFashionMNIST",
    "IDXFormatError",
    "ImageDataset",
    "ImageFolderDataset",
    "LabelledDataset",
    "TransformedDataset",
    "build_dataset",
    "dataset_descriptions",
    "load_embedded_fashion_mnist",
    "num_classes",
    "read_idx",
]

#: Registered dataset names -> one-line description (``lightly-simmim list``).
#: Computed on each read (see :func:`dataset_descriptions`): a plugin installed or
#: fixed since shows up after :func:`lightly_simmim.registry.refresh`.
DATASETS: Mapping[str, str]


def __getattr__(name: str) -> object:
    # PEP 562: DATASETS is declared above but never assigned, so reading it lands
    # here; building it at import would import every dataset plugin.
    if name == "DATASETS":
        return dataset_descriptions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
