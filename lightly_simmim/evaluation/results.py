"""Evaluation results as JSON files, written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_results(
    results: Mapping[str, Any], output_dir: str | os.PathLike[str], name: str
) -> Path:
    """Writes ``results`` to ``<output_dir>/<name>.json``, atomically.

    The JSON is written to a temporary file in the same folder and moved over the
    target with ``os.replace``, so a reader (a benchmark table, a second process)
    sees either the old file or the complete new one, never a half-written file.

    Args:
        results: JSON-serialisable mapping, e.g. ``{"top1": 81.2, "top5": 95.0}``.
        output_dir: Folder to write into; created if missing.
        name: File name without ``.json`` (``"knn"``, ``"linear"``, ``"finetune"``).

    Returns:
        The path of the written file.

    Raises:
        ValueError: If ``name`` is empty or contains a path separator.
        TypeError: If ``results`` is not JSON-serialisable.
    """
    if not name or Path(name).name != name or name in {".", ".."}:
        raise ValueError(f"name must be a plain file name, got {name!r}.")
    # Serialise first: a TypeError must not leave a temporary file behind.
    text = json.dumps(dict(results), indent=2, sort_keys=True) + "\n"
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.json"
    # A unique name in the same folder (same file system, so os.replace is atomic),
    # opened with "x" so that it gets the usual umask permissions.
    tmp = folder / f".{name}.json.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return target
