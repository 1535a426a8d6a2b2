"""The fine-tune's data loaders, made by each process of the run for its own share."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightly_simmim.data import TransformedDataset
from lightly_simmim.evaluation._rng import seed_all
from lightly_simmim.evaluation.sharding import ShardSampler
from lightly_simmim.evaluation.transforms import Transform

__all__ = ["FinetuneData"]


class FinetuneData(pl.LightningDataModule):
    """Training and validation loaders of a fine-tune on one or many processes.

    Each process (rank ``r`` of ``W``) builds its loaders once the Trainer knows the
    ranks:

    - training: a ``DistributedSampler`` (shuffled with ``seed`` and the epoch, the
      same permutation on every rank) with full batches only, so one optimiser step
      sees ``W x batch_size`` images and every step has the same weight (mixup also
      needs even batches);
    - validation: a :class:`~lightly_simmim.evaluation.sharding.ShardSampler`, so
      every image is scored exactly once over all ranks.

    The random augmentations, mixing and drop path of rank ``r`` draw from
    ``seed + r`` (seeded in :meth:`setup`), so that ranks do not repeat each other's
    draws.

    Args:
        train: ``(image, label)`` pairs to train on.
        val: ``(image, label)`` pairs to evaluate on after every epoch.
        train_transform: Applied to each training image; None if the dataset
            already yields augmented tensors.
        eval_transform: Applied to each validation image, or None.
        batch_size: Images per process and step.
        num_workers: Data loader workers per process.
        seed: Seed of the shuffling and of rank 0's augmentation stream.
    """

    def __init__(
        self,
        train: Dataset[tuple[Any, int]],
        val: Dataset[tuple[Any, int]],
        train_transform: Transform | None,
        eval_transform: Transform | None,
        *,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train = TransformedDataset(train, train_transform)
        self.val = TransformedDataset(val, eval_transform)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    def _ranks(self) -> tuple[int, int]:
        """(world size, global rank); (1, 0) outside a Trainer."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def setup(self, stage: str) -> None:
        """Seeds this rank's random streams (see the class docstring)."""
        seed_all(self.seed + self._ranks()[1])

    def train_dataloader(self) -> DataLoader[Any]:
        """This rank's shuffled share of the training set, in full batches.

        Raises:
            ValueError: If the share is smaller than one batch.
        """
        world, rank = self._ranks()
        sampler: DistributedSampler[tuple[Any, int]] = DistributedSampler(
            self.train,
            num_replicas=world,
            rank=rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        if len(sampler) < self.batch_size:
            raise ValueError(
                f"Each of the {world} processes gets {len(sampler)} training "
                f"images, fewer than one batch of {self.batch_size}; lower the "
                f"recipe's batch_size or use fewer devices."
            )
        return DataLoader(
            self.train,
            batch_size=self.batch_size,
            sampler=sampler,
            # A last batch of a few images would get a whole step's weight.
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader[Any]:
        """This rank's shard of the validation set, each image once."""
        world, rank = self._ranks()
        return DataLoader(
            self.val,
            batch_size=self.batch_size,
            sampler=ShardSampler(self.val, world, rank),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
