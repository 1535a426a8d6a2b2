"""Datasets held in memory as one uint8 tensor, fetched a whole batch at a time.

The MNIST family (the embedded subset included) and CIFAR keep every image in one
array (``data``) with the labels beside it (``targets``); :func:`in_memory` turns such a
dataset (or an evenly spaced :class:`~torch.utils.data.Subset` of one) into an
:class:`InMemoryImages`, whose batches are ``(uint8 images (B, C, H, W), labels (B,))``
sliced in one indexing operation (``__getitems__``, which PyTorch's data loader calls
with a batch's indices). The augmentation then runs per batch on the training device
(:mod:`lightly_simmim.batch_transforms`): no worker, no PIL image per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

__all__ = ["InMemoryImages", "in_memory", "stack_batch"]

Batch = tuple[Tensor, Tensor]


class InMemoryImages(Dataset[Batch]):
    """uint8 images (N, C, H, W) and int64 labels (N,), fetched by batches.

    Args:
        images: uint8 (N, C, H, W).
        labels: int64 (N,).

    Raises:
        ValueError: On other dtypes or mismatched lengths.
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} "
                f"{tuple(images.shape)}."
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(f"{len(labels)} labels for {len(images)} images.")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> Batch:
        """One image (C, H, W) and its label (a 0-d tensor)."""
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """A whole batch: images (B, C, H, W) and labels (B,), one slice each."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[index]


def stack_batch(batch: object) -> Batch:
    """The data loader's ``collate_fn`` for :class:`InMemoryImages`: the batch
    ``__getitems__`` made is already stacked, so it is passed on as is.

    Raises:
        TypeError: For anything but an ``(images, labels)`` pair of tensors.
    """
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        images, labels = batch
        if isinstance(images, Tensor) and isinstance(labels, Tensor):
            return images, labels
    raise TypeError("stack_batch takes the (images, labels) of InMemoryImages.")


def _as_nchw(data: object) -> Tensor | None:
    """An image array as uint8 (N, C, H, W), or None for anything else."""
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if not isinstance(data, Tensor) or data.dtype != torch.uint8:
        return None
    if data.ndim == 3:  # (N, H, W) grayscale: MNIST
        return data.unsqueeze(1)
    if data.ndim == 4 and data.shape[-1] in (1, 3):  # (N, H, W, C): CIFAR
        return data.permute(0, 3, 1, 2).contiguous()
    return None


def in_memory(dataset: Dataset[object]) -> InMemoryImages | None:
    """The dataset as one uint8 tensor, if it already is one array in memory.

    Args:
        dataset: A dataset with ``data`` (uint8 images: (N, H, W) or (N, H, W, C),
            tensor or array) and ``targets``, without a transform of its own, or a
            ``Subset`` of one.

    Returns:
        The images and labels, or None for any other dataset (image folders,
        datasets that transform their images themselves).
    """
    indices: Tensor | None = None
    if isinstance(dataset, Subset):
        indices = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        dataset = dataset.dataset
    if getattr(dataset, "transform", None) is not None:
        return None
    images = _as_nchw(getattr(dataset, "data", None))
    targets = getattr(dataset, "targets", None)
    if images is None or targets is None:
        return None
    labels = torch.as_tensor(targets, dtype=torch.long)
    if labels.shape != images.shape[:1]:
        return None
    if indices is not None:
        images, labels = images[indices], labels[indices]
    return InMemoryImages(images, labels)
