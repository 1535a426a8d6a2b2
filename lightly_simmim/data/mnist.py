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

import torch
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
from lightly_simmim.data.idx import read_idx

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
        # Checked before it is kept: a broken copy would be read on every later run,
        # even after the .gz is replaced with a good one.
        read_idx(extracted, name=str(archive))
        os.replace(extracted, raw / extracted.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _archive_of(file: str, root: Path, raw: Path) -> Path | None:
    """The ``.gz`` a decompressed IDX file comes from, if one is there."""
    return next(
        (a for a in (raw / f"{file}.gz", root / f"{file}.gz") if a.is_file()), None
    )


def _diagnose(name: str, root: Path, raw: Path) -> IDXFormatError | None:
    """The file of ``raw`` torchvision could not use, and why (None: all valid).

    torchvision validates by assert and reshape, so its errors name no file; each
    file is read here with the package's own IDX reader instead.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for file in IDX_FILES:
        path = raw / file
        archive = _archive_of(file, root, raw)
        source = (
            ""
            if archive is None
            else f" It was decompressed from {str(archive)!r}: delete it, and it is "
            "decompressed again on the next run."
        )
        try:
            values = read_idx(path)
        except OSError:
            return None  # missing: torchvision's own message says so
        except IDXFormatError as err:
            return IDXFormatError(f"{name}: {err} Replace the file.{source}")
        if values.dtype != torch.uint8:
            return IDXFormatError(
                f"{name}: {str(path)!r} holds {values.dtype} values; the published "
                f"files hold uint8 (IDX type 0x08). Replace the file.{source}"
            )
        shapes[file] = tuple(values.shape)
    for split in ("train", "t10k"):
        images = shapes[f"{split}-images-idx3-ubyte"]
        labels = shapes[f"{split}-labels-idx1-ubyte"]
        if len(images) != 3 or len(labels) != 1 or images[0] != labels[0]:
            return IDXFormatError(
                f"{name}: {str(raw)!r} holds {split}-images-idx3-ubyte of shape "
                f"{images} and {split}-labels-idx1-ubyte of shape {labels}; expected "
                "(N, H, W) images and (N,) labels of the same N. Replace the two "
                "files with a matching pair."
            )
    return None


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
    refresh: set[Path] = set()
    for file in IDX_FILES:
        archive = _archive_of(file, root, raw)
        target = raw / file
        if target.is_file():
            # A .gz newer than its decompressed copy was replaced: decompress again.
            if archive is not None and archive.stat().st_mtime > target.stat().st_mtime:
                to_decompress.append(archive)
                refresh.add(archive)
        elif archive is not None:
            to_decompress.append(archive)
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
        except IDXFormatError as err:  # decompressed, but not a valid IDX file
            raise IDXFormatError(
                f"{name}: {err} Replace it (nothing was decompressed from it)."
            ) from err
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise IDXFormatError(
                f"{name}: cannot decompress {str(archive)!r} ({type(err).__name__}: "
                f"{err}); the file is probably truncated, replace it."
            ) from err
        except OSError as err:
            if archive in refresh:
                continue  # a read-only root: keep the copy already there
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
            dataset = self.cls(
                root=str(root),
                train=split == "train",
                transform=transform,
                download=options.download,
            )
        except (RuntimeError, AssertionError, TypeError) as err:
            # torchvision's reader validates by assert, dtype (TypeError) and reshape
            # (RuntimeError), naming no file; "Dataset not found" and downloads are
            # RuntimeErrors too.
            diagnosis = _diagnose(self.name, root, raw)
            if diagnosis is not None:
                raise diagnosis from err
            if isinstance(err, RuntimeError):
                raise DatasetNotFoundError(
                    f"{self.name}: {err} (root {str(root)!r})."
                ) from err
            raise IDXFormatError(
                f"{self.name}: torchvision cannot parse the IDX files in "
                f"{str(raw)!r}; check them with lightly_simmim.data.read_idx."
            ) from err
        if len(dataset.data) != len(dataset.targets):
            # torchvision pairs images and labels without comparing the counts.
            diagnosis = _diagnose(self.name, root, raw)
            if diagnosis is not None:
                raise diagnosis
        labelled: LabelledDataset = dataset  # torchvision's classes are untyped
        return labelled

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
