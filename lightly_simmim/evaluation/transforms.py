"""The fine-tune's data pipelines: timm's training augmentation, crop_pct evaluation.

:func:`classification_transforms` builds both transforms from a
:class:`~lightly_simmim.evaluation.recipes.FinetuneRecipe` (the official SimMIM
``build_transform`` made of timm's public pieces):

- train: ``timm.data.create_transform`` (``is_training=True``, ``separate=True``):
  the crop and flip, RandAugment (or colour jitter), to tensor, normalise, random
  erasing. For ``train_crop="padded"`` (the official branch for images of at most
  32 px) the crop is a resize to ``input_size`` and a random crop with
  ``crop_padding`` px of zero padding instead of ``RandomResizedCrop``.
- eval: ``"resized"`` crops: timm's evaluation transform, a resize of the shorter side
  to ``input_size / crop_pct`` and a centre crop of ``input_size``; ``"padded"``
  crops: a resize to ``input_size`` only (the official small-image evaluation).

Both take a PIL image or a (C, H, W) tensor (uint8, or float in [0, 1]) and give
``(in_chans, input_size, input_size)`` float tensors.

Grayscale: timm's RandAugment, colour jitter and random erasing work on RGB images
(fill colours, per-channel noise). With ``in_chans=1`` the training image is
augmented as RGB (three equal channels, the statistics repeated) and the first
channel is kept: every RandAugment operation treats equal channels alike, so this is
exactly the grayscale augmentation, with one channel of random-erasing noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torchvision.transforms.v2 as T
from PIL import Image, ImageOps
from timm.data import create_transform
from timm.data.auto_augment import AugmentOp
from torch import Tensor

from lightly_simmim.evaluation.recipes import SMALL_IMAGE_SIZE, FinetuneRecipe
from lightly_simmim.transforms import IMAGENET_NORMALIZE, ToChannels

__all__ = ["Transform", "classification_transforms", "padded_crop"]

Transform = Callable[[Any], Any]

_INTERPOLATION = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}


def padded_crop(recipe: FinetuneRecipe, input_size: int) -> bool:
    """Whether the training crop is padded (``"padded"``, or ``"auto"`` to 32 px)."""
    if recipe.train_crop == "auto":
        return input_size <= SMALL_IMAGE_SIZE
    return recipe.train_crop == "padded"


def classification_transforms(
    input_size: int,
    in_chans: int = 3,
    normalize: Mapping[str, Sequence[float]] | None = IMAGENET_NORMALIZE,
    recipe: FinetuneRecipe | None = None,
) -> tuple[Transform, Transform]:
    """The fine-tune's training and evaluation transforms (see the module docstring).

    Args:
        input_size: Side of the square output.
        in_chans: Output channels, 1 or 3.
        normalize: ``{"mean": [...], "std": [...]}`` with ``in_chans`` values each
            (the statistics the encoder was pretrained with), or None for none.
        recipe: The augmentation settings; None = :class:`FinetuneRecipe`'s (the
            official recipe).

    Returns:
        ``(train_transform, eval_transform)``; both pickle (data loader workers).

    Raises:
        ValueError: If ``in_chans`` is not 1 or 3, or ``normalize`` does not have
            ``in_chans`` values.
    """
    recipe = FinetuneRecipe() if recipe is None else recipe
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3 for images, got {in_chans}.")
    mean, std = _statistics(normalize, in_chans)
    return (
        _train_transform(recipe, input_size, in_chans, mean, std),
        _eval_transform(recipe, input_size, in_chans, mean, std),
    )


def _statistics(
    normalize: Mapping[str, Sequence[float]] | None, in_chans: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std; (0, 1) for "no normalisation"."""
    if normalize is None:
        return (0.0,) * in_chans, (1.0,) * in_chans
    mean, std = tuple(normalize["mean"]), tuple(normalize["std"])
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(
            f"normalize has {len(mean)} mean / {len(std)} std values but "
            f"in_chans={in_chans}; give one value per channel."
        )
    return mean, std


def _train_transform(
    recipe: FinetuneRecipe,
    size: int,
    in_chans: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> Transform:
    """timm's training transform, on RGB images; the first channel for grayscale."""
    rgb_mean = mean if in_chans == 3 else mean * 3
    rgb_std = std if in_chans == 3 else std * 3
    primary, secondary, final = create_transform(
        size,
        is_training=True,
        scale=(recipe.crop_min_scale, 1.0),
        hflip=recipe.hflip,
        # None, not 0: timm would add a ColorJitter that does nothing.
        color_jitter=recipe.color_jitter or None,  # type: ignore[arg-type]
        auto_augment=recipe.auto_augment,
        interpolation=recipe.interpolation,
        mean=rgb_mean,
        std=rgb_std,
        re_prob=recipe.random_erase_prob,
        re_mode=recipe.random_erase_mode,
        re_count=recipe.random_erase_count,
        separate=True,
    )
    for step in secondary.transforms:
        _accept_zero_posterize_bits(step)
    if padded_crop(recipe, size):
        # The official small-image branch: no random scale, a padded random crop.
        primary = T.Compose(
            [
                T.Resize(size, interpolation=_INTERPOLATION[recipe.interpolation]),
                T.RandomCrop(size, padding=recipe.crop_padding),
                T.RandomHorizontalFlip(recipe.hflip),
            ]
        )
    steps: list[Transform] = [T.ToPILImage(), ToChannels(3), primary, secondary, final]
    if in_chans == 1:
        steps.append(FirstChannel())
    train: Transform = T.Compose(steps)
    return train


def _eval_transform(
    recipe: FinetuneRecipe,
    size: int,
    in_chans: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> Transform:
    """Resize + centre crop at ``crop_pct`` (timm's), or a plain resize when padded."""
    if padded_crop(recipe, size):
        interpolation = _INTERPOLATION[recipe.interpolation]
        # CenterCrop only trims the longer side of a non-square image.
        resize: Transform = T.Compose(
            [
                T.Resize(size, interpolation=interpolation),
                T.CenterCrop(size),
                T.ToImage(),
                T.ToDtype(torch.float32, scale=True),
                T.Normalize(list(mean), list(std)),
            ]
        )
    else:
        resize = create_transform(
            size,
            is_training=False,
            crop_pct=recipe.crop_pct,
            interpolation=recipe.interpolation,
            mean=mean,
            std=std,
        )
    evaluation: Transform = T.Compose([T.ToPILImage(), ToChannels(in_chans), resize])
    return evaluation


class FirstChannel:
    """``(C, H, W) -> (1, H, W)``: the grayscale image augmented as RGB."""

    def __call__(self, image: Tensor) -> Tensor:
        return image[:1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _posterize(image: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """PIL's posterize, with 0 bits kept giving a black image.

    timm's ``PosterizeIncreasing`` asks for 0 bits at magnitude 10, which RandAugment
    reaches whenever its Gaussian magnitude noise is clipped at the top (2 % of the
    draws at ``m9-mstd0.5``). Pillow before 11 returned a black image for it; newer
    Pillow raises ValueError, which would stop a fine-tune in its first epoch.
    """
    if bits_to_keep >= 8:
        return image
    if bits_to_keep <= 0:
        return Image.new(image.mode, image.size)
    return ImageOps.posterize(image, bits_to_keep)


def _accept_zero_posterize_bits(transform: object) -> None:
    """Points the posterize operations of a timm auto-augment at :func:`_posterize`.

    RandAugment and AugMix keep their operations in ``ops``, AutoAugment in
    ``policy`` (a list of sub-policies); only this transform's own operations change.
    """
    ops: list[object] = list(getattr(transform, "ops", []))
    for sub_policy in getattr(transform, "policy", []):
        ops.extend(sub_policy)
    for op in ops:
        if isinstance(op, AugmentOp) and op.name.startswith("Posterize"):
            op.aug_fn = _posterize
