"""The fine-tune's optimiser: AdamW over timm's layer-decay groups.

Parameters are grouped by ``timm.optim.param_groups_layer_decay`` (the model's own
``group_matcher``; see :mod:`lightly_simmim.evaluation.classifier` for the layer
ids), so each group carries the ``lr_scale`` that the schedule multiplies in. No
weight decay goes to 1-D parameters, biases and the model's ``no_weight_decay()``
names, with one change that follows the official SimMIM optimiser
(``optimizer.py``): its ViT's ``no_weight_decay`` names only ``pos_embed`` and
``cls_token``, so its per-block relative position tables are decayed, whereas timm's
``Beit`` exempts every ``relative_position_bias_table``. Swin's tables stay exempt
in both (the official Swin lists them in ``no_weight_decay_keywords``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from timm.models.beit import Beit
from torch import nn

from lightly_simmim.optim import create_optimizer, timm_no_weight_decay

__all__ = ["finetune_optimizer", "no_weight_decay_names"]

_REL_POS_TABLE = "relative_position_bias_table"


def no_weight_decay_names(model: nn.Module, rel_pos_weight_decay: bool) -> set[str]:
    """Parameter names that get no weight decay (besides 1-D ones and biases).

    Args:
        model: The timm model being fine-tuned.
        rel_pos_weight_decay: Decay the relative position tables of a ``Beit``, as
            the official fine-tune of the paper ViT does.

    Returns:
        The model's ``no_weight_decay()`` names (none if it has no such method),
        without a ``Beit``'s relative position tables if ``rel_pos_weight_decay``.
    """
    names = timm_no_weight_decay(model)
    if rel_pos_weight_decay and isinstance(model, Beit):
        names = {name for name in names if _REL_POS_TABLE not in name}
    return names


def finetune_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float,
    betas: Sequence[float],
    eps: float,
    rel_pos_weight_decay: bool = True,
    fused: bool | None = None,
    dims: Mapping[str, int] | None = None,
) -> torch.optim.Optimizer:
    """AdamW over the layer-decay groups of ``model``.

    Args:
        model: The timm model being fine-tuned (with its new head).
        lr: Learning rate of the head's layer; layer ``i`` of ``L + 2`` gets
            ``lr * layer_decay ** (L + 1 - i)`` through the schedule.
        weight_decay: Weight decay of the decayed groups.
        layer_decay: Layer-wise learning-rate decay in (0, 1]; 1 for none.
        betas: AdamW betas.
        eps: AdamW epsilon.
        rel_pos_weight_decay: See :func:`no_weight_decay_names`.
        fused: torch's fused AdamW kernel (much faster on CPUs); None = wherever
            every parameter allows it (float, on the CPU or a CUDA device).
        dims: ``model``'s parameter dimensions recorded before a strategy wrapped
            it (:func:`lightly_simmim.optim.parameter_dims`); None = as they are now.

    Returns:
        The optimiser; every group has ``lr_scale`` and ``weight_decay``.
    """
    return create_optimizer(
        model,
        lr=lr,
        weight_decay=weight_decay,
        betas=list(betas),
        eps=eps,
        layer_decay=layer_decay,
        fused=fused,
        no_weight_decay=no_weight_decay_names(model, rel_pos_weight_decay),
        dims=dims,
    )
