"""Pooled encoder features of a whole dataset, for kNN and linear evaluation."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Runs ``encoder`` over ``(images, labels)`` batches in eval mode.

    Args:
        encoder: Module mapping (B, C, H, W) images to (B, D) features.
        batches: Iterable of ``(images (B, C, H, W), labels (B,))``.
        device: Device to run on.

    Returns:
        ``(features (N, D) float32 on CPU, labels (N,) int64 on CPU)``.
    """
    was_training = encoder.training
    encoder.eval()
    features, labels = [], []
    try:
        for images, targets in batches:
            features.append(encoder(images.to(device)).float().cpu())
            labels.append(targets.cpu().long())
    finally:
        encoder.train(was_training)
    return torch.cat(features), torch.cat(labels)
