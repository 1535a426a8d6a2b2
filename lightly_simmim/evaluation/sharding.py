"""Splitting evaluation data over the processes of a run, and gathering it back.

Lightning gives every process (rank) a ``DistributedSampler`` of its own unless the
loader already has one. For training that is what a fine-tune wants, but evaluation
and feature extraction must see every image exactly once: Lightning's validation
sampler pads the data with repeats up to a multiple of the process count, which
would count some images twice. :class:`ShardSampler` gives rank ``r`` of ``W`` the
images ``r, r + W, r + 2W, ...``, each once, and :func:`gather_shards` puts per-rank
results back into dataset order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sized

from torch import Tensor
from torch.utils.data import DistributedSampler

__all__ = ["ShardSampler", "gather_shards", "shard_size"]


def shard_size(dataset_size: int, num_replicas: int, rank: int) -> int:
    """How many of ``dataset_size`` indices rank ``rank`` of ``num_replicas`` gets."""
    return len(range(rank, dataset_size, num_replicas))


class ShardSampler(DistributedSampler[int]):
    """Indices ``rank, rank + num_replicas, ...`` in order, without repeats.

    A ``DistributedSampler`` subclass only so that Lightning keeps it (it replaces
    any other sampler of a distributed run); unlike its parent it neither shuffles
    nor pads, so shards differ in length by at most one.

    Args:
        dataset: The (map-style) dataset, for its length.
        num_replicas: Number of processes.
        rank: This process's global rank.
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=num_replicas,
            rank=rank,
            shuffle=False,
        )
        self.shard = range(rank, len(dataset), num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard)

    def __len__(self) -> int:
        return len(self.shard)


def gather_shards(
    local: Tensor,
    dataset_size: int,
    num_replicas: int,
    rank: int,
    all_gather: Callable[[Tensor], Tensor],
) -> Tensor:
    """Every rank's :class:`ShardSampler` results, in dataset order, on every rank.

    Args:
        local: (n_rank, ...) results of this rank's shard, in shard order.
        dataset_size: N, the length of the whole dataset.
        num_replicas: W, the number of processes.
        rank: This process's global rank.
        all_gather: The strategy's all-gather (``LightningModule.all_gather``):
            (n, ...) on every rank -> (W, n, ...), or the tensor itself for W = 1.

    Returns:
        (N, ...): row ``i`` is the result of dataset index ``i``.

    Raises:
        ValueError: If ``local`` does not hold this rank's shard size.
    """
    expected = shard_size(dataset_size, num_replicas, rank)
    if len(local) != expected:
        raise ValueError(
            f"Rank {rank} has {len(local)} results for a shard of {expected}."
        )
    if num_replicas == 1:
        return local
    # all_gather needs equal shapes: pad every shard to the longest (the first).
    longest = math.ceil(dataset_size / num_replicas)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: len(local)] = local
    gathered = all_gather(padded)  # (W, longest, ...)
    result = local.new_empty((dataset_size, *local.shape[1:]))
    for other in range(num_replicas):
        count = shard_size(dataset_size, num_replicas, other)
        # Shard r holds indices r, r + W, ...: a strided slice of the result.
        result[other::num_replicas] = gathered[other, :count].to(result.device)
    return result
