"""SimMIM adapter for timm's ``Beit``, and the paper's ViT built from it.

The ViT of the SimMIM paper is BEiT-style: no absolute position embedding, one
relative position bias shared by all blocks, and layer scale (init 0.1). timm's
``Beit`` builds exactly that with :data:`SIMMIM_VIT_KWARGS`::

    enc = from_timm("beit_base_patch16_224", **SIMMIM_VIT_KWARGS)  # ViT-B/16 @ 224
    enc = simmim_vit("beit_base_patch16_224", img_size=192)        # the same, helper

Images must have the model's ``img_size`` (which may be non-square): the relative
position bias tables are built for that token grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch
import torch.utils.checkpoint
from timm.models.beit import Beit
from torch import Tensor, nn

from lightly_simmim.encoders.base import (
    TimmMaskedEncoder,
    blend_mask_token,
    new_mask_token,
    prepare_timm_model,
    square_size,
)
from lightly_simmim.encoders.factory import TimmKwargs, create_timm_model

SIMMIM_VIT_KWARGS: Mapping[str, object] = MappingProxyType(
    {
        "use_abs_pos_emb": False,
        "use_rel_pos_bias": False,
        "use_shared_rel_pos_bias": True,
        "init_values": 0.1,
        # The final norm on every token, as in SimMIM's pretraining (timm's default
        # with average pooling would skip it and normalise only the pooled vector).
        "use_fc_norm": False,
    }
)
"""timm ``Beit`` keyword arguments for the SimMIM paper's ViT: shared relative
position bias instead of absolute position embeddings, layer scale 0.1, and the final
LayerNorm applied to every token (average pooling then pools normalised tokens)."""


class BEiTEncoder(TimmMaskedEncoder):
    """SimMIM encoder for timm ``Beit`` models (BEiT v1/v2 and the paper's ViT).

    The masked forward follows timm's ``Beit.forward_features``: patch embedding,
    mask token, class token, absolute position embedding (if any), the shared
    relative position bias (if any) passed to every block, final norm; the class
    token is then dropped. The model's classifier is removed (see
    :func:`prepare_timm_model`); its weights are otherwise kept.

    ``forward`` returns timm's pooled pre-logits features (average of patch tokens by
    default, or the class token for ``global_pool="token"``).

    Args:
        model: A timm ``Beit`` with square patches.

    Raises:
        TypeError: If ``model`` is not a ``Beit``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, Beit):
            raise TypeError(f"BEiTEncoder wraps timm Beit models, got {type(model)}.")
        self._patch_size = square_size(model.patch_embed.patch_size, "patch size")
        # One token per patch: the feature map keeps the patch grid.
        self._encoder_stride = self._patch_size
        self._in_chans = int(model.patch_embed.proj.in_channels)
        prepare_timm_model(model)
        self.model = model
        self.mask_token = new_mask_token(model.embed_dim)

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        """True for timm ``Beit`` models."""
        return isinstance(model, Beit)

    @property
    def timm_model(self) -> Beit:
        """The wrapped timm Beit."""
        return self.model

    def forward_masked(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encodes images with masked patches replaced by the mask token.

        Args:
            images: (B, in_chans, H, W) with (H, W) the model's ``img_size``.
            mask: Bool (B, H / patch_size, W / patch_size), True = masked; None
                masks nothing.

        Returns:
            Feature map (B, D, H / patch_size, W / patch_size) of the patch tokens.

        Raises:
            ValueError: If the images or the mask do not fit the model.
        """
        self.check_mask(images, mask)
        model = self.model
        batch = images.shape[0]
        grid = (images.shape[2] // self.patch_size, images.shape[3] // self.patch_size)
        model_grid = tuple(int(g) for g in model.patch_embed.grid_size)
        if grid != model_grid:
            raise ValueError(
                f"The Beit was built for a {model_grid} token grid (img_size "
                f"{tuple(model.patch_embed.img_size)}), got images with a {grid} "
                f"grid; create it with img_size=(H, W)."
            )

        x = model.patch_embed(images)  # (B, h * w, D), row-major over the grid
        if mask is not None:
            x = blend_mask_token(x, mask.flatten(1), self.mask_token)
        cls_token = model.cls_token.expand(batch, -1, -1)  # (B, 1, D)
        x = torch.cat([cls_token, x], dim=1)  # (B, 1 + h * w, D)
        if model.pos_embed is not None:
            x = x + model.pos_embed
        x = model.pos_drop(x)

        # One bias (heads, 1 + h * w, 1 + h * w) for all blocks, computed once.
        shared_bias = model.rel_pos_bias() if model.rel_pos_bias is not None else None
        for block in model.blocks:
            if model.grad_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(
                    block, x, shared_rel_pos_bias=shared_bias, use_reentrant=False
                )
            else:
                x = block(x, shared_rel_pos_bias=shared_bias)
        x = model.norm(x)

        x = x[:, model.num_prefix_tokens :]  # drop the class token: (B, h * w, D)
        # (B, h * w, D) -> (B, D, h * w) -> (B, D, h, w)
        out: Tensor = x.transpose(1, 2).reshape(batch, -1, *grid)
        return out


def simmim_vit(name: str = "beit_base_patch16_224", **kwargs: object) -> BEiTEncoder:
    """Builds the SimMIM paper's ViT (BEiT-style, see :data:`SIMMIM_VIT_KWARGS`).

    Args:
        name: A registered timm ``beit_*`` name giving the size (base, large).
        **kwargs: Passed to ``timm.create_model`` after :data:`SIMMIM_VIT_KWARGS`,
            which they override (e.g. ``img_size=192``, ``in_chans=1``,
            ``drop_path_rate=0.1``). Never downloads weights.

    Returns:
        A randomly initialised :class:`BEiTEncoder` without classifier.
    """
    arguments: TimmKwargs = {**SIMMIM_VIT_KWARGS, **kwargs}
    return BEiTEncoder(create_timm_model(name, **arguments))
