"""The contract of a dataset builder: what a ``lightly.datasets`` entry point names.

A dataset is selected by name (``data.dataset`` in a config); the name is an entry
point in the group ``lightly.datasets`` whose object is a :class:`DatasetBuilder`.
This package registers its own datasets that way, so a third-party dataset needs no
change here, only a builder and one line in its own ``pyproject.toml``::

    [project.entry-points."lightly.datasets"]
    my-scans = "my_package.scans:my_scans"

where ``my_scans(root, split, transform, options)`` returns a map-style dataset of
``(image, label)`` pairs with a ``classes`` attribute. Giving the builder a
``num_classes(root)`` method (see :class:`ClassCountingBuilder`) lets a config size
a classifier without building the dataset, and a ``description`` string (else the
first line of its docstring) is what ``lightly-simmim list`` shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args, runtime_checkable

from PIL import Image
from torch.utils.data import Dataset

__all__ = [
    "ClassCountingBuilder",
    "DatasetBuilder",
    "DatasetOptions",
    "ImageDataset",
    "LabelledDataset",
    "OnCorrupt",
    "Split",
    "Transform",
]

#: Applied to each PIL image a dataset returns; its result replaces the image.
Transform = Callable[[Image.Image], object]
#: A map-style dataset of ``(image, label)`` pairs: the image a PIL image, or what
#: the dataset's transform made of it (a tensor, a list of views).
LabelledDataset = Dataset[tuple[object, int]]
#: A dataset of untransformed ``(PIL image, label)`` pairs: what a builder returns
#: when given no transform.
ImageDataset = Dataset[tuple[Image.Image, int]]
#: ``"train"``, or ``"test"`` for the evaluation split (a set's test or val images).
Split = Literal["train", "test"]
#: What to do with an image file PIL cannot decode.
OnCorrupt = Literal["skip", "error"]


@dataclass(frozen=True)
class DatasetOptions:
    """Settings every builder receives; each builder uses those that apply to it.

    Attributes:
        download: Let the builder fetch missing data into the root (torchvision's
            downloaders). Never implied; a builder that cannot download and is
            asked to raises ``ValueError``.
        on_corrupt: For files that fail to decode: ``"skip"`` them with a warning,
            or raise :class:`~lightly_simmim.data.CorruptImageError` (``"error"``).
        check_images: Decode every image once when the dataset is built, so corrupt
            files are found before training; False trusts the files, and
            ``on_corrupt`` then applies when a file is loaded.

    Raises:
        ValueError: ``on_corrupt`` is neither ``"skip"`` nor ``"error"``.
    """

    download: bool = False
    on_corrupt: OnCorrupt = "skip"
    check_images: bool = True

    def __post_init__(self) -> None:
        if self.on_corrupt not in get_args(OnCorrupt):
            raise ValueError(
                f"on_corrupt must be 'skip' or 'error', got {self.on_corrupt!r}."
            )


class DatasetBuilder(Protocol):
    """Builds one split of a named dataset; every ``lightly.datasets`` entry point.

    A plain function with this signature qualifies, as does any callable object.
    Two optional members make a builder more useful:

    - ``num_classes(root) -> int`` (see :class:`ClassCountingBuilder`): the class
      count without building the dataset. Without it,
      :func:`~lightly_simmim.data.num_classes` builds the training split and counts
      its ``classes``.
    - ``description: str``: one line for ``lightly-simmim list``; without it the
      first line of the builder's docstring is shown.

    Builders must not touch the network unless ``options.download`` is True.
    """

    def __call__(
        self,
        root: Path | None,
        split: Split,
        transform: Transform | None,
        options: DatasetOptions,
    ) -> LabelledDataset:
        """Builds the dataset.

        Args:
            root: The folder holding the data (user paths already expanded), or None
                when the user gave none.
            split: ``"train"``, or ``"test"`` for the evaluation split.
            transform: Applied to each PIL image; None returns images unchanged.
            options: Download and corrupt-file settings.

        Returns:
            A map-style dataset whose item ``i`` is ``(image, label)``, ``label`` an
            int in ``[0, len(dataset.classes))``, with a ``classes`` attribute (the
            class names, index = label).

        Raises:
            DatasetNotFoundError: ``root`` is needed but None, or the data is not
                there (the message says where it looked and what it expected).
        """
        ...


@runtime_checkable
class ClassCountingBuilder(DatasetBuilder, Protocol):
    """A :class:`DatasetBuilder` that knows its class count without building."""

    def num_classes(self, root: Path | None) -> int:
        """Number of classes; labels lie in ``[0, num_classes)``.

        Args:
            root: As for building; sets with a fixed class list ignore it.

        Returns:
            The class count, the same as ``len(dataset.classes)`` would give.
        """
        ...
