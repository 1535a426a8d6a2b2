"""Pooled encoder features of a whole dataset, for kNN and linear evaluation.

:func:`extract_features` runs a plain loop on one device; :func:`predict_features`
runs ``Trainer.predict`` on the Trainer's devices, each process encoding its shard
of the dataset, and gathers the shards on every process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightly_simmim.data import TransformedDataset
from lightly_simmim.evaluation.pooling import FeatureExtractor, Pooling
from lightly_simmim.evaluation.sharding import ShardSampler, gather_shards
from lightly_simmim.evaluation.trainers import (
    TrainerFactory,
    local_trainer,
    quiet_lightning,
)

__all__ = ["extract_features", "predict_features", "predict_train_test"]


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    device: torch.device | str = "cpu",
    *,
    layer: int | None = None,
    pooling: Pooling = "default",
) -> tuple[Tensor, Tensor]:
    """Runs ``encoder`` over ``(images, labels)`` batches in eval mode.

    The encoder is put in eval mode for the pass (no dropout / drop path, batch norm
    statistics frozen) and its previous mode is restored afterwards. It is not moved:
    put it on ``device`` first.

    Args:
        encoder: Module mapping (B, C, H, W) images to (B, D) features; with
            ``layer`` / ``pooling`` a SimMIM encoder adapter or a timm model.
        batches: Iterable of ``(images (B, C, H, W), labels (B,))``.
        device: Device to run on.
        layer: Which layer's features (see :class:`FeatureExtractor`); None is the
            last layer.
        pooling: ``"default"`` (the encoder's own ``forward``), ``"avg"`` or
            ``"cls"`` (see :class:`FeatureExtractor`).

    Returns:
        ``(features (N, D) float32 on CPU, labels (N,) int64 on CPU)``.

    Raises:
        ValueError: For a layer / pooling the encoder cannot give (see
            :class:`FeatureExtractor`), or if ``batches`` is empty.
    """
    model: nn.Module = encoder
    if layer is not None or pooling != "default":
        model = FeatureExtractor(encoder, layer=layer, pooling=pooling)
    was_training = encoder.training
    model.eval()
    features, labels = [], []
    try:
        for images, targets in batches:
            features.append(model(images.to(device)).float().cpu())
            labels.append(targets.cpu().long())
    finally:
        # Restore the encoder's mode (the extractor wrapper is new and has none).
        encoder.train(was_training)
    if not features:
        raise ValueError("extract_features got no batches.")
    return torch.cat(features), torch.cat(labels)


class _FeaturePredictor(pl.LightningModule):
    """``trainer.predict`` over a :class:`ShardSampler` shard; gathered at the end.

    After the predict epoch, :attr:`features` / :attr:`labels` hold the whole
    dataset's, in dataset order, on every process.
    """

    def __init__(self, extractor: nn.Module, dataset_size: int) -> None:
        super().__init__()
        self.extractor = extractor
        self.dataset_size = dataset_size
        self._features: list[Tensor] = []
        self._labels: list[Tensor] = []
        self.features = torch.empty(0)
        self.labels = torch.empty(0, dtype=torch.long)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        features: Tensor = self.extractor(images).float()  # (B, D)
        self._features.append(features)
        self._labels.append(labels.long())
        return features  # kept here, not by Lightning (return_predictions=False)

    def _all_gather(self, tensor: Tensor) -> Tensor:
        gathered = self.all_gather(tensor)
        assert isinstance(gathered, Tensor)  # a tensor in, a tensor out
        return gathered

    def on_predict_epoch_end(self) -> None:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        features = gather_shards(
            torch.cat(self._features), self.dataset_size, world, rank, self._all_gather
        )
        labels = gather_shards(
            torch.cat(self._labels), self.dataset_size, world, rank, self._all_gather
        )
        self.features, self.labels = features.cpu(), labels.cpu()
        self._features, self._labels = [], []


class _ShardedLoader(pl.LightningDataModule):
    """The predict loader of this process's :class:`ShardSampler` shard."""

    def __init__(
        self, dataset: Dataset[Any], batch_size: int, num_workers: int
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers

    def predict_dataloader(self) -> DataLoader[Any]:
        assert self.trainer is not None  # only Trainer.predict calls this
        sampler = ShardSampler(
            self.dataset,  # type: ignore[arg-type]
            self.trainer.world_size,
            self.trainer.global_rank,
        )
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
        )


def predict_features(
    encoder: nn.Module,
    dataset: Dataset[tuple[Any, int]],
    trainer: pl.Trainer,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    layer: int | None = None,
    pooling: Pooling = "default",
) -> tuple[Tensor, Tensor]:
    """:func:`extract_features` on the Trainer's devices, every process a shard.

    Process ``r`` of ``W`` encodes images ``r, r + W, ...`` (eval mode, no
    gradients, the Trainer's precision); the shards are gathered, so every process
    returns the features of the whole dataset in its order.

    Args:
        encoder: As for :func:`extract_features` (its mode is restored afterwards).
        dataset: ``(image tensor, label)`` pairs, already transformed.
        trainer: The Trainer to predict with (any devices and strategy).
        batch_size: Images per process and forward pass.
        num_workers: Data loader workers per process.
        layer: See :func:`extract_features`.
        pooling: See :func:`extract_features`.

    Returns:
        ``(features (N, D) float32 on CPU, labels (N,) int64 on CPU)``.

    Raises:
        ValueError: For a layer / pooling the encoder cannot give, or a dataset with
            fewer images than processes.
    """
    extractor: nn.Module = encoder
    if layer is not None or pooling != "default":
        extractor = FeatureExtractor(encoder, layer=layer, pooling=pooling)
    size = len(dataset)  # type: ignore[arg-type]
    if size < trainer.world_size:
        raise ValueError(
            f"Cannot share {size} images among {trainer.world_size} processes; "
            "use more images or fewer devices."
        )
    was_training = encoder.training
    predictor = _FeaturePredictor(extractor, size)
    try:
        with quiet_lightning():
            trainer.predict(
                predictor,
                datamodule=_ShardedLoader(dataset, batch_size, num_workers),
                return_predictions=False,
            )
    finally:
        encoder.train(was_training)
    return predictor.features, predictor.labels


Features = tuple[Tensor, Tensor]


def predict_train_test(
    encoder: nn.Module,
    train: Dataset[tuple[Any, int]],
    test: Dataset[tuple[Any, int]],
    trainer: TrainerFactory | None,
    *,
    transform: Callable[[Any], Any] | None,
    batch_size: int,
    num_workers: int,
    layer: int | None = None,
    pooling: Pooling = "default",
) -> tuple[pl.Trainer, Features, Features]:
    """:func:`predict_features` of a training and a test split, each image passed
    through ``transform`` once, on one Trainer from ``trainer`` (None: one device).

    Returns:
        ``(the Trainer, (train features, labels), (test features, labels))``; the
        Trainer tells where the features were made (``strategy.root_device``) and
        which process this is.
    """
    extractor = (trainer or local_trainer)(max_epochs=1, gradient_clip_val=None)
    train_features, test_features = (
        predict_features(
            encoder,
            TransformedDataset(dataset, transform),
            extractor,
            batch_size=batch_size,
            num_workers=num_workers,
            layer=layer,
            pooling=pooling,
        )
        for dataset in (train, test)
    )
    return extractor, train_features, test_features
