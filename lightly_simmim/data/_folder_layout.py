"""Where an image folder's splits, classes and image files are.

The layout rule is documented on :class:`~lightly_simmim.data.ImageFolderDataset`;
this module finds the folders and files, :mod:`lightly_simmim.data.folder` loads them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, NamedTuple

from lightly_simmim.data.errors import DatasetNotFoundError

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_FOLDER_LAYOUT",
    "SplitFolders",
    "class_folders",
    "class_source",
    "resolve_split",
    "scan_images",
]

#: File name suffixes (lower case) that image folders read; other files are skipped.
IMAGE_EXTENSIONS: Final[tuple[str, ...]] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".pgm",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
)

IMAGE_FOLDER_LAYOUT: Final = (
    "Expected layout: one sub-folder per class holding that class's images, either "
    "per split (<root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg, or test/ "
    "instead of val/) or directly (<root>/<class>/*.jpg, then used for both splits). "
    "Image folders cannot be downloaded."
)


class SplitFolders(NamedTuple):
    """The folders one split of an image folder is read from."""

    #: The folder holding this split's class folders.
    split_dir: Path
    #: The folder whose sub-folders define the class list (and label order).
    class_dir: Path
    #: True when the root's class folders serve both splits.
    flat: bool


def resolve_split(root: Path, train: bool) -> SplitFolders:
    """Finds the folders of one split of an image folder root.

    Raises:
        DatasetNotFoundError: ``root`` is missing, or has split folders but not the
            one this split needs.
    """
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"image-folder: root {str(root)!r} "
            f"{'is not a folder' if root.exists() else 'does not exist'}. "
            f"{IMAGE_FOLDER_LAYOUT}"
        )
    splits = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    if not splits:
        return SplitFolders(root, root, True)
    split_dir = splits.get("train") if train else splits.get("val", splits.get("test"))
    if split_dir is None:
        wanted = "train" if train else "val (or test)"
        raise DatasetNotFoundError(
            f"image-folder: {str(root)!r} has split folders ({', '.join(splits)}) but "
            f"no {wanted} folder for the {'train' if train else 'evaluation'} split. "
            f"{IMAGE_FOLDER_LAYOUT}"
        )
    return SplitFolders(split_dir, class_source(root), False)


def class_source(root: Path) -> Path:
    """The folder whose sub-folders are the classes: root/train, else the split."""
    for split in ("train", "val", "test"):
        if (root / split).is_dir():
            return root / split
    return root


def class_folders(folder: Path) -> list[str]:
    """Names of the non-hidden sub-folders of ``folder``, sorted."""
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    )


def scan_images(
    split_dir: Path, classes: list[str]
) -> tuple[list[tuple[Path, int]], list[Path]]:
    """Lists the files below each class folder of a split, sorted.

    Files are found recursively (symlinks followed); hidden files and folders are
    ignored.

    Args:
        split_dir: The split folder.
        classes: Class folder names; index = label. Missing ones are fine.

    Returns:
        ``(images, others)``: ``(path, label)`` for every file with a suffix in
        :data:`IMAGE_EXTENSIONS` (any case), sorted by class then path, and the
        paths of the other files.
    """
    images: list[tuple[Path, int]] = []
    others: list[Path] = []
    for label, class_name in enumerate(classes):
        class_path = split_dir / class_name
        if not class_path.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(class_path, followlinks=True):
            # Sorted in place: os.walk then descends in sorted order.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith("."):
                    continue
                path = Path(dirpath) / filename
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    images.append((path, label))
                else:
                    others.append(path)
    return images, others
