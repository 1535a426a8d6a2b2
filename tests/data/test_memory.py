"""In-memory datasets: one uint8 tensor, a batch per indexing operation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from lightly_simmim.data import EmbeddedFashionMNIST
from lightly_simmim.data.memory import InMemoryImages, in_memory, stack_batch


def test_in_memory__embedded_subset_and_its_subsets() -> None:
    dataset = EmbeddedFashionMNIST(train=False)
    memory = in_memory(dataset)
    assert memory is not None and len(memory) == len(dataset)
    assert memory.images.shape == (2000, 1, 28, 28)
    assert memory.images.dtype == torch.uint8
    assert torch.equal(memory.images[:, 0], dataset.data)
    part = in_memory(Subset(dataset, [5, 0, 7]))
    assert part is not None
    assert torch.equal(part.images[:, 0], dataset.data[[5, 0, 7]])
    assert part.labels.tolist() == [int(dataset.targets[i]) for i in (5, 0, 7)]


def test_in_memory__cifar_layout_is_channels_first() -> None:
    class CifarLike(torch.utils.data.Dataset[tuple[object, int]]):
        data = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
        targets = (3, 1)
        transform = None

        def __len__(self) -> int:
            return 2

    memory = in_memory(CifarLike())
    assert memory is not None and memory.images.shape == (2, 3, 4, 4)
    assert int(memory.images[1, 2, 3, 0]) == int(CifarLike.data[1, 3, 0, 2])


def test_in_memory__other_datasets_take_the_per_image_path() -> None:
    assert in_memory(TensorDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2))) is None
    transformed = EmbeddedFashionMNIST(train=False, transform=lambda image: image)
    assert in_memory(transformed) is None  # it transforms its images itself


def test_in_memory_images__loader_yields_whole_uint8_batches() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2)
    dataset = InMemoryImages(images.contiguous(), torch.arange(10))
    loader = DataLoader(dataset, batch_size=4, shuffle=True, collate_fn=stack_batch)
    batches = list(loader)
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    for batch_images, labels in batches:
        assert batch_images.dtype == torch.uint8
        assert torch.equal(batch_images[:, 0, 0, 0].long(), labels)
    with pytest.raises(ValueError, match="uint8"):
        InMemoryImages(torch.zeros(2, 1, 2, 2), torch.zeros(2))
