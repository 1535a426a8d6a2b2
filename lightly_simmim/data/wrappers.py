"""Datasets that wrap another dataset."""

from __future__ import annotations

from torch.utils.data import Dataset

from lightly_simmim.data.builder import ImageDataset, Transform

__all__ = ["TransformedDataset"]


class TransformedDataset(Dataset[tuple[object, int]]):
    """``(transform(image), label)`` for each ``(image, label)`` of a dataset.

    Lets one dataset (built, and for image folders decoded and checked, once) serve
    several uses with different transforms: pretraining views, the kNN memory bank,
    a fine-tune's augmentation and its evaluation.

    Args:
        dataset: Map-style dataset of ``(image, label)`` pairs.
        transform: Applied to the image; None returns it unchanged.
    """

    def __init__(self, dataset: ImageDataset, transform: Transform | None) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[object, int]:
        image, label = self.dataset[index]
        if self.transform is None:
            return image, int(label)
        return self.transform(image), int(label)
