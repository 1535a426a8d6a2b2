"""Reading IDX files, the container format of MNIST and Fashion-MNIST."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import IO, Final

import numpy as np
import torch
from torch import Tensor

from lightly_simmim.data.errors import IDXFormatError

__all__ = ["read_idx"]

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES: Final[Mapping[int, np.dtype[np.generic]]] = MappingProxyType(
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
