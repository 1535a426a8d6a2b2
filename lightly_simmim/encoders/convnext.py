"""SimMIM adapter for timm's ``ConvNeXt`` (V1 and V2, which share the timm class).

The mask token replaces the stem's output at masked positions (the stem's stride is
the model patch size, 4), then the four stages and ``norm_pre`` give a NCHW feature
map of stride 32. A convolutional encoder sees masked tokens only through the mask
token, so no masked pixel leaks into the features as long as the stem is the
default non-overlapping ``stem_type="patch"``. With an overlapping stem (``*_ols``
models) the stem outputs next to a masked region have seen a few masked pixels.
"""

from __future__ import annotations

import math

from timm.models.convnext import ConvNeXt
from torch import Tensor, nn

from lightly_simmim.encoders.base import (
    TimmMaskedEncoder,
    new_mask_token,
    prepare_timm_model,
    square_size,
)


class ConvNeXtEncoder(TimmMaskedEncoder):
    """SimMIM encoder for timm ``ConvNeXt`` models.

    ``forward`` is timm's pooled pre-logits features (global average pool, then the
    head's LayerNorm). The model's classifier is removed (see
    :func:`prepare_timm_model`); its weights are otherwise kept.

    Args:
        model: A timm ``ConvNeXt``.

    Raises:
        TypeError: If ``model`` is not a ``ConvNeXt``.

    Examples:
        >>> enc = from_timm("convnext_tiny")
        >>> enc.forward_masked(images, mask).shape  # images (B, 3, 224, 224)
        torch.Size([B, 768, 7, 7])
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, ConvNeXt):
            raise TypeError(
                f"ConvNeXtEncoder wraps timm ConvNeXt models, got {type(model)}."
            )
        convs = [m for m in model.stem.modules() if isinstance(m, nn.Conv2d)]
        # The stem's total stride: one mask token per stem output position.
        self._patch_size: int = math.prod(
            square_size(conv.stride, "stem stride") for conv in convs
        )
        # timm's feature_info: one {"num_chs", "reduction", ...} per stage.
        reduction = model.feature_info[-1]["reduction"]
        assert isinstance(reduction, int)
        self._encoder_stride = reduction
        self._in_chans = int(convs[0].in_channels)
        prepare_timm_model(model)
        self.model = model
        self.mask_token = new_mask_token(int(convs[-1].out_channels))

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        """True for timm ``ConvNeXt`` models (including ``convnextv2_*``)."""
        return isinstance(model, ConvNeXt)

    @property
    def timm_model(self) -> ConvNeXt:
        """The wrapped timm ConvNeXt."""
        return self.model

    def forward_masked(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encodes images with masked stem outputs replaced by the mask token.

        Args:
            images: (B, in_chans, H, W), any size that is a multiple of the encoder
                stride.
            mask: Bool (B, H / patch_size, W / patch_size), True = masked; None
                masks nothing.

        Returns:
            Feature map (B, num_features, H / encoder_stride, W / encoder_stride).

        Raises:
            ValueError: If the images or the mask do not fit the model.
        """
        self.check_mask(images, mask)
        model = self.model
        x = model.stem(images)  # (B, C0, h, w), NCHW
        if mask is not None:
            # Blend in NCHW: the mask broadcasts over channels, the token over space.
            w = mask.unsqueeze(1).to(x.dtype)  # (B, 1, h, w)
            token = self.mask_token.to(x.dtype).view(1, -1, 1, 1)  # (1, C0, 1, 1)
            x = x * (1.0 - w) + token * w
        x = model.stages(x)  # (B, C, H / stride, W / stride)
        out: Tensor = model.norm_pre(x)
        return out
