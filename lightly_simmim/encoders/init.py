"""The official SimMIM pretraining initialisation of the paper's ViT.

timm initialises ViT / BEiT weights from a normal distribution with std 0.02
truncated at +-2 (in absolute terms, i.e. not at all). The official SimMIM
pretraining model truncates at +-1 std instead (its ``_trunc_normal_`` passes
``a=-std, b=std``), which gives an effective std of about 0.011, for every Linear
and Conv2d weight, the class token, the position embedding and the mask token; it
then divides each block's ``attn.proj`` and ``mlp.fc2`` weights by ``sqrt(2 * i)``
(BEiT's rescaling, which timm's Beit also applies). ``encoder.init: simmim`` in a
config selects this.
"""

from __future__ import annotations

import math

import torch
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from lightly_simmim.encoders.base import MaskedEncoder, TimmMaskedEncoder

__all__ = ["simmim_vit_init_"]

_STD = 0.02


def _truncated_(tensor: torch.Tensor) -> None:
    nn.init.trunc_normal_(tensor, mean=0.0, std=_STD, a=-_STD, b=_STD)


@torch.no_grad()
def simmim_vit_init_(encoder: MaskedEncoder) -> None:
    """Re-initialises a ViT / BEiT encoder as the official SimMIM pretraining does.

    Args:
        encoder: A SimMIM adapter around a timm ``Beit`` or ``VisionTransformer``.

    Raises:
        ValueError: For any other encoder (the official initialisation is the
            ViT's; Swin and ConvNeXt keep timm's).
    """
    model = encoder.timm_model if isinstance(encoder, TimmMaskedEncoder) else None
    if not isinstance(model, (Beit, VisionTransformer)):
        raise ValueError(
            "encoder.init: simmim is the official initialisation of the paper's ViT "
            "(timm Beit / VisionTransformer), not of "
            f"{type(model or encoder).__name__}; use encoder.init: timm."
        )
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            _truncated_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for name in ("cls_token", "pos_embed"):
        token = getattr(model, name, None)
        if isinstance(token, nn.Parameter):
            _truncated_(token)
    _truncated_(encoder.mask_token)
    for layer, block in enumerate(model.blocks, start=1):
        for name in ("attn.proj", "mlp.fc2"):
            linear = block.get_submodule(name)
            assert isinstance(linear, nn.Linear)
            linear.weight.div_(math.sqrt(2.0 * layer))
