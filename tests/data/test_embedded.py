"""Tests for lightly_simmim.data.embedded: the Fashion-MNIST subset in the package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightly_simmim.data import (
    FASHION_MNIST_CLASSES,
    EmbeddedFashionMNIST,
    build_dataset,
    load_embedded_fashion_mnist,
    num_classes,
)


@pytest.mark.parametrize(
    "train, size, per_class", [(True, 10_000, 1_000), (False, 2_000, 200)]
)
def test_load_embedded_fashion_mnist__sizes_and_balanced_labels(
    train: bool, size: int, per_class: int
) -> None:
    images, labels = load_embedded_fashion_mnist(train=train)
    assert images.dtype == torch.uint8
    assert images.shape == (size, 28, 28)
    assert labels.dtype == torch.int64
    assert labels.shape == (size,)
    assert torch.bincount(labels, minlength=10).tolist() == [per_class] * 10
    assert int(images.max()) > 200  # real pictures, not an empty array


def test_build_dataset__embedded_default_gives_grayscale_pil_and_int_labels() -> None:
    dataset = build_dataset("fashion-mnist-embedded", train=False)
    assert isinstance(dataset, EmbeddedFashionMNIST)
    assert len(dataset) == 2_000
    image, label = dataset[0]
    assert isinstance(image, Image.Image)
    assert (image.mode, image.size) == ("L", (28, 28))
    assert isinstance(label, int) and 0 <= label < 10
    np.testing.assert_array_equal(np.asarray(image), dataset.data[0].numpy())
    assert dataset.classes == list(FASHION_MNIST_CLASSES)
    assert num_classes("fashion-mnist-embedded") == 10


def test_build_dataset__embedded_applies_transform_and_warns_on_root(
    tmp_path: Path,
) -> None:
    with pytest.warns(UserWarning, match="ignores root") as record:
        dataset = build_dataset(
            "fashion-mnist-embedded", root=tmp_path, transform=lambda im: im.size
        )
    # Attributed to the caller (this file), not to a frame inside the package.
    assert record[0].filename == __file__
    assert dataset[3][0] == (28, 28)
