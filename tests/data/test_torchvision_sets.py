"""Tests for lightly_simmim.data.torchvision_sets: CIFAR / STL roots and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightly_simmim.data import DatasetNotFoundError, build_dataset, num_classes


def test_build_dataset__cifar10_missing_folder_names_expected_layout(
    tmp_path: Path,
) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        build_dataset("cifar10", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "batches.meta" in message
    assert "download: true" in message


def test_build_dataset__cifar10_wrong_checksum_is_not_found_error(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for file in [
        *(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
    ]:
        (folder / file).write_bytes(b"not the real file")
    with pytest.raises(DatasetNotFoundError, match="MD5"):
        build_dataset("cifar10", root=tmp_path)


def test_build_dataset__stl10_archive_in_root_says_extract_it(tmp_path: Path) -> None:
    (tmp_path / "stl10_binary.tar.gz").write_bytes(b"an archive, unextracted")
    with pytest.raises(DatasetNotFoundError, match="extract it") as info:
        build_dataset("stl10", root=tmp_path, train=False)
    assert "test_X.bin" in str(info.value)


@pytest.mark.parametrize("name, count", [("cifar10", 10), ("cifar100", 100)])
def test_num_classes__cifar_without_root(name: str, count: int) -> None:
    assert num_classes(name) == count
    assert num_classes("stl10") == 10
