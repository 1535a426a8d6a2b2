"""Fixtures of the data tests: real files written into tmp_path.

(No network: the suite-wide ``_no_network`` guard of ``tests/conftest.py``.)"""

from __future__ import annotations

import gzip
import io
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# write_png(path, mode="RGB", size=8, seed=0)
PngWriter = Callable[..., None]
# fake_mnist(folder, n_train=20, n_test=8, compress=True) -> {"train": (x, y), ...}
MnistWriter = Callable[..., dict[str, tuple[np.ndarray, np.ndarray]]]


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file written out from the format description, independently of
    read_idx: magic ``00 00 TT NN``, NN big-endian uint32 sizes, big-endian values."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def make_idx() -> Callable[[np.ndarray, int], bytes]:
    return idx_bytes


@pytest.fixture
def fake_mnist() -> MnistWriter:
    """Writes the four MNIST-style IDX files with random content into a folder."""

    def write(
        folder: Path, n_train: int = 20, n_test: int = 8, compress: bool = True
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(0)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for prefix, n in (("train", n_train), ("t10k", n_test)):
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            labels = (np.arange(n) % 10).astype(np.uint8)
            suffix = ".gz" if compress else ""
            for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
                data = idx_bytes(array)
                path = folder / f"{prefix}-{kind}-ubyte{suffix}"
                path.write_bytes(gzip.compress(data) if compress else data)
            arrays[prefix] = (images, labels)
        return arrays

    return write


@pytest.fixture
def write_png() -> PngWriter:
    def write(path: Path, mode: str = "RGB", size: int = 8, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        shape = (size, size, 3) if mode == "RGB" else (size, size)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).save(path)

    return write


@pytest.fixture
def write_truncated_jpeg() -> Callable[[Path], None]:
    """A real JPEG cut short: PIL opens it and ``Image.verify()`` passes, only a
    decode fails -- the corruption an interrupted copy leaves behind."""

    def write(path: Path) -> None:
        rng = np.random.default_rng(1)
        buffer = io.BytesIO()
        image = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
        data = buffer.getvalue()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[: int(len(data) * 0.8)])

    return write


@pytest.fixture
def messy_folder(
    tmp_path: Path,
    write_png: PngWriter,
    write_truncated_jpeg: Callable[[Path], None],
) -> Path:
    """tmp_path/train/{cat,dog}: 3 + 2 good images, a truncated .jpg and a .txt."""
    root = tmp_path
    write_png(root / "train" / "cat" / "a.png", seed=1)
    write_png(root / "train" / "cat" / "b.png", mode="L", seed=2)  # grayscale
    write_png(root / "train" / "cat" / "nested" / "c.PNG", seed=3)  # upper case
    write_truncated_jpeg(root / "train" / "cat" / "broken.jpg")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "cat" / ".hidden.png").write_bytes(b"ignored")
    write_png(root / "train" / "dog" / "d.png", seed=4)
    write_png(root / "train" / "dog" / "e.png", seed=5)
    write_png(root / "val" / "dog" / "f.png", seed=6)
    return root
