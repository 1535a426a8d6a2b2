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

Pooling = Literal["default", "avg", "cls"]
ProbeOptimizer = Literal["sgd", "lars", "adamw"]


@dataclass(frozen=True)
class FinetuneRecipe(Checked):
    """Optimisation settings of a fine-tune; defaults are SimMIM's ViT-B recipe.

    Attributes:
        epochs: Training epochs (100 in the paper).
        warmup_epochs: Epochs of linear warmup (20), at most ``epochs``.
        batch_size: Images per device and step (the paper's global batch is 2048).
        base_lr: Learning rate per 512 images: ``lr = base_lr * global batch / 512``.
        base_warmup_lr: Learning rate at the start of warmup, per 512 images.
        base_min_lr: Final learning rate of the cosine, per 512 images.
        weight_decay: AdamW weight decay, not applied to 1-D parameters, biases and
            the model's ``no_weight_decay()`` names.
        layer_decay: Layer-wise learning-rate decay, or ``"auto"``: 0.65 for ViT /
            DeiT / BEiT (ViT-B), 0.9 otherwise (Swin-B; also used for ConvNeXt,
            where the paper has no value). 1.0 disables it.
        betas: AdamW betas.
        eps: AdamW epsilon.
        label_smoothing: Label smoothing of the cross-entropy (0.1).
        clip_grad: Gradient norm clip (5.0), or None for none.
        head_init_std: Std of the trunc-normal init of the new classifier's weight.
        drop_path_rate: Stochastic depth of the encoder while fine-tuning (set when
            the encoder is built for the fine-tune).
        crop_min_scale: Smallest area fraction of the training crop
            (``RandomResizedCrop``): 0.08 as on ImageNet; small images and short
            schedules learn faster with a larger one.
    """

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
    label_smoothing: float = setting(0.1, ge=0, lt=1)
    clip_grad: float | None = setting(5.0, gt=0)
    head_init_std: float = setting(0.02, gt=0)
    drop_path_rate: float = setting(0.1, ge=0, lt=1)
    crop_min_scale: float = setting(0.08, gt=0, le=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warmup_epochs > self.epochs:
            raise SettingError(
                "warmup_epochs",
                self.warmup_epochs,
                f"must be at most epochs ({self.epochs}); lower it for short schedules",
            )
        if isinstance(self.layer_decay, str) and self.layer_decay != "auto":
            raise SettingError(
                "layer_decay", self.layer_decay, "must be 'auto' or a number"
            )
        if len(self.betas) != 2:
            raise SettingError("betas", self.betas, "must be two numbers")


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
