"""Tests for lightly_simmim.data.mnist: MNIST and Fashion-MNIST from a root folder."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from torchvision import datasets as tv_datasets

from lightly_simmim.data import (
    FASHION_MNIST_CLASSES,
    DatasetNotFoundError,
    IDXFormatError,
    build_dataset,
    num_classes,
)

# fake_mnist(folder, n_train=20, n_test=8, compress=True): see conftest.py.
MnistWriter = Callable[..., dict[str, tuple[np.ndarray, np.ndarray]]]

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.mark.parametrize(
    "name, folder, cls",
    [
        ("fashion-mnist", "FashionMNIST", tv_datasets.FashionMNIST),
        ("mnist", "MNIST", tv_datasets.MNIST),
    ],
)
def test_build_dataset__mnist_family_from_gz_files_in_root(
    tmp_path: Path, fake_mnist: MnistWriter, name: str, folder: str, cls: type
) -> None:
    arrays = fake_mnist(tmp_path, n_train=20, n_test=8)
    train = build_dataset(name, root=tmp_path)
    assert isinstance(train, cls)
    assert len(train) == 20
    image, label = train[13]
    assert (image.mode, image.size) == ("L", (28, 28))
    np.testing.assert_array_equal(np.asarray(image), arrays["train"][0][13])
    assert label == 3 and isinstance(label, int)
    # Decompressed once into torchvision's layout, and no temporary folder left.
    raw = tmp_path / folder / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(IDX_FILES)
    # The second build reads the decompressed files (the .gz are no longer needed).
    for file in tmp_path.glob("*.gz"):
        file.unlink()
    test = build_dataset(name, root=str(tmp_path), train=False, transform=np.asarray)
    assert len(test) == 8
    np.testing.assert_array_equal(test[5][0], arrays["t10k"][0][5])
    assert num_classes(name) == 10


def test_build_dataset__fashion_mnist_from_torchvision_layout(
    tmp_path: Path, fake_mnist: MnistWriter
) -> None:
    fake_mnist(tmp_path / "FashionMNIST" / "raw", n_train=12, compress=False)
    dataset = build_dataset("fashion-mnist", root=tmp_path)
    assert len(dataset) == 12
    assert dataset.classes == list(FASHION_MNIST_CLASSES)


def test_build_dataset__fashion_mnist_missing_root_names_path_and_layout(
    tmp_path: Path,
) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        build_dataset("fashion-mnist", root=root)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(root) in message
    assert "does not exist" in message
    assert "<root>/FashionMNIST/raw/" in message
    assert "*-ubyte.gz" in message
    assert "download: true" in message


def test_build_dataset__fashion_mnist_partial_root_lists_missing_files(
    tmp_path: Path, fake_mnist: MnistWriter
) -> None:
    fake_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks t10k-images-idx3-ubyte"):
        build_dataset("fashion-mnist", root=tmp_path)


def test_build_dataset__mnist_data_folder_as_root_suggests_its_parent(
    tmp_path: Path, fake_mnist: MnistWriter
) -> None:
    fake_mnist(tmp_path / "MNIST" / "raw", compress=False)
    with pytest.raises(DatasetNotFoundError, match="pass its parent"):
        build_dataset("mnist", root=tmp_path / "MNIST")


def test_build_dataset__fashion_mnist_truncated_gz_is_format_error(
    tmp_path: Path, fake_mnist: MnistWriter
) -> None:
    fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(IDXFormatError, match=r"train-images-idx3-ubyte\.gz"):
        build_dataset("fashion-mnist", root=tmp_path)


def test_build_dataset__empty_gz_is_refused_and_nothing_is_cached(
    tmp_path: Path, fake_mnist: MnistWriter
) -> None:
    """A decompressed copy is checked before it is kept: a broken one used to be
    read on every later run, also after the .gz was replaced with a good one."""
    fake_mnist(tmp_path)
    good = (tmp_path / "train-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(IDXFormatError) as info:
        build_dataset("fashion-mnist", root=tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz: not an IDX file" in message
    assert "nothing was decompressed from it" in message
    raw = tmp_path / "FashionMNIST" / "raw"
    assert not (raw / "train-images-idx3-ubyte").exists()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(good)
    assert len(build_dataset("fashion-mnist", root=tmp_path)) == 20


def test_build_dataset__a_replaced_gz_is_decompressed_again(
    tmp_path: Path, fake_mnist: MnistWriter
) -> None:
    fake_mnist(tmp_path, n_train=20)
    build_dataset("fashion-mnist", root=tmp_path)  # decompresses
    fake_mnist(tmp_path, n_train=30)  # newer .gz files replace the old ones
    for archive in tmp_path.glob("*.gz"):
        os.utime(archive, (time.time() + 10, time.time() + 10))
    assert len(build_dataset("fashion-mnist", root=tmp_path)) == 30


@pytest.mark.parametrize(
    ("file", "content", "expected"),
    [
        ("t10k-labels-idx1-ubyte", None, "t10k-labels-idx1-ubyte: not an IDX file"),
        (
            "train-labels-idx1-ubyte",
            np.zeros(7, dtype=np.uint8),
            "train-images-idx3-ubyte of shape (20, 28, 28) and "
            "train-labels-idx1-ubyte of shape (7,)",
        ),
        (
            "t10k-images-idx3-ubyte",
            np.zeros((8, 28, 28), dtype=np.int8),
            "holds torch.int8 values; the published files hold uint8",
        ),
    ],
    ids=["not-idx", "counts-differ", "int8"],
)
def test_build_dataset__a_broken_decompressed_file_is_named(
    tmp_path: Path,
    fake_mnist: MnistWriter,
    make_idx: Callable[..., bytes],
    file: str,
    content: np.ndarray | None,
    expected: str,
) -> None:
    """torchvision's own errors (an assert, a reshape, a dtype TypeError) name no
    file; the message names the file, what is wrong and where it came from."""
    raw = tmp_path / "FashionMNIST" / "raw"
    fake_mnist(raw, compress=False)
    if content is None:
        (raw / file).write_bytes(b"junk\n")
    else:
        code = 0x09 if content.dtype == np.int8 else 0x08
        (raw / file).write_bytes(make_idx(content, code))
    with pytest.raises(IDXFormatError) as info:
        build_dataset("fashion-mnist", root=tmp_path, train=file.startswith("train"))
    assert "fashion-mnist: " in str(info.value)
    assert expected in str(info.value)
