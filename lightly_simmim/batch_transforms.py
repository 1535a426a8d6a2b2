"""Random resized crop, flip and normalisation of a whole batch on its device.

For datasets held in memory as one uint8 tensor (the embedded subset, IDX files,
CIFAR-style arrays) the pretraining augmentation runs per batch, on the training
device, in a handful of tensor operations: no data loader worker and no PIL image
in the step. :class:`BatchRandomResizedCrop` draws every sample's crop as
torchvision's ``RandomResizedCrop`` does (area fraction uniform in ``scale``, log
aspect ratio uniform in ``ratio``, up to ten tries, then the central crop; integer
boxes, integer offsets) and resamples all crops at once with ``affine_grid`` +
``grid_sample`` (bicubic), the horizontal flip folded into the same affine map.

Two differences to the per-image transform, both small for the images this path
serves: ``grid_sample``'s bicubic kernel uses a = -0.75 where PIL uses a = -0.5, and
there is no antialiasing when a crop is larger than the output (the in-memory sets
are 28-32 px images, whose crops are upsampled). Values are clamped to [0, 1] after
resampling, as a uint8 PIL image is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BatchRandomResizedCrop", "crop_boxes"]

_TRIES = 10  # torchvision's number of attempts before the central crop
# ITU-R 601-2 luma, what PIL's convert("L") computes from RGB.
_LUMA = (0.299, 0.587, 0.114)


def crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device: torch.device,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Crop boxes drawn as ``torchvision.transforms.RandomResizedCrop`` draws them.

    Args:
        batch: Number of boxes.
        height: Image height.
        width: Image width.
        scale: Range of the crop's area as a fraction of the image's.
        ratio: Range of the crop's aspect ratio (width / height).
        device: Where to draw.
        generator: Random generator on ``device``; None = torch's global one.

    Returns:
        Float (batch, 4): top, left, box height, box width, in whole pixels.
    """
    area = float(height * width)
    shape = (batch, _TRIES)
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])

    def uniform(low: float, high: float) -> Tensor:
        return (
            torch.rand(shape, device=device, generator=generator) * (high - low) + low
        )

    target = area * uniform(scale[0], scale[1])  # (B, tries)
    aspect = torch.exp(uniform(log_low, log_high))  # (B, tries)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (B, tries)
    # The first try that fits, per sample (argmax of a bool finds the first True).
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # (B, 1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]  # (B,)
    any_fit = fits.any(dim=1)  # (B,)
    # torchvision's fallback: the central crop, clamped to the ratio range.
    fallback_w, fallback_h = _central_size(height, width, ratio)
    w = torch.where(any_fit, w, torch.full_like(w, fallback_w))
    h = torch.where(any_fit, h, torch.full_like(h, fallback_h))
    offsets = torch.rand((batch, 2), device=device, generator=generator)  # (B, 2)
    # Uniform integers in [0, size - box], as torch.randint(0, size - box + 1).
    top = torch.floor(offsets[:, 0] * (height - h + 1)).clamp(max=height - h)
    left = torch.floor(offsets[:, 1] * (width - w + 1)).clamp(max=width - w)
    top = torch.where(any_fit, top, torch.floor((height - h) / 2))
    left = torch.where(any_fit, left, torch.floor((width - w) / 2))
    return torch.stack([top, left, h, w], dim=1)  # (B, 4)


def _central_size(
    height: int, width: int, ratio: tuple[float, float]
) -> tuple[float, float]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        return float(width), float(round(width / min(ratio)))
    if in_ratio > max(ratio):
        return float(round(height * max(ratio))), float(height)
    return float(width), float(height)


class BatchRandomResizedCrop:
    """Per-sample random resized crop, flip and normalisation of a uint8 batch.

    Args:
        size: Output side in pixels (square).
        scale: Range of the crop's area fraction (SimMIM: 0.67-1, MAE: 0.2-1).
        ratio: Range of the crop's aspect ratio.
        flip_prob: Probability of a horizontal flip.
        mean: Per-channel mean of the normalisation (``in_chans`` values).
        std: Per-channel std of the normalisation.
        in_chans: Output channels: 1-channel images are repeated to 3, RGB images
            become luma for 1 (as PIL's ``convert``).

    Raises:
        ValueError: On impossible ranges or statistics of the wrong length.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float],
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        flip_prob: float = 0.5,
        mean: Sequence[float] = (0.0,),
        std: Sequence[float] = (1.0,),
        in_chans: int = 1,
    ) -> None:
        if not 0.0 < scale[0] <= scale[1] <= 1.0 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"Impossible scale {scale} or ratio {ratio}.")
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(
                f"mean / std need {in_chans} values, got {len(mean)} / {len(std)}."
            )
        self.size = size
        self.scale = scale
        self.ratio = ratio
        self.flip_prob = flip_prob
        self.in_chans = in_chans
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Augments a batch.

        Args:
            images: uint8 (B, C, H, W), C = 1 or 3, on the training device.
            generator: Random generator on that device; None = torch's global one.

        Returns:
            Float (B, in_chans, size, size), normalised.
        """
        batch, _, height, width = images.shape
        device = images.device
        boxes = crop_boxes(
            batch, height, width, self.scale, self.ratio, device, generator
        )
        flip = torch.rand(batch, device=device, generator=generator) < self.flip_prob
        top, left, box_h, box_w = boxes.unbind(dim=1)  # (B,) each
        # Output pixel k's centre maps to input x = left + (k + 0.5) w / S - 0.5
        # (align_corners=False), i.e. normalised x' = cx + sx * u.
        theta = torch.zeros(batch, 2, 3, device=device)
        theta[:, 0, 0] = torch.where(flip, -box_w, box_w) / width
        theta[:, 0, 2] = (2 * left + box_w) / width - 1
        theta[:, 1, 1] = box_h / height
        theta[:, 1, 2] = (2 * top + box_h) / height - 1
        grid = F.affine_grid(
            theta, [batch, 1, self.size, self.size], align_corners=False
        )  # (B, S, S, 2)
        pixels = self._channels(images.float().div_(255))  # (B, in_chans, H, W)
        out = F.grid_sample(
            pixels, grid, mode="bicubic", padding_mode="border", align_corners=False
        ).clamp_(0.0, 1.0)  # (B, in_chans, S, S)
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        return out.sub_(mean).div_(std)

    def _channels(self, pixels: Tensor) -> Tensor:
        channels = pixels.shape[1]
        if channels == self.in_chans:
            return pixels
        if channels == 1:  # (B, 1, H, W) -> (B, 3, H, W)
            return pixels.expand(-1, self.in_chans, -1, -1)
        luma = torch.tensor(_LUMA, device=pixels.device).view(1, 3, 1, 1)
        return (pixels * luma).sum(dim=1, keepdim=True)  # (B, 1, H, W)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, scale={self.scale}, "
            f"ratio={self.ratio}, flip_prob={self.flip_prob}, in_chans={self.in_chans})"
        )
