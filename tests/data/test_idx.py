"""Tests for lightly_simmim.data.idx: the IDX reader against hand-written files."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lightly_simmim.data import IDXFormatError, read_idx

IdxWriter = Callable[[np.ndarray, int], bytes]


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
    tmp_path: Path,
    make_idx: IdxWriter,
    array: np.ndarray,
    type_code: int,
    compress: bool,
) -> None:
    data = make_idx(array, type_code)
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
    tmp_path: Path,
    make_idx: IdxWriter,
    corrupt: Callable[[bytes], bytes],
    message: str,
) -> None:
    good = make_idx(np.zeros((3, 4, 4), dtype=np.uint8), 0x08)
    path = tmp_path / "bad-images-idx3-ubyte.gz"
    path.write_bytes(corrupt(good))
    with pytest.raises(IDXFormatError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)
