"""SimMIM adapter for timm's ``VisionTransformer`` (ViT, DeiT, DeiT distilled).

The masked forward is lightly's ``MaskedVisionTransformerTIMM``, which already
replaces tokens by a mask token (``mask=`` over the full sequence, prefix tokens
included) before adding position embeddings. This module only turns the (B, h, w)
SimMIM mask into that sequence mask and the output tokens back into a feature map.

Image sizes: with a fixed-size ViT (timm's default) the images must have exactly the
model's ``img_size``, which may be non-square (``img_size=(192, 256)``). With
``dynamic_img_size=True`` any square multiple of the patch size works; non-square
inputs then raise, because lightly's masked ViT resamples the position embedding to
a square grid (build a fixed-size model with ``img_size=(H, W)`` instead).
"""

from __future__ import annotations

import torch
from lightly.models.modules import MaskedVisionTransformerTIMM
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from lightly_simmim.encoders.base import (
    TimmMaskedEncoder,
    new_mask_token,
    prepare_timm_model,
    square_size,
)


class _MaskedViT(MaskedVisionTransformerTIMM):  # type: ignore[misc, unused-ignore]
    """lightly's masked ViT that also knows DeiT's distillation token.

    timm's ``VisionTransformerDistilled`` puts ``[cls, dist]`` before the patch tokens
    (``num_prefix_tokens == 2``); lightly only prepends class and register tokens, so
    without this the distillation token's slot would hold a patch token.
    """

    def prepend_prefix_tokens(self, x: Tensor) -> Tensor:
        dist_token = getattr(self.vit, "dist_token", None)
        if dist_token is None:
            out: Tensor = super().prepend_prefix_tokens(x)
            return out
        batch = x.shape[0]
        prefix = [self.vit.cls_token.expand(batch, -1, -1)]  # (B, 1, D)
        prefix.append(dist_token.expand(batch, -1, -1))  # (B, 1, D)
        return torch.cat([*prefix, x], dim=1)  # (B, 2 + h * w, D)


class ViTEncoder(TimmMaskedEncoder):
    """SimMIM encoder for timm ``VisionTransformer`` models (ViT, DeiT).

    Class, register and distillation tokens are supported; they are never masked and
    are dropped from the feature map. The given model's weights are kept as they are
    (lightly's re-initialisation is skipped), so a pretrained timm model can be
    wrapped. Its classifier is removed (see :func:`prepare_timm_model`).

    ``forward`` returns timm's pooled pre-logits features (class token, or the average
    of patch tokens for ``global_pool="avg"``, with ``fc_norm`` if the model has one).

    Args:
        model: A timm ``VisionTransformer`` with square patches and a learned
            absolute position embedding.

    Raises:
        TypeError: If ``model`` is not a ``VisionTransformer``.
        ValueError: If it has no position embedding or non-square patches.

    Examples:
        >>> vit = timm.create_model("vit_base_patch16_224", num_classes=0)
        >>> enc = ViTEncoder(vit)
        >>> enc.forward_masked(images, mask).shape  # mask (B, 14, 14)
        torch.Size([B, 768, 14, 14])
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, VisionTransformer):
            raise TypeError(
                f"ViTEncoder wraps timm VisionTransformer models, got "
                f"{type(model).__name__}."
            )
        if model.pos_embed is None:
            raise ValueError(
                "ViTEncoder needs a ViT with an absolute position embedding "
                "(pos_embed='learn'); lightly's masked ViT adds it unconditionally."
            )
        self._patch_size = square_size(model.patch_embed.patch_size, "patch size")
        # One token per patch: the feature map keeps the patch grid.
        self._encoder_stride = self._patch_size
        self._in_chans = int(model.patch_embed.proj.in_channels)
        prepare_timm_model(model)
        self.mask_token = new_mask_token(model.embed_dim)
        # The same Parameter is registered here and inside lightly's module: it is
        # named "mask_token" by named_parameters() (which lists it once), and the
        # state dict holds it under both names.
        self.encoder = _MaskedViT(
            vit=model,
            mask_token=self.mask_token,
            weight_initialization="skip",
            pos_embed_initialization="skip",
        )

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        """True for timm ``VisionTransformer`` and its subclasses (DeiT distilled)."""
        return isinstance(model, VisionTransformer)

    @property
    def timm_model(self) -> VisionTransformer:
        """The wrapped timm ViT."""
        vit: VisionTransformer = self.encoder.vit
        return vit

    def forward_masked(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encodes images with masked patches replaced by the mask token.

        Args:
            images: (B, in_chans, H, W); (H, W) must be the model's ``img_size``, or
                square if the model has ``dynamic_img_size=True``.
            mask: Bool (B, H / patch_size, W / patch_size), True = masked; None
                masks nothing.

        Returns:
            Feature map (B, D, H / patch_size, W / patch_size) of the patch tokens.

        Raises:
            ValueError: If the images or the mask do not fit the model.
        """
        self.check_mask(images, mask)
        vit = self.timm_model
        batch = images.shape[0]
        grid = (images.shape[2] // self.patch_size, images.shape[3] // self.patch_size)
        self._check_grid(vit, grid)
        num_prefix = int(vit.num_prefix_tokens)

        sequence_mask = None
        if mask is not None:
            # lightly masks the whole sequence, prefix tokens first: never mask them.
            prefix = mask.new_zeros(batch, num_prefix, dtype=torch.bool)
            sequence_mask = torch.cat([prefix, mask.flatten(1).bool()], dim=1)
            # sequence_mask: (B, num_prefix + h * w)
        tokens: Tensor = self.encoder.encode(images, mask=sequence_mask)
        # tokens: (B, num_prefix + h * w, D)
        tokens = tokens[:, num_prefix:]  # (B, h * w, D), row-major over the grid
        # (B, h * w, D) -> (B, D, h * w) -> (B, D, h, w)
        return tokens.transpose(1, 2).reshape(batch, -1, *grid)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Enables or disables activation checkpointing in the blocks."""
        self.encoder.set_grad_checkpointing(enable)
        super().set_grad_checkpointing(enable)

    @staticmethod
    def _check_grid(vit: VisionTransformer, grid: tuple[int, int]) -> None:
        model_grid = tuple(int(g) for g in vit.patch_embed.grid_size)
        if vit.dynamic_img_size:
            if grid[0] != grid[1] or model_grid[0] != model_grid[1]:
                raise ValueError(
                    f"A ViT with dynamic_img_size=True takes square images (token "
                    f"grid {grid}) and must be built square (grid {model_grid}): "
                    f"lightly's masked ViT resamples the position embedding between "
                    f"square grids only. Create the model with img_size=(H, W) for "
                    f"non-square images."
                )
            return
        if model_grid != grid:
            raise ValueError(
                f"The ViT was built for a {model_grid} token grid (img_size "
                f"{tuple(vit.patch_embed.img_size)}), got images with a {grid} grid; "
                f"create it with img_size=(H, W) or dynamic_img_size=True."
            )
