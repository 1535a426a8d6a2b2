"""Evaluation results as JSON files, written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightly_simmim.atomic import atomic_write

__all__ = ["JsonDict", "write_results"]

#: A JSON object as the evaluations and the benchmark pass it around: a result
#: (``{"top1": 81.2, ...}``), ``metrics.json``, a table row, YAML sections.
JsonDict = dict[str, Any]


def write_results(
    results: Mapping[str, Any], output_dir: str | os.PathLike[str], name: str
) -> Path:
    """Writes ``results`` to ``<output_dir>/<name>.json``, atomically.

    The JSON goes through :func:`lightly_simmim.atomic.atomic_write` (a
    temporary file in the same folder, fsynced, moved over the target), so a reader
    (a benchmark table, a second process) sees either the old file or the complete
    new one, never a half-written file.

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
    return atomic_write(Path(output_dir) / f"{name}.json", text.encode("utf-8"))
