"""Image grids of original / masked / reconstructed images."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import save_image

from lightly_simmim.atomic import atomic_write
from lightly_simmim.loss import upsample_mask


def save_reconstruction_grid(
    path: str | Path,
    images: Tensor,
    mask: Tensor,
    reconstruction: Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Path:
    """Writes a PNG with one column per image: original, masked input, output.

    The bottom row pastes the reconstruction into the masked pixels only, which is
    what SimMIM is trained to predict.

    Args:
        path: PNG file to write (parent folders are created).
        images: (B, C, H, W) normalised images.
        mask: Bool (B, h, w) token mask, True = masked.
        reconstruction: (B, C, H, W) head output, same normalisation as ``images``.
        mean: Per-channel mean used to normalise, to undo it for display.
        std: Per-channel std used to normalise.

    Returns:
        The path written (atomically: a reader never sees half a PNG).

    Raises:
        WriteError: The file cannot be written.
    """
    images, reconstruction = (
        images.detach().float().cpu(),
        reconstruction.detach().float().cpu(),
    )
    pixel_mask = upsample_mask(mask.cpu(), *images.shape[-2:])  # (B, 1, H, W)
    if mean is not None and std is not None:
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        images, reconstruction = images * s + m, reconstruction * s + m
    masked = images * (1 - pixel_mask) + 0.5 * pixel_mask  # grey where masked
    pasted = images * (1 - pixel_mask) + reconstruction * pixel_mask
    grid = torch.cat([images, masked, pasted]).clamp(0, 1)  # (3B, C, H, W)
    png = io.BytesIO()
    save_image(grid, png, format="png", nrow=len(images), padding=2, pad_value=1.0)
    return atomic_write(path, png.getvalue())
