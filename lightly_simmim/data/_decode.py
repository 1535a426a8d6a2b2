"""Decoding image files, and telling an undecodable one apart without crashing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

__all__ = ["decode_problems", "describe_error", "open_rgb"]

# Files per thread-pool task: one future per file would cost gigabytes on ImageNet.
_CHUNK = 256


def describe_error(error: BaseException) -> str:
    """``"OSError: image file is truncated"``: the error's type and text, one line."""
    return " ".join(f"{type(error).__name__}: {error}".split())


def open_rgb(path: Path) -> Image.Image:
    """Decodes an image file fully, as RGB.

    Raises:
        Exception: Whatever PIL raises for an unreadable file: ``OSError`` (a
            truncated file, an unknown format), ``SyntaxError``, ``ValueError``,
            ``struct.error``, ``DecompressionBombError`` and more, by plugin.
    """
    with Image.open(path) as file:
        image: Image.Image = file.convert("RGB")
    return image


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
    # Every exception means "this file is unusable"; see `open_rgb` for the zoo.
    except Exception as err:
        return describe_error(err)
    return None


def _decode_chunk(paths: Sequence[Path]) -> list[str | None]:
    return [_decode_problem(path) for path in paths]


def decode_problems(paths: Sequence[Path]) -> list[str | None]:
    """Decodes every file once, in a thread pool.

    Args:
        paths: Image files.

    Returns:
        Per file, in order: why it cannot be decoded, or None if it can.
    """
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    if not chunks:
        return []
    # Threads suffice: PIL releases the GIL while it decodes.
    workers = min(32, (os.cpu_count() or 1) + 4, len(chunks))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_decode_chunk, chunks)
        return [problem for chunk in results for problem in chunk]
