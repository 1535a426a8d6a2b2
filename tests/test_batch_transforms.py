"""The batched crop / flip on the device draws what the per-image transform draws."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2 as T

from lightly_simmim.batch_transforms import BatchRandomResizedCrop, crop_boxes

DRAWS = 20000


def _torchvision_boxes(
    size: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> torch.Tensor:
    """(DRAWS, 4) top, left, height, width from torchvision's own RandomResizedCrop."""
    crop = T.RandomResizedCrop(size, scale=scale, ratio=ratio)
    image = torch.zeros(1, size, size)
    boxes = []
    for _ in range(DRAWS):
        params = crop.make_params([image])
        boxes.append([params["top"], params["left"], params["height"], params["width"]])
    return torch.tensor(boxes, dtype=torch.float)


def _summary(boxes: torch.Tensor, size: int) -> dict[str, float]:
    top, left, h, w = boxes.unbind(dim=1)
    return {
        "area": float((h * w).mean()) / size**2,
        "log_ratio": float(torch.log(w / h).mean()),
        "log_ratio_std": float(torch.log(w / h).std()),
        "whole_image": float(((h == size) & (w == size)).float().mean()),
        "top": float((top / (size - h).clamp(min=1)).mean()),
        "left": float((left / (size - w).clamp(min=1)).mean()),
    }


@pytest.mark.parametrize(
    ("size", "scale"),
    [(28, (0.67, 1.0)), (28, (0.2, 1.0)), (32, (0.08, 1.0))],
)
def test_crop_boxes__same_statistics_as_torchvision(
    size: int, scale: tuple[float, float]
) -> None:
    torch.manual_seed(0)
    ratio = (3 / 4, 4 / 3)
    ours = crop_boxes(DRAWS, size, size, scale, ratio, torch.device("cpu"))
    theirs = _torchvision_boxes(size, scale, ratio)
    # Every box lies inside the image, in whole pixels.
    top, left, h, w = ours.unbind(dim=1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= size).all() and (left + w <= size).all()
    assert torch.equal(ours, ours.round())
    # Area and aspect ratio in range (whole pixels: a rounding margin of one).
    area = h * w / size**2
    low = (math.sqrt(scale[0] * size**2) - 1) ** 2 / size**2
    assert (area >= low * 0.9).all() and (area <= 1).all()
    assert (w / h >= ratio[0] * 0.85).all() and (w / h <= ratio[1] / 0.85).all()
    # The same distributions: the means agree within a few standard errors.
    mine, reference = _summary(ours, size), _summary(theirs, size)
    for key, tolerance in (
        ("area", 0.01),
        ("log_ratio", 0.01),
        ("log_ratio_std", 0.01),
        ("whole_image", 0.01),
        ("top", 0.02),
        ("left", 0.02),
    ):
        assert mine[key] == pytest.approx(reference[key], abs=tolerance), key


def test_batch_crop__flip_rate_and_identity_box() -> None:
    torch.manual_seed(0)
    # A crop of the whole image at its own size is the image (or its mirror).
    images = torch.randint(0, 256, (DRAWS // 10, 1, 8, 8), dtype=torch.uint8)
    crop = BatchRandomResizedCrop(8, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out = crop(images)  # normalised with mean 0, std 1: pixels / 255
    pixels = images.float() / 255
    same = torch.isclose(out, pixels, atol=1e-5).flatten(1).all(dim=1)
    mirrored = torch.isclose(out, pixels.flip(-1), atol=1e-5).flatten(1).all(dim=1)
    assert (same | mirrored).all()
    assert float(mirrored.float().mean()) == pytest.approx(0.5, abs=0.03)


def test_batch_crop__matches_torchvision_resized_crop_of_the_same_box() -> None:
    torch.manual_seed(1)
    image = torch.rand(1, 1, 28, 28)
    images = (image * 255).round().to(torch.uint8)
    crop = BatchRandomResizedCrop(32, scale=(0.67, 1.0), flip_prob=0.0)
    generator = torch.Generator().manual_seed(3)
    out = crop(images, generator)
    box = crop_boxes(
        1,
        28,
        28,
        crop.scale,
        crop.ratio,
        torch.device("cpu"),
        torch.Generator().manual_seed(3),
    )[0]
    top, left, h, w = (int(v) for v in box)
    reference = T.functional.resized_crop(
        images.float() / 255,
        top,
        left,
        h,
        w,
        [32, 32],
        interpolation=T.InterpolationMode.BICUBIC,
        antialias=False,
    ).clamp(0, 1)
    # Bicubic kernels differ (a = -0.75 here, -0.5 in PIL); the images agree closely.
    assert (out - reference).abs().mean() < 0.02


def test_batch_crop__channels_and_normalisation() -> None:
    gray = torch.full((2, 1, 8, 8), 255, dtype=torch.uint8)
    to_rgb = BatchRandomResizedCrop(
        8, (0.5, 1.0), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), in_chans=3
    )
    assert torch.allclose(to_rgb(gray), torch.full((2, 3, 8, 8), 2.0))
    rgb = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    rgb[:, 1] = 255  # pure green: luma 0.587
    to_gray = BatchRandomResizedCrop(8, (0.5, 1.0), in_chans=1)
    assert torch.allclose(to_gray(rgb), torch.full((2, 1, 8, 8), 0.587), atol=1e-5)


def test_batch_crop__follows_the_generator() -> None:
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    crop = BatchRandomResizedCrop(32, scale=(0.2, 1.0))
    first = crop(images, torch.Generator().manual_seed(5))
    again = crop(images, torch.Generator().manual_seed(5))
    other = crop(images, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_batch_crop__rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="Impossible scale"):
        BatchRandomResizedCrop(8, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="mean / std need 3 values"):
        BatchRandomResizedCrop(8, scale=(0.5, 1.0), in_chans=3)
