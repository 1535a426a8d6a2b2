"""The model a fine-tune trains: the encoder's timm model with a new linear head.

For the paper's BEiT-style ViT the model is first put in its official fine-tuning
form (:mod:`lightly_simmim.evaluation.beit`): one relative position bias table per
block, mean pooling through a fresh ``fc_norm``.

Layer-wise learning-rate decay groups parameters with the timm model's own
``group_matcher`` (``create_optimizer_v2(..., layer_decay=d)``): a parameter in layer
``i`` of ``L + 2`` gets ``lr * d ** (L + 1 - i)``, where layer 0 is the patch
embedding / stem (class token, position embedding), layers ``1..L`` the blocks
(transformer blocks for ViT / BEiT; every block of every stage for Swin and ConvNeXt,
with a stage's downsampling grouped with its first block) and layer ``L + 1`` the new
head (also ``fc_norm`` / the ConvNeXt head norm); timm groups the final ``norm`` with
the last block.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from timm.layers import DropPath
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from lightly_simmim.encoders.base import MaskedEncoder, TimmMaskedEncoder
from lightly_simmim.evaluation.beit import split_shared_rel_pos_bias, use_mean_pooling
from lightly_simmim.evaluation.recipes import (
    HIERARCHICAL_LAYER_DECAY,
    VIT_HEAD_INIT_SCALE,
    VIT_LAYER_DECAY,
)

__all__ = [
    "drop_path_rate",
    "in_chans_of",
    "input_size_of",
    "is_vit",
    "resolve_head_init_scale",
    "resolve_layer_decay",
    "timm_classifier",
    "timm_model",
]


def timm_model(encoder: nn.Module) -> nn.Module:
    """The timm model a fine-tune trains: the adapter's, or ``encoder`` itself.

    Raises:
        TypeError: If ``encoder`` is neither a timm-backed adapter nor a timm model
            with ``reset_classifier`` and ``group_matcher``.
    """
    if isinstance(encoder, TimmMaskedEncoder):
        return encoder.timm_model
    if isinstance(encoder, MaskedEncoder):
        raise TypeError(
            f"{type(encoder).__name__} does not expose a timm model; fine-tuning "
            f"needs a TimmMaskedEncoder adapter or a timm model."
        )
    if callable(getattr(encoder, "reset_classifier", None)) and callable(
        getattr(encoder, "group_matcher", None)
    ):
        return encoder
    raise TypeError(
        f"finetune needs a SimMIM encoder adapter or a timm model (with "
        f"reset_classifier and group_matcher), got {type(encoder).__name__}."
    )


def is_vit(model: nn.Module) -> bool:
    """Whether the (wrapped) timm model is a plain ViT: ViT / DeiT / BEiT."""
    return isinstance(timm_model(model), (VisionTransformer, Beit))


def resolve_layer_decay(
    model: nn.Module, layer_decay: float | Literal["auto"]
) -> float:
    """The layer decay to use: ``layer_decay`` itself, or the family's for "auto".

    Args:
        model: The timm model (or a SimMIM encoder adapter wrapping it).
        layer_decay: A value in (0, 1], or ``"auto"``.

    Returns:
        0.65 for ViT / DeiT / BEiT and 0.9 for other models with ``"auto"``, else
        ``layer_decay``.
    """
    if layer_decay != "auto":
        return float(layer_decay)
    return VIT_LAYER_DECAY if is_vit(model) else HIERARCHICAL_LAYER_DECAY


def resolve_head_init_scale(
    model: nn.Module, head_init_scale: float | Literal["auto"]
) -> float:
    """The factor on the new head's initial weight, the family's for "auto".

    Args:
        model: The timm model (or a SimMIM encoder adapter wrapping it).
        head_init_scale: A positive value, or ``"auto"``.

    Returns:
        0.001 for ViT / DeiT / BEiT (the official ViT's ``init_scale``) and 1 for
        other models with ``"auto"``, else ``head_init_scale``.
    """
    if head_init_scale != "auto":
        return float(head_init_scale)
    return VIT_HEAD_INIT_SCALE if is_vit(model) else 1.0


def timm_classifier(
    encoder: nn.Module,
    num_classes: int,
    *,
    copy_model: bool = True,
    head_init_std: float = 0.02,
    head_init_scale: float = 1.0,
    rel_pos_per_block: bool = False,
    mean_pooling: bool = False,
) -> nn.Module:
    """The encoder's timm model with a new linear classifier on its pooled features.

    Args:
        encoder: A SimMIM encoder adapter (its ``timm_model`` is used; the mask token
            is not needed for fine-tuning) or a timm model.
        num_classes: Outputs of the new head.
        copy_model: Deep-copy the model first, so that the caller's encoder keeps
            its weights (False fine-tunes the shared model in place).
        head_init_std: Std of the trunc-normal init of the head's weight (bias 0).
        head_init_scale: Factor on the initial weight (the official ViT's
            ``init_scale`` is 0.001: std 0.02 x 0.001).
        rel_pos_per_block: For a ``Beit`` with a shared relative position bias,
            copy it into one table per block
            (:func:`~lightly_simmim.evaluation.beit.split_shared_rel_pos_bias`).
        mean_pooling: For a ``Beit`` with a final norm on every token, pool the
            mean of the patch tokens through a fresh ``fc_norm`` instead
            (:func:`~lightly_simmim.evaluation.beit.use_mean_pooling`).

    Returns:
        The timm model; ``model(images)`` gives ``(B, num_classes)`` logits.

    Raises:
        TypeError: If ``encoder`` is neither an adapter nor a timm classifier model.
    """
    model = timm_model(encoder)
    if copy_model:
        model = copy.deepcopy(model)
    if isinstance(model, Beit):
        if rel_pos_per_block:
            split_shared_rel_pos_bias(model)
        if mean_pooling:
            use_mean_pooling(model)
    model.reset_classifier(num_classes)  # type: ignore[operator]
    head = model.get_classifier()  # type: ignore[operator]
    if isinstance(head, nn.Linear):
        nn.init.trunc_normal_(head.weight, std=head_init_std)
        with torch.no_grad():
            head.weight.mul_(head_init_scale)
        nn.init.zeros_(head.bias)
    return model


def drop_path_rate(model: nn.Module) -> float:
    """The largest drop-path probability in ``model`` (timm ``DropPath`` layers).

    timm spaces the rates linearly over the blocks, so this is the model's
    ``drop_path_rate``; 0.0 if the model has no drop-path layer.
    """
    return max(
        (float(m.drop_prob) for m in model.modules() if isinstance(m, DropPath)),
        default=0.0,
    )


def in_chans_of(model: nn.Module) -> int:
    """Input channels: those of the first convolution (the patch embedding / stem in
    every timm family here).

    Raises:
        ValueError: If the model has no convolution.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    raise ValueError(f"Cannot find the input channels of {type(model).__name__}.")


def input_size_of(model: nn.Module) -> int | None:
    """The square ``img_size`` of a ViT / BEiT / Swin patch embedding, else None."""
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    if size is None:
        return None
    sides = {int(s) for s in size} if isinstance(size, (tuple, list)) else {int(size)}
    return sides.pop() if len(sides) == 1 else None
