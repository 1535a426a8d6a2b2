"""Seeded blocks that leave the caller's random state untouched."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_all(seed: int) -> None:
    """Seeds torch (CPU and CUDA), Python's ``random`` and NumPy's global generator.

    timm's augmentations draw from ``random`` (RandAugment, random erasing) and its
    ``Mixup`` from NumPy, torchvision's crops and flips from torch.
    """
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


@contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Runs the block with every generator seeded by ``seed``, then restores them.

    An evaluation inside a longer run (a benchmark, a callback) must be reproducible
    by itself and must not shift the random stream of what comes after it. torch,
    Python's ``random`` and NumPy are seeded (see :func:`seed_all`) and restored.

    Args:
        seed: Seed of every generator.
        device: The device the block computes on; its CUDA generator state is
            restored afterwards. None restores the CPU state and that of every CUDA
            device, if CUDA is already initialised (it is not initialised here, so
            that Lightning can still start processes by forking afterwards).
    """
    cuda: list[int] = []
    if device is None:
        if torch.cuda.is_initialized():  # type: ignore[no-untyped-call, unused-ignore]
            cuda = list(range(torch.cuda.device_count()))
    else:
        device = torch.device(device)
        if device.type == "cuda":
            index = device.index
            cuda = [torch.cuda.current_device() if index is None else index]
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=cuda):
            seed_all(seed)
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
