"""The paper's ViT (timm ``Beit``) in its fine-tuning form, as the official code has it.

SimMIM pretrains its ViT with one relative position bias shared by all blocks and a
LayerNorm on every output token (``USE_SHARED_RPB: True``, ``USE_MEAN_POOLING:
False``); the official fine-tune builds the same ViT with one bias table per block and
mean pooling through a fresh LayerNorm (``USE_RPB: True``, ``USE_MEAN_POOLING:
True``), copies the shared table into every block's
(``utils.remap_pretrained_keys_vit``) and drops the pretrained final norm. These
functions make that change on a timm ``Beit`` in place, keeping every trained
weight; a block that already has a table of its own keeps it, with the shared bias
added (the sum is the bias it applied before).
"""

from __future__ import annotations

import copy
from typing import Any

from timm.models.beit import Beit
from torch import nn

__all__ = ["split_shared_rel_pos_bias", "use_mean_pooling"]


def split_shared_rel_pos_bias(model: Beit) -> bool:
    """Copies a shared relative position bias into one table per block, in place.

    Afterwards ``blocks.<i>.attn.relative_position_bias_table`` are separate
    parameters, each equal to the shared table at first, and ``model.rel_pos_bias``
    is None; the model computes the same function as before.

    Args:
        model: A timm ``Beit``.

    Returns:
        True if there was a shared bias to split, False if the model has none.
    """
    # timm's Beit submodules are untyped: Any for their attributes.
    shared: Any = model.rel_pos_bias
    if shared is None:
        return False
    table = shared.relative_position_bias_table.detach()  # (distances, heads)
    block: Any
    for block in model.blocks:
        attn = block.attn
        own = attn.relative_position_bias_table
        # timm adds a block's own bias to the shared one: their sum is the bias.
        values = table.clone() if own is None else own.detach() + table
        attn.window_size = shared.window_size
        attn.num_relative_distance = table.shape[0]
        attn.relative_position_bias_table = nn.Parameter(values)
        if "relative_position_index" not in dict(attn.named_buffers(recurse=False)):
            # A plain None attribute until now; a buffer moves with the model.
            del attn.relative_position_index
        attn.register_buffer(
            "relative_position_index",
            shared.relative_position_index.clone(),
            persistent=False,
        )
    model.rel_pos_bias = None  # type: ignore[assignment]
    return True


def use_mean_pooling(model: Beit) -> bool:
    """Mean pooling through a fresh ``fc_norm`` instead of a final norm, in place.

    A Beit built with ``use_fc_norm=False`` normalises every token (``norm``) and has
    no ``fc_norm``; this replaces ``norm`` by an identity and adds a new LayerNorm of
    the same kind (weight 1, bias 0) after the average of the patch tokens.

    Args:
        model: A timm ``Beit``.

    Returns:
        True if the model changed, False if it already pooled this way.
    """
    changed = False
    if isinstance(model.fc_norm, nn.Identity) and not isinstance(
        model.norm, nn.Identity
    ):
        fresh = copy.deepcopy(model.norm)
        fresh.reset_parameters()  # type: ignore[operator]
        model.fc_norm = fresh
        model.norm = nn.Identity()
        changed = True
    if model.global_pool != "avg":
        model.global_pool = "avg"
        changed = True
    return changed
