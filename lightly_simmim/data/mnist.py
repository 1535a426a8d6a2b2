"""MNIST and Fashion-MNIST read from a root folder, through torchvision.

Registered as the ``mnist`` and ``fashion-mnist`` datasets. The root holds either
torchvision's layout ``<root>/MNIST/raw/`` (``<root>/FashionMNIST/raw/``) with the
four decompressed IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, or the
four ``*-ubyte.gz`` files as published, directly in ``<root>`` (or in the ``raw``
folder). Compressed files are decompressed once into the ``raw`` folder, because
torchvision reads only decompressed ones; ``<root>`` must then be writable.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Final

from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import extract_archive

from lightly_simmim.data._roots import DOWNLOAD_HINT, parent_hint, require_root
from lightly_simmim.data.builder import (
    ClassCountingBuilder,
    DatasetOptions,
    LabelledDataset,
    Split,
    Transform,
)
from lightly_simmim.data.errors import DatasetNotFoundError, IDXFormatError

__all__ = ["IDX_FILES", "fashion_mnist", "mnist"]

#: The four IDX files of the MNIST family, as torchvision expects them in ``raw/``.
IDX_FILES: Final[tuple[str, ...]] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _layout(folder: str) -> str:
    return (
        f"Expected either torchvision's layout <root>/{folder}/raw/"
        "{train,t10k}-{images-idx3,labels-idx1}-ubyte (4 decompressed files), or the "
        "four *-ubyte.gz files directly in <root> (decompressed into "
        f"<root>/{folder}/raw/ on first use)."
    )


def _decompress_into(archive: Path, raw: Path) -> None:
    """Decompresses one ``.gz`` IDX file into ``raw`` without a half-written result.

    Writes into a temporary folder beside the target, then renames: several
    processes (DDP ranks, parallel runs) may prepare the same root at once, and a
    rename is atomic, so none of them ever reads a partly written file.
    """
    raw.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=raw))
    try:
        extracted = Path(extract_archive(str(archive), str(tmp)))
        os.replace(extracted, raw / extracted.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _prepare_raw(name: str, folder: str, root: Path, download: bool) -> Path:
    """Makes ``<root>/<folder>/raw`` hold the decompressed files torchvision reads.

    Returns:
        The ``raw`` folder.

    Raises:
        DatasetNotFoundError: Files are missing (and ``download`` is False), or a
            ``.gz`` file cannot be decompressed into the root.
        IDXFormatError: A ``.gz`` file is corrupt.
    """
    raw = root / folder / "raw"
    to_decompress: list[Path] = []
    missing: list[str] = []
    for file in IDX_FILES:
        if (raw / file).is_file():
            continue
        for archive in (raw / f"{file}.gz", root / f"{file}.gz"):
            if archive.is_file():
                to_decompress.append(archive)
                break
        else:
            missing.append(file)
    if missing and not download:
        where = "does not exist" if not root.exists() else f"lacks {', '.join(missing)}"
        raise DatasetNotFoundError(
            f"{name}: root {str(root)!r} {where} (looked in {str(raw)!r} and, as "
            f".gz, in {str(root)!r}; torchvision needs all four files, both splits)."
            f"{parent_hint(root, folder)} {_layout(folder)} {DOWNLOAD_HINT}"
        )
    for archive in to_decompress:
        try:
            _decompress_into(archive, raw)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise IDXFormatError(
                f"{name}: cannot decompress {str(archive)!r} ({type(err).__name__}: "
                f"{err}); the file is probably truncated, replace it."
            ) from err
        except OSError as err:
            raise DatasetNotFoundError(
                f"{name}: found {str(archive)!r} but cannot decompress it into "
                f"{str(raw)!r} ({err}); torchvision reads only decompressed files. "
                "Copy the .gz files to a writable folder and pass that as root, or "
                "decompress them there yourself."
            ) from err
    return raw


class _IDXRootBuilder:
    """Builds torchvision's ``MNIST`` or ``FashionMNIST`` from a root folder.

    Args:
        name: The dataset's registered name, for messages.
        cls: The torchvision class; its name is the folder it reads
            (``<root>/<class name>/raw``).
        description: One line for ``lightly-simmim list``.
    """

    def __init__(
        self, name: str, cls: type[tv_datasets.MNIST], description: str
    ) -> None:
        self.name = name
        self.cls = cls
        self.description = description

    def __call__(
        self,
        root: Path | None,
        split: Split,
        transform: Transform | None,
        options: DatasetOptions,
    ) -> LabelledDataset:
        folder = self.cls.__name__
        root = require_root(self.name, root, _layout(folder), downloadable=True)
        raw = _prepare_raw(self.name, folder, root, options.download)
        try:
            dataset: LabelledDataset = self.cls(
                root=str(root),
                train=split == "train",
                transform=transform,
                download=options.download,
            )
        except RuntimeError as err:  # torchvision's "Dataset not found", downloads
            raise DatasetNotFoundError(
                f"{self.name}: {err} (root {str(root)!r})."
            ) from err
        except AssertionError as err:  # torchvision's IDX reader validates by assert
            raise IDXFormatError(
                f"{self.name}: torchvision cannot parse the IDX files in "
                f"{str(raw)!r}; check them with lightly_simmim.data.read_idx."
            ) from err
        return dataset

    def num_classes(self, root: Path | None) -> int:
        return len(self.cls.classes)


#: The ``fashion-mnist`` entry point.
fashion_mnist: Final[ClassCountingBuilder] = _IDXRootBuilder(
    "fashion-mnist",
    tv_datasets.FashionMNIST,
    "Fashion-MNIST (torchvision): 60,000 / 10,000 28x28 grayscale, 10 classes; "
    "root with FashionMNIST/raw/ or the four *-ubyte.gz files",
)
#: The ``mnist`` entry point.
mnist: Final[ClassCountingBuilder] = _IDXRootBuilder(
    "mnist",
    tv_datasets.MNIST,
    "MNIST digits (torchvision): 60,000 / 10,000 28x28 grayscale, 10 classes; "
    "root with MNIST/raw/ or the four *-ubyte.gz files",
)
