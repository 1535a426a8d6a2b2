"""Supervised data pipelines for evaluation: default transforms and a wrapper.

Fine-tuning needs a training augmentation and an evaluation transform; kNN / linear
evaluation only the latter. The defaults are the usual ImageNet classification ones
(as in the fine-tune of SimMIM / MAE, without RandAugment, random erasing, mixup):

- train: ``RandomResizedCrop(input_size, scale=(0.08, 1))`` (bicubic), horizontal
  flip, to float in [0, 1], normalise;
- eval: resize the shorter side to ``input_size / 0.875`` (bicubic), center crop
  ``input_size``, to float, normalise.

Both take a PIL image or a (C, H, W) tensor (uint8 in [0, 255] or float in [0, 1]) and
give ``(in_chans, input_size, input_size)`` float tensors. A 1-channel image is repeated
to ``in_chans`` channels; PIL images are converted to ``"L"`` or ``"RGB"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torchvision.transforms.v2 as T

from lightly_simmim.transforms import IMAGENET_NORMALIZE, EvalTransform, ToChannels

#: ``input_size / EVAL_CROP_FRACTION`` is the side the eval transform resizes to.
EVAL_CROP_FRACTION = 0.875

Transform = Callable[[Any], Any]


def classification_transforms(
    input_size: int,
    in_chans: int = 3,
    normalize: Mapping[str, Sequence[float]] | None = IMAGENET_NORMALIZE,
    min_scale: float = 0.08,
) -> tuple[Transform, Transform]:
    """The default train and eval transforms (see the module docstring).

    Args:
        input_size: Side of the square output.
        in_chans: Output channels, 1 or 3.
        normalize: ``{"mean": [...], "std": [...]}`` with ``in_chans`` values each
            (use the statistics the encoder was pretrained with), or None.
        min_scale: Smallest crop area fraction of the training crop.

    Returns:
        ``(train_transform, eval_transform)``.

    Raises:
        ValueError: If ``in_chans`` is not 1 or 3, or ``normalize`` has the wrong
            number of values.
    """
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3 for images, got {in_chans}.")
    mean = None if normalize is None else normalize["mean"]
    std = None if normalize is None else normalize["std"]
    evaluation = EvalTransform(
        input_size, in_chans, mean, std, crop_fraction=EVAL_CROP_FRACTION
    )
    tail: list[T.Transform] = [T.ToImage(), T.ToDtype(torch.float32, scale=True)]
    if mean is not None and std is not None:
        tail.append(T.Normalize(list(mean), list(std)))
    train = T.Compose(
        [
            ToChannels(in_chans),
            T.RandomResizedCrop(
                input_size,
                scale=(min_scale, 1.0),
                interpolation=T.InterpolationMode.BICUBIC,
            ),
            T.RandomHorizontalFlip(),
            *tail,
        ]
    )
    return train, evaluation
