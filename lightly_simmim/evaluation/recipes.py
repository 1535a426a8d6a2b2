"""The fine-tune and linear-probe recipes: one type each, defined once.

:class:`FinetuneRecipe` is both the argument of
:func:`~lightly_simmim.evaluation.finetune` and the ``finetune:`` section of a run
config; :class:`LinearRecipe` is both the argument of
:func:`~lightly_simmim.evaluation.linear_eval` and the ``linear:`` section of a
benchmark config. :func:`override` applies the ``evaluate`` command's options to
either, where given (an explicit 0 is a value, not "unset").

This module imports only the standard library and :mod:`lightly_simmim.settings`, so
the config schema can use the recipes without importing the evaluation code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, TypeVar

from lightly_simmim.settings import Checked, SettingError, setting

__all__ = [
    "HIERARCHICAL_LAYER_DECAY",
    "LR_REFERENCE_BATCH",
    "SMALL_IMAGE_SIZE",
    "VIT_HEAD_INIT_SCALE",
    "VIT_LAYER_DECAY",
    "FinetuneRecipe",
    "LinearRecipe",
    "override",
]

LR_REFERENCE_BATCH = 512
"""Batch size at which a fine-tune's ``base_*`` learning rates are the actual ones."""

VIT_LAYER_DECAY = 0.65
"""The paper's layer decay for ViT-B (used by ``"auto"`` for ViT / DeiT / BEiT)."""

HIERARCHICAL_LAYER_DECAY = 0.9
"""The paper's layer decay for Swin-B (used by ``"auto"`` for every other model)."""

VIT_HEAD_INIT_SCALE = 0.001
"""The official ViT's ``init_scale`` of its classifier (``"auto"`` for ViT / BEiT)."""

SMALL_IMAGE_SIZE = 32
"""Up to this side, ``train_crop: auto`` is the official small-image branch."""

Pooling = Literal["default", "avg", "cls"]
ProbeOptimizer = Literal["sgd", "lars", "adamw"]
MixupMode = Literal["batch", "pair", "elem"]
TrainCrop = Literal["auto", "resized", "padded"]
EraseMode = Literal["pixel", "rand", "const"]
Interpolation = Literal["bicubic", "bilinear", "nearest"]

#: The first part of a timm ``auto_augment`` string: RandAugment, AugMix, or an
#: AutoAugment policy.
_AUTO_AUGMENT_POLICIES = frozenset(
    {"rand", "augmix", "original", "originalr", "v0", "v0r", "3a"}
)


@dataclass(frozen=True)
class FinetuneRecipe(Checked):
    """A fine-tune: optimiser, schedule, loss, model changes, augmentation.

    The defaults are the official SimMIM ViT-B recipe (microsoft/SimMIM ``config.py``
    and ``configs/vit_base__800ep/simmim_finetune__*.yaml``; docs/recipe.md lists
    each value with its source). Every piece can be switched off for small images
    or short schedules. The attributes come in four groups: optimiser and schedule,
    loss and mixing (timm ``Mixup`` with ``SoftTargetCrossEntropy``), changes to the
    model, and augmentation (timm ``create_transform``).

    Attributes:
        epochs: Training epochs (100 in the paper).
        warmup_epochs: Epochs of linear warmup (20), at most ``epochs``.
        batch_size: Images per device and step (the paper's global batch is 2048).
        base_lr: Learning rate per 512 images: ``lr = base_lr * global batch / 512``.
        base_warmup_lr: Learning rate at the start of warmup, per 512 images.
        base_min_lr: Final learning rate of the cosine, per 512 images.
        weight_decay: AdamW weight decay, not applied to 1-D parameters, biases and
            the model's ``no_weight_decay()`` names (see ``rel_pos_weight_decay``).
        layer_decay: Layer-wise learning-rate decay, or ``"auto"``: 0.65 for ViT /
            DeiT / BEiT (ViT-B), 0.9 otherwise (Swin-B; also used for ConvNeXt,
            where the paper has no value). 1.0 disables it.
        betas: AdamW betas.
        eps: AdamW epsilon.
        clip_grad: Gradient norm clip (5.0), or None for none.
        label_smoothing: Label smoothing (0.1); folded into the mixup targets when
            mixing is on, else a label-smoothing cross-entropy.
        mixup_alpha: Mixup's Beta(alpha, alpha) (0.8); 0 = no mixup.
        cutmix_alpha: CutMix's Beta(alpha, alpha) (1.0); 0 = no CutMix. With both
            at 0 there is no mixing and the loss uses the hard labels.
        mixup_prob: Probability of mixing a batch (1.0).
        mixup_switch_prob: Probability of CutMix instead of mixup when both are on
            (0.5).
        mixup_mode: Mix per ``"batch"``, ``"pair"`` or ``"elem"`` (``"batch"``).
        drop_path_rate: Stochastic depth of the encoder while fine-tuning (set when
            the encoder is built for the fine-tune).
        head_init_std: Std of the trunc-normal init of the new classifier's weight.
        head_init_scale: Factor on the new classifier's initial weight, or
            ``"auto"``: 0.001 for ViT / DeiT / BEiT (the official ViT's
            ``init_scale``: std 0.02 x 0.001), 1 otherwise (the official Swin head).
        rel_pos_per_block: Give every block its own copy of a shared relative
            position bias (the paper ViT), trained in that block's layer-decay
            group, as the official fine-tune does (``USE_RPB: True``,
            ``USE_SHARED_RPB: False``).
        rel_pos_weight_decay: Weight decay on per-block relative position tables of
            BEiT-style models, as the official optimiser gives them (its ViT's
            ``no_weight_decay`` names only ``pos_embed`` and ``cls_token``); False
            keeps timm's choice (none).
        mean_pooling: Fine-tune a BEiT-style model that pretrained with a final norm
            on every token on the mean of its patch tokens through a fresh LayerNorm
            (``fc_norm``) instead, as the official fine-tune does
            (``USE_MEAN_POOLING: True``).
        train_crop: ``"resized"``: ``RandomResizedCrop`` of ``crop_min_scale``..1 of
            the area; ``"padded"``: resize to the input size, then a random crop
            with ``crop_padding`` px of zero padding (the official code's branch for
            images of at most 32 px, which also evaluates without a crop);
            ``"auto"``: ``"padded"`` up to 32 px, else ``"resized"``.
        crop_min_scale: Smallest area fraction of the ``"resized"`` crop (0.08).
        crop_padding: Padding of the ``"padded"`` crop, in pixels (4).
        hflip: Probability of a horizontal flip (0.5).
        auto_augment: A timm auto-augment policy (``"rand-m9-mstd0.5-inc1"``:
            RandAugment, 2 ops of magnitude 9 +- 0.5, increasing severity), or None.
        color_jitter: Colour jitter strength, used only without ``auto_augment`` (as
            timm does); 0 = none.
        random_erase_prob: Probability of random erasing (0.25); 0 = none.
        random_erase_mode: ``"pixel"`` (per-pixel normal noise), ``"rand"`` or
            ``"const"``.
        random_erase_count: Erased rectangles per image.
        interpolation: Resampling of crops and resizes, ``"bicubic"``.
        crop_pct: Evaluation of ``"resized"`` crops: resize the shorter side to
            ``input_size / crop_pct``, then centre-crop ``input_size`` (0.875, the
            official 224 / 256).
    """

    # Optimiser and schedule.
    epochs: int = setting(100, ge=1)
    warmup_epochs: float = setting(20.0, ge=0)
    batch_size: int = setting(128, ge=1)
    base_lr: float = setting(1.25e-3, gt=0)
    base_warmup_lr: float = setting(2.5e-7, ge=0)
    base_min_lr: float = setting(2.5e-7, ge=0)
    weight_decay: float = setting(0.05, ge=0)
    layer_decay: float | Literal["auto"] = setting("auto", gt=0, le=1)
    betas: list[float] = setting(default_factory=lambda: [0.9, 0.999], ge=0, lt=1)
    eps: float = setting(1e-8, gt=0)
    clip_grad: float | None = setting(5.0, gt=0)
    # Loss and mixing.
    label_smoothing: float = setting(0.1, ge=0, lt=1)
    mixup_alpha: float = setting(0.8, ge=0)
    cutmix_alpha: float = setting(1.0, ge=0)
    mixup_prob: float = setting(1.0, ge=0, le=1)
    mixup_switch_prob: float = setting(0.5, ge=0, le=1)
    mixup_mode: MixupMode = "batch"
    # Model.
    drop_path_rate: float = setting(0.1, ge=0, lt=1)
    head_init_std: float = setting(0.02, gt=0)
    head_init_scale: float | Literal["auto"] = setting("auto", gt=0)
    rel_pos_per_block: bool = True
    rel_pos_weight_decay: bool = True
    mean_pooling: bool = True
    # Augmentation.
    train_crop: TrainCrop = "auto"
    crop_min_scale: float = setting(0.08, gt=0, le=1)
    crop_padding: int = setting(4, ge=0)
    hflip: float = setting(0.5, ge=0, le=1)
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: float = setting(0.4, ge=0)
    random_erase_prob: float = setting(0.25, ge=0, le=1)
    random_erase_mode: EraseMode = "pixel"
    random_erase_count: int = setting(1, ge=1)
    interpolation: Interpolation = "bicubic"
    crop_pct: float = setting(0.875, gt=0, le=1)

    @property
    def mixes(self) -> bool:
        """Whether batches are mixed (mixup or CutMix on, with a nonzero chance)."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mixup_prob > 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warmup_epochs > self.epochs:
            raise SettingError(
                "warmup_epochs",
                self.warmup_epochs,
                f"must be at most epochs ({self.epochs}); lower it for short schedules",
            )
        for name in ("layer_decay", "head_init_scale"):
            value = getattr(self, name)
            if isinstance(value, str) and value != "auto":
                raise SettingError(name, value, "must be 'auto' or a number")
        if len(self.betas) != 2:
            raise SettingError("betas", self.betas, "must be two numbers")
        if self.mixes and self.batch_size % 2:
            raise SettingError(
                "batch_size",
                self.batch_size,
                "must be even with mixup / CutMix (timm mixes each batch with its "
                "flipped self); use an even size or set mixup_alpha and "
                "cutmix_alpha to 0",
            )
        policy = self.auto_augment
        if policy is not None:
            problem = _auto_augment_problem(policy)
            if problem is not None:
                raise SettingError(
                    "auto_augment",
                    policy,
                    f"is not a timm policy ({problem}); use one such as "
                    "'rand-m9-mstd0.5-inc1', 'augmix-m5-w3', 'original' or 'v0', or "
                    "null for none",
                )


def _auto_augment_problem(policy: str) -> str | None:
    """Why timm would not build ``policy`` as written, or None.

    timm skips a section without a number (``rand-m9-bogus`` is ``rand-m9``: another
    policy than the one written) and stops with an assert or a ValueError on an
    unknown one, after the fine-tune started; the policy is built here instead.
    """
    # Imported here: the recipes are read without importing timm's data pipeline.
    from timm.data.auto_augment import (
        augment_and_mix_transform,
        auto_augment_transform,
        rand_augment_transform,
    )

    name, *sections = policy.split("-")
    if name not in _AUTO_AUGMENT_POLICIES:
        return f"unknown policy {name!r}"
    blank = [section for section in sections if not any(c.isdigit() for c in section)]
    if blank:
        return f"section {blank[0]!r} has no value, and timm would ignore it"
    build = {
        "rand": rand_augment_transform,
        "augmix": augment_and_mix_transform,
    }.get(name, auto_augment_transform)
    try:
        build(policy, {"translate_const": 100, "img_mean": (124, 116, 104)})
    except (AssertionError, ValueError, KeyError, IndexError) as error:
        return f"timm: {type(error).__name__}: {error}"
    return None


@dataclass(frozen=True)
class LinearRecipe(Checked):
    """The linear probe: MAE's protocol on frozen, cached features.

    Attributes:
        epochs: Passes over the training features (90, as in MAE).
        warmup_epochs: Epochs of linear warmup; None = ``min(10, epochs / 2)``.
        batch_size: Features per step.
        lr: Peak learning rate, used as given.
        optimizer: ``"sgd"`` (with momentum), ``"lars"`` or ``"adamw"``.
        momentum: Momentum of SGD / LARS.
        weight_decay: Weight decay of the linear layer.
        layer: The block / stage whose features are probed; None = the last.
        pooling: ``"default"`` (the encoder's own pooled features), ``"avg"`` or
            ``"cls"``.
    """

    epochs: int = setting(90, ge=1)
    warmup_epochs: float | None = setting(None, ge=0)
    batch_size: int = setting(256, ge=1)
    lr: float = setting(0.1, gt=0)
    optimizer: ProbeOptimizer = "sgd"
    momentum: float = setting(0.9, ge=0, le=1)
    weight_decay: float = setting(0.0, ge=0)
    layer: int | None = None
    pooling: Pooling = "default"

    @property
    def warmup(self) -> float:
        """The warmup in epochs: the given one, or ``min(10, epochs / 2)``."""
        if self.warmup_epochs is not None:
            return self.warmup_epochs
        return min(10.0, self.epochs / 2)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warmup > self.epochs:
            raise SettingError(
                "warmup_epochs",
                self.warmup_epochs,
                f"must be at most epochs ({self.epochs})",
            )


R = TypeVar("R", FinetuneRecipe, LinearRecipe)


def override(recipe: R, **values: object) -> R:
    """``recipe`` with the given fields replaced, where a value is not None.

    A shorter schedule given without its own warmup keeps the recipe's warmup only up
    to half of the new epochs (a 1-epoch fine-tune of a 20-warmup recipe warms up
    for half an epoch).

    Args:
        recipe: A fine-tune or linear-probe recipe.
        **values: Field values; None means "not given" (``0`` is a value).

    Returns:
        The new recipe (checked).

    Raises:
        SettingError: On a value out of range.
        TypeError: On a field the recipe does not have.
    """
    given = {key: value for key, value in values.items() if value is not None}
    names = {field.name for field in dataclasses.fields(recipe)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"{type(recipe).__name__} has no field {unknown[0]!r}.")
    if "epochs" in given and "warmup_epochs" not in given:
        current = recipe.warmup_epochs
        if current is not None:
            given["warmup_epochs"] = min(current, float(given["epochs"]) / 2)  # type: ignore[arg-type]
    return dataclasses.replace(recipe, **given)  # type: ignore[arg-type]
