"""SimMIM's reconstruction loss on masked pixels."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def upsample_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """Expands a token mask to pixels.

    Args:
        mask: Bool or 0/1 (B, h, w), True = masked.
        height: Image height H, a multiple of h.
        width: Image width W, a multiple of w (same factor as H / h).

    Returns:
        Float (B, 1, H, W) pixel mask.

    Raises:
        ValueError: If the image is not a whole number of tokens of one square size.
    """
    if mask.ndim != 3:
        raise ValueError(f"mask must be (B, h, w), got shape {tuple(mask.shape)}.")
    h, w = mask.shape[1:]
    if h == 0 or w == 0 or height % h or width % w or height // h != width // w:
        raise ValueError(
            f"Image size {height}x{width} is not a whole number of square tokens of "
            f"the mask grid {h}x{w}; the mask must be on the model's token grid."
        )
    patch = height // h
    pixels = mask.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)
    return pixels.unsqueeze(1).float()  # (B, 1, H, W)


def normalize_target(target: Tensor, window: int) -> Tensor:
    """Normalises each pixel by the mean and std of its ``window`` neighbourhood.

    The per-patch normalised target of SimMIM's later configs: a local mean and
    (unbiased) variance over a ``window x window`` box, computed with average pooling
    that ignores padding, per channel.

    Args:
        target: (B, C, H, W) image.
        window: Odd box side in pixels.

    Returns:
        (B, C, H, W) normalised target.
    """
    pad = window // 2
    mean = F.avg_pool2d(target, window, stride=1, padding=pad, count_include_pad=False)
    mean_sq = F.avg_pool2d(
        target**2, window, stride=1, padding=pad, count_include_pad=False
    )
    # Number of valid pixels in each window, to turn the biased variance unbiased.
    ones = torch.ones_like(target[:1, :1])
    count = F.avg_pool2d(ones, window, stride=1, padding=pad, count_include_pad=True)
    count = count * window**2
    var = (mean_sq - mean**2) * count / (count - 1).clamp(min=1)
    return (target - mean) / (var.clamp(min=0) + 1e-6).sqrt()


class SimMIMLoss(nn.Module):
    """L1 (or L2) between reconstruction and image, on masked pixels only.

    ``loss = sum(|x - x_rec| * m) / (sum(m) + 1e-5) / in_chans`` with ``m`` the token
    mask upsampled to pixels, as in the official implementation. A batch without a
    masked pixel gives 0 (the 1e-5 keeps the division finite).

    Args:
        loss_type: ``"l1"`` (paper default) or ``"l2"``.
        norm_target_window: If set, the target is normalised per pixel by the mean
            and std of its ``norm_target_window``-sized neighbourhood (odd int, e.g.
            47 as in the official configs); off by default.

    Raises:
        ValueError: On an unknown loss type, an even or non-positive window, or
            inputs whose shapes do not match.
    """

    def __init__(
        self,
        loss_type: Literal["l1", "l2"] = "l1",
        norm_target_window: int | None = None,
    ) -> None:
        super().__init__()
        if loss_type not in ("l1", "l2"):
            raise ValueError(f"loss_type must be 'l1' or 'l2', got {loss_type!r}.")
        if norm_target_window is not None and (
            norm_target_window <= 1 or norm_target_window % 2 == 0
        ):
            raise ValueError(
                f"norm_target_window must be an odd int > 1, got {norm_target_window}."
            )
        self.loss_type = loss_type
        self.norm_target_window = norm_target_window

    def forward(self, reconstruction: Tensor, images: Tensor, mask: Tensor) -> Tensor:
        """Computes the loss.

        Args:
            reconstruction: (B, C, H, W) head output.
            images: (B, C, H, W) input images (already normalised by the transform).
            mask: Bool (B, h, w) token mask, True = masked; the model patch size is
                inferred as ``H // h``.

        Returns:
            Scalar loss.
        """
        if reconstruction.shape != images.shape or images.ndim != 4:
            raise ValueError(
                f"reconstruction {tuple(reconstruction.shape)} and images "
                f"{tuple(images.shape)} must have the same (B, C, H, W) shape."
            )
        if mask.shape[0] != images.shape[0]:
            raise ValueError(
                f"mask batch size {mask.shape[0]} != image batch size "
                f"{images.shape[0]}."
            )
        pixel_mask = upsample_mask(mask, *images.shape[-2:]).to(images.dtype)
        target = images
        if self.norm_target_window is not None:
            target = normalize_target(target, self.norm_target_window)
        if self.loss_type == "l1":
            error = (target - reconstruction).abs()
        else:
            error = (target - reconstruction) ** 2
        in_chans = images.shape[1]
        return (error * pixel_mask).sum() / (pixel_mask.sum() + 1e-5) / in_chans
