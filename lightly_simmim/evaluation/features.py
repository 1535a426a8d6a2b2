"""Pooled encoder features of a whole dataset, for kNN and linear evaluation."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from lightly_simmim.evaluation.pooling import FeatureExtractor, Pooling


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
