"""A seeded block that leaves the caller's random state untouched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Runs the block with torch seeded by ``seed``, then restores the RNG state.

    An evaluation inside a longer run (a benchmark, a callback) must be reproducible
    by itself and must not shift the random stream of what comes after it.

    Args:
        seed: Seed for the CPU generator and every CUDA generator.
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
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield
