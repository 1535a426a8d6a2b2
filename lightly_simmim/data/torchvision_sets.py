"""CIFAR-10, CIFAR-100 and STL-10 read from a root folder, through torchvision.

Registered as the ``cifar10``, ``cifar100`` and ``stl10`` datasets. The root holds
torchvision's layout, i.e. the extracted archive: ``<root>/cifar-10-batches-py/``,
``<root>/cifar-100-python/``, ``<root>/stl10_binary/``. Torchvision checks each
file's MD5 on every construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from torchvision import datasets as tv_datasets

from lightly_simmim.data._roots import DOWNLOAD_HINT, parent_hint, require_root
from lightly_simmim.data.builder import (
    ClassCountingBuilder,
    DatasetOptions,
    LabelledDataset,
    Split,
    Transform,
)
from lightly_simmim.data.errors import DatasetNotFoundError

__all__ = ["cifar10", "cifar100", "stl10"]

ArchiveSet = type[tv_datasets.CIFAR10] | type[tv_datasets.STL10]

# torchvision sets STL10.classes only when the archive's class_names.txt exists.
_STL10_CLASSES: Final[tuple[str, ...]] = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)


class _ArchiveBuilder:
    """Builds a torchvision set that is read from an extracted archive.

    Args:
        name: The dataset's registered name, for messages.
        cls: The torchvision class (``CIFAR10``, ``CIFAR100`` or ``STL10``).
        classes: Its number of classes.
        description: One line for ``lightly-simmim list``.
    """

    def __init__(
        self, name: str, cls: ArchiveSet, classes: int, description: str
    ) -> None:
        self.name = name
        self.cls = cls
        self.class_count = classes
        self.description = description
        # torchvision's class attributes name the folder and files it checks;
        # reading them keeps the error messages in step with what it needs.
        self.folder: str = cls.base_folder
        self.files = [entry[0] for entry in (*cls.train_list, *cls.test_list)]
        if issubclass(cls, tv_datasets.CIFAR10):
            self.files.append(cls.meta["filename"])
        self.layout = (
            f"Expected torchvision's layout <root>/{self.folder}/"
            f"{{{', '.join(self.files)}}} (the extracted {cls.filename})."
        )

    def __call__(
        self,
        root: Path | None,
        split: Split,
        transform: Transform | None,
        options: DatasetOptions,
    ) -> LabelledDataset:
        root = require_root(self.name, root, self.layout, downloadable=True)
        if not options.download:
            self._check_files(root)
        try:
            return self._construct(root, split, transform, options.download)
        except RuntimeError as err:  # missing / MD5-mismatched files, downloads
            raise DatasetNotFoundError(
                f"{self.name}: {err} (looked in {str(root / self.folder)!r}; "
                f"torchvision checks each file's MD5). {self.layout}"
            ) from err

    def num_classes(self, root: Path | None) -> int:
        return self.class_count

    def _check_files(self, root: Path) -> None:
        """Raises a message naming what is missing, before torchvision's terse one."""
        data = root / self.folder
        missing = [f for f in self.files if not (data / f).is_file()]
        if not missing:
            return
        if not root.exists():
            where = f"root {str(root)!r} does not exist"
        elif not data.is_dir():
            where = f"{str(data)!r} does not exist"
        else:
            where = f"{str(data)!r} lacks {', '.join(missing)}"
        archive_hint = (
            f" {self.cls.filename} is in the root: extract it, or pass download=True, "
            "which extracts an intact archive without downloading."
            if (root / self.cls.filename).is_file()
            else ""
        )
        raise DatasetNotFoundError(
            f"{self.name}: {where}.{parent_hint(root, self.folder)}{archive_hint} "
            f"{self.layout} {DOWNLOAD_HINT}"
        )

    def _construct(
        self, root: Path, split: Split, transform: Transform | None, download: bool
    ) -> LabelledDataset:
        # torchvision is untyped here (mypy sees no types): annotate.
        dataset: LabelledDataset
        if issubclass(self.cls, tv_datasets.STL10):
            # "train" is the 5,000 labelled images; the 100,000 unlabelled ones
            # would need label -1, which an (image, class) dataset cannot carry.
            stl = self.cls(
                str(root), split=split, transform=transform, download=download
            )
            if not hasattr(stl, "classes"):
                stl.classes = list(_STL10_CLASSES)
            dataset = stl
        else:
            dataset = self.cls(
                root=str(root),
                train=split == "train",
                transform=transform,
                download=download,
            )
        return dataset


#: The ``cifar10`` entry point.
cifar10: Final[ClassCountingBuilder] = _ArchiveBuilder(
    "cifar10",
    tv_datasets.CIFAR10,
    10,
    "CIFAR-10 (torchvision): 50,000 / 10,000 32x32 RGB, 10 classes; root with "
    "cifar-10-batches-py/",
)
#: The ``cifar100`` entry point.
cifar100: Final[ClassCountingBuilder] = _ArchiveBuilder(
    "cifar100",
    tv_datasets.CIFAR100,
    100,
    "CIFAR-100 (torchvision): 50,000 / 10,000 32x32 RGB, 100 classes; root with "
    "cifar-100-python/",
)
#: The ``stl10`` entry point.
stl10: Final[ClassCountingBuilder] = _ArchiveBuilder(
    "stl10",
    tv_datasets.STL10,
    10,
    "STL-10 (torchvision): 5,000 labelled train / 8,000 test 96x96 RGB, 10 classes; "
    "root with stl10_binary/",
)
