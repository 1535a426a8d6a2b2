"""SimMIM adapters for timm's ``SwinTransformer`` and ``SwinTransformerV2``.

Both families share the masked forward: timm's patch embedding returns NHWC tokens
with its LayerNorm already applied, and SimMIM puts the mask token right after that
norm (so the mask token is not normalised), then the stages, the final norm, and a
NCHW feature map with stride ``patch_size * 2 ** (stages - 1)`` (32 for the standard
four stages).

Image sizes: a Swin built with the default ``strict_img_size=True`` takes exactly its
``img_size`` (square or not, e.g. ``img_size=(192, 256)``); with
``dynamic_img_size=True`` it takes any multiple of the encoder stride. The paper's
Swin-B at 192 px with window 6 is ``from_timm("swin_base_patch4_window6_192")``.
The ``swinv2_cr_*`` models are a different timm class and are not supported.
"""

from __future__ import annotations

from typing import ClassVar

from timm.layers import PatchEmbed
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2
from torch import Tensor, nn

from lightly_simmim.encoders.base import (
    TimmMaskedEncoder,
    blend_mask_token,
    new_mask_token,
    prepare_timm_model,
    square_size,
)


def _patch_embed(model: SwinTransformer | SwinTransformerV2) -> PatchEmbed:
    """The model's patch embedding, typed: timm builds Swin V1's from a callable."""
    embed = model.patch_embed
    assert isinstance(embed, PatchEmbed)  # timm's default embed_layer
    return embed


class _SwinFamilyEncoder(TimmMaskedEncoder):
    """The masked forward shared by Swin V1 and V2; subclasses name the timm class.

    Args:
        model: An instance of :attr:`timm_class` with square patches.

    Raises:
        TypeError: If ``model`` is not an instance of :attr:`timm_class`.
    """

    timm_class: ClassVar[type[nn.Module]]
    """The timm model class this adapter wraps."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not self.supports(model):
            raise TypeError(
                f"{type(self).__name__} wraps timm {self.timm_class.__name__} "
                f"models, got {type(model).__name__}."
            )
        assert isinstance(model, (SwinTransformer, SwinTransformerV2))
        embed = _patch_embed(model)
        self._patch_size = square_size(embed.patch_size, "patch size")
        # The last stage's reduction is the stride of the final feature map.
        self._encoder_stride = int(model.feature_info[-1]["reduction"])
        self._in_chans = int(embed.proj.in_channels)
        prepare_timm_model(model)
        self.model: SwinTransformer | SwinTransformerV2 = model
        self.mask_token = new_mask_token(int(embed.proj.out_channels))

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        """True for instances of :attr:`timm_class`."""
        return isinstance(model, cls.timm_class)

    @property
    def timm_model(self) -> SwinTransformer | SwinTransformerV2:
        """The wrapped timm Swin model."""
        return self.model

    def forward_masked(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encodes images with masked patches replaced by the mask token.

        Args:
            images: (B, in_chans, H, W); (H, W) the model's ``img_size`` unless it
                was built with ``dynamic_img_size=True``.
            mask: Bool (B, H / patch_size, W / patch_size), True = masked; None
                masks nothing.

        Returns:
            Feature map (B, num_features, H / encoder_stride, W / encoder_stride).

        Raises:
            ValueError: If the images or the mask do not fit the model.
        """
        self.check_mask(images, mask)
        model = self.model
        embed = _patch_embed(model)
        grid = (images.shape[2] // self.patch_size, images.shape[3] // self.patch_size)
        model_grid = tuple(int(g) for g in embed.grid_size)
        if not model.dynamic_img_size and grid != model_grid:
            raise ValueError(
                f"The {type(model).__name__} was built for a {model_grid} token grid "
                f"(img_size {tuple(embed.img_size)}), got images with a "
                f"{grid} grid; create it with img_size=(H, W) or "
                f"dynamic_img_size=True."
            )

        x = embed(images)  # (B, h, w, C0), NHWC, after the embed's norm
        if mask is not None:
            x = blend_mask_token(x, mask, self.mask_token)
        # Older Swin checkpoints / forks carry an absolute position embedding; timm
        # 1.x Swins do not. Shaped (1, h * w, C0) or (1, h, w, C0).
        pos_embed = getattr(model, "absolute_pos_embed", None)
        if pos_embed is not None:
            x = x + pos_embed.reshape(1, *grid, -1)  # (B, h, w, C0)
            pos_drop = getattr(model, "pos_drop", None)
            if pos_drop is not None:
                x = pos_drop(x)
        x = model.layers(x)  # (B, H / stride, W / stride, C), still NHWC
        x = model.norm(x)
        out: Tensor = x.permute(0, 3, 1, 2)  # NHWC -> NCHW: (B, C, H / s, W / s)
        return out


class SwinEncoder(_SwinFamilyEncoder):
    """SimMIM encoder for timm ``SwinTransformer`` (Swin V1) models.

    No weight decay on the relative position bias tables (and an absolute position
    embedding, if present), besides the mask token. ``forward`` is timm's average
    pooled, normalised last feature map.

    Examples:
        >>> enc = from_timm("swin_base_patch4_window6_192")  # the paper's Swin-B
        >>> enc.forward_masked(images, mask).shape  # images (B, 3, 192, 192)
        torch.Size([B, 1024, 6, 6])
    """

    timm_class = SwinTransformer
    no_weight_decay_keywords = ("relative_position_bias_table", "absolute_pos_embed")


class SwinV2Encoder(_SwinFamilyEncoder):
    """SimMIM encoder for timm ``SwinTransformerV2`` models (not ``swinv2_cr_*``).

    No weight decay on the continuous position bias MLPs (``cpb_mlp``), the attention
    ``logit_scale`` (as timm lists them) and any position table, besides the mask
    token.
    """

    timm_class = SwinTransformerV2
    no_weight_decay_keywords = (
        "cpb_mlp",
        "logit_scale",
        "relative_position_bias_table",
        "absolute_pos_embed",
    )
