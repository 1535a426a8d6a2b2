"""Image folders: one sub-folder per class, read as RGB images.

Registered as the ``image-folder`` dataset and, for ImageNet-1k laid out that way,
``imagenet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, get_args

from PIL import Image
from torch.utils.data import Dataset

from lightly_simmim.data._decode import decode_problems, describe_error, open_rgb
from lightly_simmim.data._folder_layout import (
    IMAGE_EXTENSIONS,
    IMAGE_FOLDER_LAYOUT,
    class_folders,
    class_source,
    resolve_split,
    scan_images,
)
from lightly_simmim.data._roots import require_root
from lightly_simmim.data._warn import warn_user
from lightly_simmim.data.builder import (
    ClassCountingBuilder,
    DatasetOptions,
    LabelledDataset,
    OnCorrupt,
    Split,
    Transform,
)
from lightly_simmim.data.errors import CorruptImageError, DatasetNotFoundError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "image_folder", "imagenet"]

# What to do about a corrupt file, for messages: Python keyword, then config key.
_FIXES: Final = (
    "remove or replace the file, set on_corrupt='skip' (data.on_corrupt=skip) to "
    "train on without it, or check_images=True (data.check_images=true) to find "
    "every corrupt file before training."
)


class ImageFolderDataset(Dataset[tuple[object, int]]):
    """Images sorted into one folder per class, as ``(RGB image, label)`` pairs.

    Layout rule: if ``root`` has a sub-folder named ``train``, ``val`` or ``test``,
    the training split reads ``root/train/<class>/`` and the evaluation split reads
    ``root/val/<class>/`` (``root/test/<class>/`` if there is no ``val``). The class
    list, sorted by name, always comes from ``root/train`` when it exists, so labels
    mean the same in both splits; an evaluation class folder that is not a training
    class is an error, a missing one is fine. Otherwise the sub-folders of ``root``
    are the classes and serve both splits (a warning says so for ``train=False``:
    evaluating on the training images measures nothing). Files below a class folder
    are found recursively (symlinks followed); hidden files and folders (``.*``) are
    ignored; files directly in a split folder belong to no class and are ignored.

    Files with an extension in :data:`IMAGE_EXTENSIONS` (case-insensitive) are
    images; other files are skipped. An image PIL cannot decode is handled by
    ``on_corrupt``, whether it is found at construction (``check_images=True``: it
    is left out, and one ``UserWarning`` summarises everything skipped) or when it
    is loaded (``check_images=False``: item ``i`` is then the next decodable image
    after ``i``, wrapping around, the same one every time, and a ``UserWarning``
    names the file once per process).

    Args:
        root: The dataset root (see the layout rule).
        train: The training split if True, else the evaluation split.
        transform: Applied to each PIL image (mode ``"RGB"``).
        on_corrupt: ``"skip"`` undecodable images (and warn); ``"error"`` raises
            :class:`CorruptImageError`.
        check_images: Decode every image at construction, in a thread pool
            (default). This costs about 1.3 ms per ImageNet-sized JPEG per CPU core
            (ImageNet-1k train: some 15 minutes on 2 cores, 2 on 16); pass False for
            a large folder known to be clean.

    Attributes:
        root: The dataset root.
        split_dir: The folder this split was read from.
        classes: Class folder names, sorted; index = label.
        class_to_idx: Class name -> label.
        samples: ``(path, label)`` for every image kept, sorted by class then path.
        targets: The labels of ``samples``.
        skipped_non_image: Files skipped for their extension.
        corrupt_files: ``(path, reason)`` for images found undecodable: left out at
            construction, or (``check_images=False``) met when loading, in this
            process (each data loader worker keeps its own list).

    Raises:
        DatasetNotFoundError: ``root`` or the split folder is missing, there are no
            class folders, or no file with an image extension.
        CorruptImageError: With ``on_corrupt="error"``, an image is undecodable
            (at construction or, unchecked, at loading); with ``"skip"``, all are.
        ValueError: ``on_corrupt`` is invalid, or the evaluation split has a class
            folder the training split lacks.
    """

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        transform: Transform | None = None,
        on_corrupt: OnCorrupt = "skip",
        check_images: bool = True,
    ) -> None:
        if on_corrupt not in get_args(OnCorrupt):
            raise ValueError(
                f"on_corrupt must be 'skip' or 'error', got {on_corrupt!r}."
            )
        self.root = Path(root)
        self.train = train
        self.transform = transform
        self.on_corrupt: OnCorrupt = on_corrupt
        self.split_dir, class_dir, flat = resolve_split(self.root, train)
        self.classes: list[str] = class_folders(class_dir)
        self.class_to_idx: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self._check_classes(class_dir)
        if flat and not train:
            warn_user(
                f"image-folder: {str(self.root)!r} has no train/ and val/ folders, so "
                "the evaluation split is the same images as the training split."
            )

        candidates, self.skipped_non_image = scan_images(self.split_dir, self.classes)
        if not candidates:
            raise DatasetNotFoundError(
                f"image-folder: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the "
                f"class folders of {str(self.split_dir)!r}"
                + (
                    f" ({len(self.skipped_non_image)} other files skipped)"
                    if self.skipped_non_image
                    else ""
                )
                + f". {IMAGE_FOLDER_LAYOUT}"
            )
        problems: list[str | None] = (
            decode_problems([path for path, _ in candidates])
            if check_images
            else [None] * len(candidates)
        )
        self.corrupt_files: list[tuple[Path, str]] = [
            (path, problem)
            for (path, _), problem in zip(candidates, problems, strict=True)
            if problem is not None
        ]
        self.samples: list[tuple[Path, int]] = [
            sample
            for sample, problem in zip(candidates, problems, strict=True)
            if problem is None
        ]
        self.targets: list[int] = [label for _, label in self.samples]
        # Positions in `samples` found undecodable when loaded (check_images=False).
        self._unreadable: set[int] = set()

        if self.corrupt_files and (on_corrupt == "error" or not self.samples):
            raise CorruptImageError(
                f"image-folder: {self._describe_corrupt()} "
                + (
                    "Remove or replace them, or pass on_corrupt='skip' to leave them "
                    "out."
                    if self.samples
                    else "No image in this folder can be decoded."
                )
            )
        if self.corrupt_files or self.skipped_non_image:
            self._warn_skipped(len(candidates) + len(self.skipped_non_image))

    def _check_classes(self, class_dir: Path) -> None:
        """Raises if there are no classes, or the split has classes train lacks."""
        if not self.classes:
            loose = sum(1 for entry in class_dir.iterdir() if entry.is_file())
            raise DatasetNotFoundError(
                f"image-folder: no class folders in {str(class_dir)!r}"
                + (f" ({loose} files lie directly in it)" if loose else "")
                + ". Images must sit in one sub-folder per class (ImageNet's val "
                "images, for one, have to be sorted into class folders first). "
                + IMAGE_FOLDER_LAYOUT
            )
        unknown = sorted(set(class_folders(self.split_dir)) - set(self.classes))
        if unknown:
            raise ValueError(
                f"image-folder: {str(self.split_dir)!r} has class folders that "
                f"{str(class_dir)!r} lacks: {', '.join(unknown[:10])}"
                f"{' ...' if len(unknown) > 10 else ''}. Labels follow the training "
                "classes, so every evaluation class must also be a training class."
            )

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.split_dir))
        except ValueError:  # a symlink outside the split folder
            return str(path)

    def _describe_corrupt(self, limit: int = 5) -> str:
        shown = "; ".join(
            f"{self._relative(path)} ({reason})"
            for path, reason in self.corrupt_files[:limit]
        )
        more = len(self.corrupt_files) - limit
        tail = f"; and {more} more" if more > 0 else ""
        return (
            f"{len(self.corrupt_files)} image file(s) under {str(self.split_dir)!r} "
            f"cannot be decoded by PIL: {shown}{tail}."
        )

    def _warn_skipped(self, total: int) -> None:
        parts = []
        if self.corrupt_files:
            parts.append(self._describe_corrupt())
        if self.skipped_non_image:
            by_suffix: dict[str, int] = {}
            for path in self.skipped_non_image:
                suffix = path.suffix.lower() or "(no extension)"
                by_suffix[suffix] = by_suffix.get(suffix, 0) + 1
            listed = ", ".join(f"{s}: {n}" for s, n in sorted(by_suffix.items()))
            parts.append(
                f"{len(self.skipped_non_image)} file(s) without an image extension "
                f"({listed})."
            )
        skipped = len(self.corrupt_files) + len(self.skipped_non_image)
        warn_user(
            f"image-folder: skipped {skipped} of {total} files, kept "
            f"{len(self.samples)} images. " + " ".join(parts)
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[object, int]:
        """Returns ``(image, label)``: the RGB PIL image (transformed) and its class.

        Raises:
            IndexError: ``index`` is out of range.
            CorruptImageError: The image cannot be decoded and ``on_corrupt`` is
                ``"error"``, or (``"skip"``) no image of the split can be.
        """
        image, label = self._load(index)
        if self.transform is None:
            return image, label
        return self.transform(image), label

    def _load(self, index: int) -> tuple[Image.Image, int]:
        """The decoded sample at ``index``, or what ``on_corrupt`` says instead."""
        path, label = self.samples[index]  # raises IndexError, as Python's sequences
        position = index % len(self.samples)  # a negative index counts from the end
        if position not in self._unreadable:
            # Every exception: PIL raises many kinds for a bad file (see open_rgb).
            try:
                return open_rgb(path), label
            except Exception as err:
                self._unreadable_at_load(position, err)
        return self._replacement(position)

    def _unreadable_at_load(self, position: int, error: Exception) -> None:
        """Raises for ``on_corrupt="error"``; else records the file and warns."""
        path = self.samples[position][0]
        reason = describe_error(error)
        if self.on_corrupt == "error":
            raise CorruptImageError(
                f"image-folder: cannot decode {str(path)!r} ({reason}); {_FIXES}"
            ) from error
        self._unreadable.add(position)
        self.corrupt_files.append((path, reason))
        warn_user(
            f"image-folder: cannot decode {str(path)!r} ({reason}); returning the "
            f"next decodable image in its place ({len(self._unreadable)} undecodable "
            "file(s) met so far in this process). To stop this, remove or replace "
            "the file, or set check_images=True (data.check_images=true) to leave "
            "corrupt files out before training."
        )

    def _replacement(self, position: int) -> tuple[Image.Image, int]:
        """The first decodable sample after ``position``, wrapping around.

        A fixed rule rather than a random pick, so that an index always yields the
        same sample, in every epoch and every data loader worker.
        """
        count = len(self.samples)
        for step in range(1, count):
            candidate = (position + step) % count
            if candidate in self._unreadable:
                continue
            path, label = self.samples[candidate]
            try:
                return open_rgb(path), label
            except Exception as err:
                self._unreadable_at_load(candidate, err)
        raise CorruptImageError(
            f"image-folder: none of the {count} images under {str(self.split_dir)!r} "
            "can be decoded; replace them with intact copies."
        )


class _ImageFolderBuilder:
    """Builds :class:`ImageFolderDataset` from a root; image folders never download.

    Args:
        name: The dataset's registered name, for messages.
        description: One line for ``lightly-simmim list``.
    """

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description

    def __call__(
        self,
        root: Path | None,
        split: Split,
        transform: Transform | None,
        options: DatasetOptions,
    ) -> LabelledDataset:
        if options.download:
            raise ValueError(
                f"{self.name}: image folders cannot be downloaded; set download to "
                "false and point root at the images."
            )
        root = require_root(self.name, root, IMAGE_FOLDER_LAYOUT, downloadable=False)
        return ImageFolderDataset(
            root,
            train=split == "train",
            transform=transform,
            on_corrupt=options.on_corrupt,
            check_images=options.check_images,
        )

    def num_classes(self, root: Path | None) -> int:
        """The class folders of ``root/train`` (or of ``root``), without decoding."""
        path = require_root(self.name, root, IMAGE_FOLDER_LAYOUT, downloadable=False)
        if not path.is_dir():
            resolve_split(path, train=True)  # raises the missing-root error
        return len(class_folders(class_source(path)))


_FOLDER_DESCRIPTION: Final = (
    "one sub-folder per class: <root>/train/<class>/ and <root>/val/<class>/, or "
    "<root>/<class>/ for both splits; loaded as RGB"
)
#: The ``image-folder`` entry point.
image_folder: Final[ClassCountingBuilder] = _ImageFolderBuilder(
    "image-folder", f"Any image folder, {_FOLDER_DESCRIPTION}"
)
#: The ``imagenet`` entry point.
imagenet: Final[ClassCountingBuilder] = _ImageFolderBuilder(
    "imagenet",
    "ImageNet-1k as an image folder (alias of image-folder): " + _FOLDER_DESCRIPTION,
)
