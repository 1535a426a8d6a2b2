"""Checks and hints shared by the builders that read a dataset from a root folder."""

from __future__ import annotations

from pathlib import Path

from lightly_simmim.data.errors import DatasetNotFoundError

__all__ = ["DOWNLOAD_HINT", "parent_hint", "require_root"]

DOWNLOAD_HINT = (
    "Pass download=True (`download: true` in a config) to let torchvision download it."
)


def require_root(name: str, root: Path | None, layout: str, downloadable: bool) -> Path:
    """Returns ``root``, or raises the error for a dataset that needs one.

    Args:
        name: The dataset's name, for the message.
        root: The root the user gave, or None.
        layout: One or two sentences describing the expected layout.
        downloadable: Whether the message should mention ``download=True``.

    Returns:
        ``root``, when it is not None.

    Raises:
        DatasetNotFoundError: ``root`` is None.
    """
    if root is not None:
        return root
    raise DatasetNotFoundError(
        f"{name}: no root given; this dataset is read from a folder. {layout}"
        + (
            " Pass download=True (`download: true` in a config) with a root to let "
            "torchvision download it there."
            if downloadable
            else ""
        )
    )


def parent_hint(root: Path, data_folder: str) -> str:
    """A hint for the common slip of passing the data folder itself as the root.

    Args:
        root: The root the user gave.
        data_folder: The folder the dataset expects inside the root, e.g.
            ``"cifar-10-batches-py"``.

    Returns:
        A sentence starting with a space, or ``""`` if the root looks right.
    """
    if not root.is_dir():
        return ""
    if root.name == data_folder or (
        root.name == "raw" and root.parent.name == data_folder
    ):
        return f" {str(root)!r} looks like the data folder itself: pass its parent."
    return ""
