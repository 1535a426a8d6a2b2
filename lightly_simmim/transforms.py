"""SimMIM's pretraining augmentation as a lightly-style transform."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torchvision.transforms.v2 as T
from PIL.Image import Image
from torch import Tensor

from lightly_simmim.masking import SimMIMMaskGenerator

#: ImageNet statistics in lightly's format (``lightly.transforms.utils``).
IMAGENET_NORMALIZE: dict[str, list[float]] = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}

ImageInput = Image | Tensor


def to_channels(image: ImageInput, in_chans: int) -> ImageInput:
    """Gives an image the number of channels the model expects.

    PIL images are converted to mode ``"L"`` (``in_chans=1``) or ``"RGB"``
    (``in_chans=3``), so grayscale datasets work with RGB models and the other way
    round. A (C, H, W) tensor with one channel is repeated to ``in_chans``.

    Args:
        image: PIL image or (C, H, W) tensor.
        in_chans: 1 or 3.

    Returns:
        The image with ``in_chans`` channels (the same object if it already has).

    Raises:
        ValueError: For a tensor whose channels cannot be converted.
    """
    if isinstance(image, Image):
        mode = "L" if in_chans == 1 else "RGB"
        return image if image.mode == mode else image.convert(mode)
    if image.ndim != 3:
        raise ValueError(
            f"Expected a (C, H, W) image tensor, got shape {tuple(image.shape)}."
        )
    if image.shape[0] == in_chans:
        return image
    if image.shape[0] == 1:
        return image.expand(in_chans, -1, -1)
    raise ValueError(
        f"Image has {image.shape[0]} channels but in_chans={in_chans}; convert it or "
        f"set data.in_chans={image.shape[0]}."
    )


class ToChannels:
    """:func:`to_channels` as a picklable transform step (for data loader workers)."""

    def __init__(self, in_chans: int) -> None:
        self.in_chans = in_chans

    def __call__(self, image: ImageInput) -> ImageInput:
        return to_channels(image, self.in_chans)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(in_chans={self.in_chans})"


def resolve_normalize(
    mean: Sequence[float] | None, std: Sequence[float] | None, in_chans: int
) -> dict[str, list[float]]:
    """Per-channel statistics in lightly's format; None for both = ImageNet's.

    The one place the package resolves normalisation: methods, evaluation and the
    reconstruction images all go through it.

    Args:
        mean: Per-channel mean, ``in_chans`` values, or None (with ``std``).
        std: Per-channel std, positive.
        in_chans: Image channels.

    Returns:
        ``{"mean": [...], "std": [...]}``.

    Raises:
        ValueError: If only one is given, ImageNet's are asked for with other than 3
            channels, the lengths do not match ``in_chans``, or a std is not > 0.
    """
    if (mean is None) != (std is None):
        raise ValueError("Give both mean and std, or neither (ImageNet's).")
    if mean is None or std is None:
        if in_chans != 3:
            raise ValueError(
                f"mean/std default to ImageNet statistics, which have 3 channels, "
                f"but in_chans={in_chans}; give per-channel statistics of your "
                f"data, e.g. mean=[0.286], std=[0.353] for Fashion-MNIST."
            )
        return {k: list(v) for k, v in IMAGENET_NORMALIZE.items()}
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(
            f"mean has {len(mean)} and std {len(std)} values but in_chans="
            f"{in_chans}; give one value per channel."
        )
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be > 0, got {list(std)}.")
    return {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}


class ConvertChannels:
    """Runs :func:`to_channels` before a transform (lightly's transforms assume RGB).

    A class rather than a closure so that it pickles into data loader workers.

    Args:
        transform: A callable from a PIL image to a list of (C, H, W) tensors, e.g.
            lightly's ``BYOLTransform``.
        in_chans: 1 or 3.
    """

    def __init__(
        self, transform: Callable[[ImageInput], list[Tensor]], in_chans: int
    ) -> None:
        self.transform = transform
        self.in_chans = in_chans

    def __call__(self, image: ImageInput) -> list[Tensor]:
        """Converts the channels, then transforms.

        Returns:
            Whatever ``transform`` returns: a list of (in_chans, H, W) views.
        """
        return self.transform(to_channels(image, self.in_chans))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r}, in_chans={self.in_chans})"


class EvalTransform:
    """Deterministic evaluation transform: resize, centre crop, normalise.

    The shorter side is resized to ``input_size / crop_fraction`` and the centre
    ``input_size`` square is cropped. With the default ``crop_fraction=1`` a square
    image is only resized (no border is cut away, which matters for small, centred
    images such as Fashion-MNIST); ``crop_fraction=0.875`` is ImageNet's usual
    resize-256 / crop-224. Bicubic interpolation, as in the pretraining crops.

    Args:
        input_size: Output side in pixels.
        in_chans: 1 or 3 (see :func:`to_channels`).
        mean: Per-channel mean, ``in_chans`` values; None (with ``std``) skips
            normalisation.
        std: Per-channel std, ``in_chans`` values.
        crop_fraction: Fraction of the resized image the centre crop keeps, in
            (0, 1].

    Raises:
        ValueError: On a crop fraction outside (0, 1] or statistics whose length is
            not ``in_chans``.
    """

    def __init__(
        self,
        input_size: int,
        in_chans: int,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        crop_fraction: float = 1.0,
    ) -> None:
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}.")
        self.input_size = input_size
        self.in_chans = in_chans
        steps: list[T.Transform] = [
            T.Resize(
                round(input_size / crop_fraction),
                interpolation=T.InterpolationMode.BICUBIC,
                antialias=True,
            ),
            T.CenterCrop(input_size),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
        ]
        if mean is not None and std is not None:
            if len(mean) != in_chans or len(std) != in_chans:
                raise ValueError(
                    f"normalize has {len(mean)} mean / {len(std)} std values but "
                    f"in_chans={in_chans}."
                )
            steps.append(T.Normalize(mean=list(mean), std=list(std)))
        self.transform = T.Compose(steps)

    def __call__(self, image: Image | Tensor) -> Tensor:
        """Transforms one image.

        Args:
            image: PIL image or (C, H, W) tensor (uint8, or float in [0, 1]).

        Returns:
            Float (in_chans, input_size, input_size), normalised.
        """
        out: Tensor = self.transform(to_channels(image, self.in_chans))
        return out


class SimMIMTransform:
    """Random resized crop, horizontal flip and normalisation, one view per image.

    Follows lightly's transform conventions: call it on a PIL image or a (C, H, W)
    tensor (uint8 in [0, 255] or float in [0, 1]) and get a list of views, so it
    composes with ``LightlyDataset`` and ``MultiViewCollate``. With a mask generator
    the list is ``[view, mask]`` (mask bool (h, w), True = masked), so masks can be
    drawn in data loader workers; collated, that is ``[views (B, C, H, W),
    masks (B, h, w)]``.

    Defaults are the paper's: ``RandomResizedCrop(scale=(0.67, 1), ratio=(3/4, 4/3))``,
    flip with p=0.5, ImageNet normalisation.

    Args:
        input_size: Output size, an int or (H, W).
        min_scale: Smallest crop area fraction.
        max_scale: Largest crop area fraction.
        crop_ratio: Aspect ratio range of the crop.
        hf_prob: Probability of a horizontal flip.
        in_chans: Channels of the output: PIL images are converted to ``"L"`` (1) or
            ``"RGB"`` (3); a 1-channel tensor is repeated to 3 channels if needed.
        normalize: ``{"mean": [...], "std": [...]}`` with one value per channel, or
            None for no normalisation.
        mask_generator: If given, its mask is appended to the returned list.

    Raises:
        ValueError: If ``normalize`` does not have ``in_chans`` values, or the sizes
            of the mask generator and the transform differ.
    """

    def __init__(
        self,
        input_size: int | tuple[int, int] = 192,
        min_scale: float = 0.67,
        max_scale: float = 1.0,
        crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        hf_prob: float = 0.5,
        in_chans: int = 3,
        normalize: Mapping[str, Sequence[float]] | None = IMAGENET_NORMALIZE,
        mask_generator: SimMIMMaskGenerator | None = None,
    ) -> None:
        size = (input_size, input_size) if isinstance(input_size, int) else input_size
        self.input_size = (int(size[0]), int(size[1]))
        if not 0.0 < min_scale <= max_scale <= 1.0:
            raise ValueError(
                f"Need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}."
            )
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3 for images, got {in_chans}.")
        if normalize is not None and (
            len(normalize["mean"]) != in_chans or len(normalize["std"]) != in_chans
        ):
            raise ValueError(
                f"normalize has {len(normalize['mean'])} mean and "
                f"{len(normalize['std'])} std values but in_chans={in_chans}; "
                f"pass per-channel statistics of your data, e.g. "
                f"{{'mean': [0.286], 'std': [0.353]}} for Fashion-MNIST."
            )
        if mask_generator is not None and mask_generator.input_size != self.input_size:
            raise ValueError(
                f"mask_generator.input_size {mask_generator.input_size} differs from "
                f"the transform's input_size {self.input_size}."
            )
        self.in_chans = in_chans
        self.mask_generator = mask_generator
        steps: list[T.Transform] = [
            T.RandomResizedCrop(
                self.input_size,
                scale=(min_scale, max_scale),
                ratio=crop_ratio,
                interpolation=T.InterpolationMode.BICUBIC,
                antialias=True,
            ),
            T.RandomHorizontalFlip(p=hf_prob),
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
        ]
        if normalize is not None:
            steps.append(
                T.Normalize(mean=list(normalize["mean"]), std=list(normalize["std"]))
            )
        self.transform = T.Compose(steps)

    def __call__(self, image: ImageInput) -> list[Tensor]:
        """Transforms one image.

        Args:
            image: PIL image, or (C, H, W) tensor.

        Returns:
            ``[view]`` with view (in_chans, H, W), or ``[view, mask]`` with a mask
            generator (mask bool (H / model_patch_size, W / model_patch_size)).
        """
        view: Tensor = self.transform(to_channels(image, self.in_chans))
        if self.mask_generator is None:
            return [view]
        return [view, self.mask_generator(batch_size=1)[0]]
