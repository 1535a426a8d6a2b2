"""Tests for lightly_simmim.data.folder: image folders, their layout and bad files."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.functional import pil_to_tensor

from lightly_simmim.data import (
    CorruptImageError,
    DatasetNotFoundError,
    ImageFolderDataset,
    build_dataset,
    num_classes,
)

# write_png(path, mode="RGB", size=8, seed=0): see conftest.py.
PngWriter = Callable[..., None]


def test_image_folder__skips_corrupt_and_non_image_files_with_one_warning(
    messy_folder: Path,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = build_dataset("image-folder", root=messy_folder)
    user_warnings = [w for w in caught if issubclass(w.category, UserWarning)]
    assert len(user_warnings) == 1
    assert user_warnings[0].filename == __file__  # points at the caller
    message = str(user_warnings[0].message)
    assert "skipped 2 of 7 files" in message
    assert "1 image file(s)" in message and "cat/broken.jpg" in message
    assert "truncated" in message
    assert "(.txt: 1)" in message
    assert len(dataset) == 5
    assert [path.name for path, _ in dataset.corrupt_files] == ["broken.jpg"]
    assert [path.name for path in dataset.skipped_non_image] == ["notes.txt"]
    assert dataset.classes == ["cat", "dog"]
    assert dataset.targets == [0, 0, 0, 1, 1]
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.mode == "RGB" and image.size == (8, 8)
        assert isinstance(label, int)


def test_image_folder__on_corrupt_error_names_the_file(messy_folder: Path) -> None:
    with pytest.raises(CorruptImageError) as info:
        build_dataset("image-folder", root=messy_folder, on_corrupt="error")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "cat/broken.jpg" in message
    assert "on_corrupt='skip'" in message


def test_build_dataset__check_images_false_decodes_nothing_up_front(
    messy_folder: Path,
) -> None:
    with pytest.warns(UserWarning, match="without an image extension"):
        dataset = build_dataset("image-folder", root=messy_folder, check_images=False)
    # Nothing decoded at construction: the truncated JPEG is still listed (only the
    # .txt is dropped, by its extension); on_corrupt applies when it is loaded.
    assert len(dataset) == 6
    assert dataset.corrupt_files == []


# Corrupt files met while loading (check_images=False), through a real DataLoader.


@pytest.fixture
def unchecked_root(
    tmp_path: Path,
    write_png: PngWriter,
    write_truncated_jpeg: Callable[[Path], None],
) -> Path:
    """cat/{a.png, b_broken.jpg, c.png}, dog/d.png: sample 1 is a truncated JPEG."""
    write_png(tmp_path / "cat" / "a.png", seed=1)
    write_truncated_jpeg(tmp_path / "cat" / "b_broken.jpg")
    write_png(tmp_path / "cat" / "c.png", seed=3)
    write_png(tmp_path / "dog" / "d.png", seed=4)
    return tmp_path


def _loader(root: Path, on_corrupt: str) -> DataLoader[tuple[torch.Tensor, int]]:
    dataset = build_dataset(
        "image-folder",
        root=root,
        transform=pil_to_tensor,
        on_corrupt=on_corrupt,  # type: ignore[arg-type]
        check_images=False,
    )
    return DataLoader(dataset, batch_size=4, shuffle=False, num_workers=0)


def test_image_folder__unchecked_corrupt_file_is_skipped_when_loaded(
    unchecked_root: Path,
) -> None:
    loader = _loader(unchecked_root, "skip")
    with pytest.warns(UserWarning, match="cannot decode") as record:
        (images, labels), *rest = list(loader)
    assert rest == []
    messages = [str(w.message) for w in record if "cannot decode" in str(w.message)]
    assert len(messages) == 1
    assert str(unchecked_root / "cat" / "b_broken.jpg") in messages[0]
    assert "truncated" in messages[0]
    assert "1 undecodable file(s)" in messages[0]
    # The bad sample is replaced by the next one, c.png with its label: read here
    # with PIL directly, independently of the dataset.
    expected = [
        np.asarray(Image.open(unchecked_root / name).convert("RGB"))
        for name in ("cat/a.png", "cat/c.png", "cat/c.png", "dog/d.png")
    ]
    assert images.shape == (4, 3, 8, 8)  # (B, C, H, W) from pil_to_tensor
    for got, want in zip(images, expected, strict=True):
        np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), want)
    assert labels.tolist() == [0, 0, 0, 1]
    # Deterministic: a second epoch gives the same batch, without a new warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (again, again_labels), *_ = list(loader)
    assert torch.equal(again, images) and torch.equal(again_labels, labels)
    assert [p.name for p, _ in loader.dataset.corrupt_files] == ["b_broken.jpg"]


def test_image_folder__unchecked_corrupt_file_errors_when_loaded(
    unchecked_root: Path,
) -> None:
    loader = _loader(unchecked_root, "error")
    with pytest.raises(CorruptImageError) as info:
        list(loader)
    message = str(info.value)
    assert "\n" not in message
    assert str(unchecked_root / "cat" / "b_broken.jpg") in message
    assert "truncated" in message
    for fix in ("remove", "data.on_corrupt=skip", "data.check_images=true"):
        assert fix in message
    assert isinstance(info.value.__cause__, OSError)  # PIL's error, chained


def test_image_folder__unchecked_folder_of_only_corrupt_files_is_error(
    tmp_path: Path, write_truncated_jpeg: Callable[[Path], None]
) -> None:
    write_truncated_jpeg(tmp_path / "a" / "1.jpg")
    write_truncated_jpeg(tmp_path / "b" / "2.jpg")
    dataset = ImageFolderDataset(tmp_path, check_images=False)
    with (
        pytest.warns(UserWarning, match="cannot decode"),
        pytest.raises(CorruptImageError, match="none of the 2 images"),
    ):
        dataset[-1]
    with pytest.raises(IndexError):
        dataset[2]


# Layout.


def test_image_folder__split_layout_shares_labels_and_applies_transform(
    tmp_path: Path, write_png: PngWriter
) -> None:
    for name in ("ant", "bee", "cow"):
        write_png(tmp_path / "train" / name / "x.png", mode="L")
    write_png(tmp_path / "val" / "cow" / "y.png", mode="L", size=5)  # no ant/bee
    dataset = build_dataset(
        "imagenet", root=tmp_path, train=False, transform=lambda im: (im.mode, im.size)
    )
    assert dataset.classes == ["ant", "bee", "cow"]
    assert len(dataset) == 1
    assert dataset[0] == (("RGB", (5, 5)), 2)  # label from the training class list
    assert num_classes("imagenet", root=tmp_path) == 3


def test_image_folder__flat_root_serves_both_splits_and_warns_for_eval(
    tmp_path: Path, write_png: PngWriter
) -> None:
    write_png(tmp_path / "a" / "1.png")
    write_png(tmp_path / "b" / "2.jpeg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the training split
        train = ImageFolderDataset(tmp_path, train=True)
    with pytest.warns(UserWarning, match="same images"):
        val = ImageFolderDataset(tmp_path, train=False)
    assert train.samples == val.samples and len(train) == 2
    assert num_classes("image-folder", root=tmp_path) == 2


def test_image_folder__eval_class_missing_from_train_is_error(
    tmp_path: Path, write_png: PngWriter
) -> None:
    write_png(tmp_path / "train" / "a" / "1.png")
    write_png(tmp_path / "val" / "zebra" / "2.png")
    with pytest.raises(ValueError, match="zebra"):
        build_dataset("image-folder", root=tmp_path, train=False)


def test_image_folder__no_valid_images_is_error(
    tmp_path: Path, write_truncated_jpeg: Callable[[Path], None]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("text")
    with pytest.raises(DatasetNotFoundError, match="no image files"):
        build_dataset("image-folder", root=tmp_path)
    write_truncated_jpeg(tmp_path / "a" / "bad.jpg")
    with pytest.raises(CorruptImageError, match="No image in this folder"):
        build_dataset("image-folder", root=tmp_path, on_corrupt="skip")


def test_image_folder__loose_files_without_class_folders_is_error(
    tmp_path: Path, write_png: PngWriter
) -> None:
    write_png(tmp_path / "val" / "1.png")  # e.g. ImageNet's unsorted val images
    with pytest.raises(DatasetNotFoundError, match="no class folders") as info:
        build_dataset("imagenet", root=tmp_path, train=False)
    assert "1 files lie directly in it" in str(info.value)


def test_image_folder__missing_root_and_download_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        build_dataset("image-folder", root=tmp_path / "missing")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        num_classes("image-folder", root=tmp_path / "missing")
    with pytest.raises(DatasetNotFoundError, match="no root given"):
        num_classes("imagenet")
    with pytest.raises(ValueError, match="cannot be downloaded"):
        build_dataset("imagenet", root=tmp_path, download=True)
    with pytest.raises(ValueError, match="on_corrupt"):
        ImageFolderDataset(tmp_path, on_corrupt="ignore")  # type: ignore[arg-type]
