import gzip
import io
import socket
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tv_datasets

from lightly_simmim.data import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    CorruptImageError,
    DatasetNotFoundError,
    EmbeddedFashionMNIST,
    IDXFormatError,
    ImageFolderDataset,
    build_dataset,
    load_embedded_fashion_mnist,
    num_classes,
    read_idx,
)

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
NEEDS_ROOT = [name for name in DATASETS if name != "fashion-mnist-embedded"]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing in this module may reach the network: any connection attempt fails loudly.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --------------------------------------------------------------------------- helpers


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    # Written out from the format description, independently of read_idx: magic
    # 00 00 TT NN, NN big-endian uint32 sizes, big-endian values.
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    data = _idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _fake_mnist(
    folder: Path, n_train: int = 20, n_test: int = 8, compress: bool = True
):
    """Writes the four MNIST-style IDX files with random content into `folder`."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if compress else ""
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


def _png(path: Path, mode: str = "RGB", size: int = 8, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).save(path)


def _truncated_jpeg(path: Path) -> None:
    # A real JPEG cut short: PIL opens it and Image.verify() passes, only a decode
    # fails -- the corruption an interrupted copy leaves behind.
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    image = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: int(len(data) * 0.8)])


def _messy_folder(root: Path) -> Path:
    """root/train/{cat,dog}: 3 + 2 good images, a truncated .jpg and a .txt."""
    _png(root / "train" / "cat" / "a.png", seed=1)
    _png(root / "train" / "cat" / "b.png", mode="L", seed=2)  # grayscale source
    _png(root / "train" / "cat" / "nested" / "c.PNG", seed=3)  # upper-case suffix
    _truncated_jpeg(root / "train" / "cat" / "broken.jpg")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "cat" / ".hidden.png").write_bytes(b"ignored")
    _png(root / "train" / "dog" / "d.png", seed=4)
    _png(root / "train" / "dog" / "e.png", seed=5)
    _png(root / "val" / "dog" / "f.png", seed=6)
    return root


# ----------------------------------------------------------------- embedded dataset


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
    with pytest.warns(UserWarning, match="ignores root"):
        dataset = build_dataset(
            "fashion-mnist-embedded", root=tmp_path, transform=lambda im: im.size
        )
    assert dataset[3][0] == (28, 28)


# ------------------------------------------------------------------------ IDX reader


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize(
    "array, type_code",
    [
        (np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4), 0x08),
        (np.array([[-7, 1 << 20], [3, -(1 << 30)]], dtype=np.int32), 0x0C),
        (np.array([0.5, -2.25, 1e6], dtype=np.float32), 0x0D),
    ],
)
def test_read_idx__round_trips_a_written_file(
    tmp_path: Path, array: np.ndarray, type_code: int, compress: bool
) -> None:
    data = _idx_bytes(array, type_code)
    path = tmp_path / "tiny.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    from_path = read_idx(path)
    with path.open("rb") as f:
        from_file = read_idx(f)
    for tensor in (from_path, from_file):
        assert tensor.shape == array.shape
        np.testing.assert_array_equal(tensor.numpy(), array)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: b"\x08\x03" + d[2:], "not an IDX file"),
        (lambda d: d[:2] + b"\x42" + d[3:], "unknown IDX type"),
        (lambda d: d[:10], "header truncated"),
        (lambda d: d[:-5], "holds"),
        (lambda d: d + b"\x00", "holds"),
        (lambda d: gzip.compress(d)[:-12], "corrupt gzip"),
        (lambda d: b"", "not an IDX file"),
    ],
    ids=["magic", "type", "header", "short-data", "trailing", "gzip", "empty"],
)
def test_read_idx__rejects_a_corrupt_file(
    tmp_path: Path, corrupt, message: str
) -> None:
    good = _idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8))
    path = tmp_path / "bad-images-idx3-ubyte.gz"
    path.write_bytes(corrupt(good))
    with pytest.raises(IDXFormatError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------- MNIST family from a root


@pytest.mark.parametrize(
    "name, folder, cls",
    [
        ("fashion-mnist", "FashionMNIST", tv_datasets.FashionMNIST),
        ("mnist", "MNIST", tv_datasets.MNIST),
    ],
)
def test_build_dataset__mnist_family_from_gz_files_in_root(
    tmp_path: Path, name: str, folder: str, cls: type
) -> None:
    arrays = _fake_mnist(tmp_path, n_train=20, n_test=8)
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


def test_build_dataset__fashion_mnist_from_torchvision_layout(tmp_path: Path) -> None:
    _fake_mnist(tmp_path / "FashionMNIST" / "raw", n_train=12, compress=False)
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
    tmp_path: Path,
) -> None:
    _fake_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks t10k-images-idx3-ubyte"):
        build_dataset("fashion-mnist", root=tmp_path)


def test_build_dataset__fashion_mnist_truncated_gz_is_format_error(
    tmp_path: Path,
) -> None:
    _fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(IDXFormatError, match=r"train-images-idx3-ubyte\.gz"):
        build_dataset("fashion-mnist", root=tmp_path)


@pytest.mark.parametrize("name", NEEDS_ROOT)
def test_build_dataset__root_none_is_a_clear_error(name: str) -> None:
    with pytest.raises(DatasetNotFoundError, match="no root given") as info:
        build_dataset(name)
    assert "Expected" in str(info.value)


# --------------------------------------------------------------- CIFAR / STL roots


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


# -------------------------------------------------------------------- dataset names


def test_build_dataset__unknown_name_lists_valid_names_and_suggests() -> None:
    with pytest.raises(ValueError, match="Did you mean 'fashion-mnist'") as info:
        build_dataset("fashion_mnist")
    for name in DATASETS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="Did you mean 'cifar10'"):
        num_classes("CIFAR10")


def test_datasets__describes_every_name_in_one_line() -> None:
    assert set(DATASETS) == {
        "fashion-mnist-embedded",
        "fashion-mnist",
        "mnist",
        "cifar10",
        "cifar100",
        "stl10",
        "image-folder",
        "imagenet",
    }
    for description in DATASETS.values():
        assert description and "\n" not in description
    expected = {"fashion-mnist": 10, "mnist": 10, "cifar10": 10, "cifar100": 100}
    for name, count in {**expected, "stl10": 10}.items():
        assert num_classes(name) == count


# -------------------------------------------------------------------- image folders


def test_image_folder__skips_corrupt_and_non_image_files_with_one_warning(
    tmp_path: Path,
) -> None:
    root = _messy_folder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = build_dataset("image-folder", root=root)
    user_warnings = [w for w in caught if issubclass(w.category, UserWarning)]
    assert len(user_warnings) == 1
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


def test_image_folder__on_corrupt_error_names_the_file(tmp_path: Path) -> None:
    root = _messy_folder(tmp_path)
    with pytest.raises(CorruptImageError) as info:
        build_dataset("image-folder", root=root, on_corrupt="error")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "cat/broken.jpg" in message
    assert "on_corrupt='skip'" in message


def test_build_dataset__check_images_false_trusts_the_files(tmp_path: Path) -> None:
    root = _messy_folder(tmp_path)
    with pytest.warns(UserWarning, match="without an image extension"):
        dataset = build_dataset("image-folder", root=root, check_images=False)
    # Nothing decoded at construction: the truncated JPEG is still listed (only the
    # .txt is dropped, by its extension), and fails only when it is loaded.
    assert len(dataset) == 6


def test_image_folder__split_layout_shares_labels_and_applies_transform(
    tmp_path: Path,
) -> None:
    for name in ("ant", "bee", "cow"):
        _png(tmp_path / "train" / name / "x.png", mode="L")
    _png(tmp_path / "val" / "cow" / "y.png", mode="L", size=5)  # no ant/bee in val
    dataset = build_dataset(
        "imagenet", root=tmp_path, train=False, transform=lambda im: (im.mode, im.size)
    )
    assert dataset.classes == ["ant", "bee", "cow"]
    assert len(dataset) == 1
    assert dataset[0] == (("RGB", (5, 5)), 2)  # label from the training class list
    assert num_classes("imagenet", root=tmp_path) == 3


def test_image_folder__flat_root_serves_both_splits_and_warns_for_eval(
    tmp_path: Path,
) -> None:
    _png(tmp_path / "a" / "1.png")
    _png(tmp_path / "b" / "2.jpeg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the training split
        train = ImageFolderDataset(tmp_path, train=True)
    with pytest.warns(UserWarning, match="same images"):
        val = ImageFolderDataset(tmp_path, train=False)
    assert train.samples == val.samples and len(train) == 2
    assert num_classes("image-folder", root=tmp_path) == 2


def test_image_folder__eval_class_missing_from_train_is_error(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "a" / "1.png")
    _png(tmp_path / "val" / "zebra" / "2.png")
    with pytest.raises(ValueError, match="zebra"):
        build_dataset("image-folder", root=tmp_path, train=False)


def test_image_folder__no_valid_images_is_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("text")
    with pytest.raises(DatasetNotFoundError, match="no image files"):
        build_dataset("image-folder", root=tmp_path)
    _truncated_jpeg(tmp_path / "a" / "bad.jpg")
    with pytest.raises(CorruptImageError, match="No image in this folder"):
        build_dataset("image-folder", root=tmp_path, on_corrupt="skip")


def test_image_folder__loose_files_without_class_folders_is_error(
    tmp_path: Path,
) -> None:
    _png(tmp_path / "val" / "1.png")  # e.g. ImageNet's unsorted val images
    with pytest.raises(DatasetNotFoundError, match="no class folders") as info:
        build_dataset("imagenet", root=tmp_path, train=False)
    assert "1 files lie directly in it" in str(info.value)


def test_image_folder__missing_root_and_download_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        build_dataset("image-folder", root=tmp_path / "missing")
    with pytest.raises(DatasetNotFoundError, match="no root given"):
        num_classes("imagenet")
    with pytest.raises(ValueError, match="cannot be downloaded"):
        build_dataset("imagenet", root=tmp_path, download=True)
    with pytest.raises(ValueError, match="on_corrupt"):
        ImageFolderDataset(tmp_path, on_corrupt="ignore")  # type: ignore[arg-type]
