"""Which official family a state dict is, and its architecture.

One :class:`~lightly_simmim.convert.architecture.FamilyConverter` per family is
registered in :data:`CONVERTERS`; everything else in this package dispatches through
it, so a new family is one new converter module plus one line here.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from lightly_simmim.convert.architecture import Architecture, Family, FamilyConverter
from lightly_simmim.convert.errors import OfficialCheckpointError, name_keys
from lightly_simmim.convert.swin import SwinConverter
from lightly_simmim.convert.vit import ViTConverter

__all__ = ["CONVERTERS", "detect_architecture", "detect_family"]

CONVERTERS: dict[Family, FamilyConverter] = {
    "vit": ViTConverter(),
    "swin": SwinConverter(v2=False),
    "swinv2": SwinConverter(v2=True),
}
"""The converter of each official family, by family name."""


def detect_family(state: Mapping[str, Tensor]) -> Family | None:
    """The official family of backbone tensors, or None if none matches.

    Args:
        state: Backbone tensors under the official names (a fine-tuning
            checkpoint's ``'model'``, or a pretraining one's without ``encoder.``).

    Returns:
        ``"vit"``, ``"swin"``, ``"swinv2"``, or None.
    """
    if "patch_embed.proj.weight" not in state:
        return None
    for family, converter in CONVERTERS.items():
        if converter.matches(state):
            return family
    return None


def detect_architecture(
    state: Mapping[str, Tensor],
    config: Mapping[str, object] | None = None,
    *,
    img_size: int | tuple[int, int] | None = None,
) -> Architecture:
    """The timm model that rebuilds an official backbone, from its tensors.

    Family, embed dim, depth(s), heads, patch size, MLP ratio, qkv bias, layer scale,
    position bias layout, window size and image size come from tensor names and
    shapes (the window and image size of Swin from the stored buffers); the config
    is read only for what the tensors leave open.

    Args:
        state: Backbone tensors under the official names (no ``encoder.`` prefix;
            see :attr:`OfficialCheckpoint.encoder_state`).
        config: The checkpoint's config as plain data, if any.
        img_size: Image size to assume if neither tensors nor config tell it.

    Returns:
        Family, registered timm name and the timm keyword arguments.

    Raises:
        OfficialCheckpointError: If the tensors are no official family, or describe
            a model timm cannot build.

    Examples:
        >>> ckpt = read_official_checkpoint("simmim_pretrain__swin_base__img192.pth")
        >>> arch = detect_architecture(ckpt.encoder_state, ckpt.config)
        >>> kwargs = arch.timm_kwargs
        >>> arch.timm_name, kwargs["window_size"], kwargs["img_size"]
        ('swin_base_patch4_window7_224', 6, 192)
    """
    family = detect_family(state)
    if family is None:
        raise OfficialCheckpointError(
            f"Not an official SimMIM backbone: the tensors "
            f"({name_keys(sorted(state))}) are not an official ViT, Swin or SwinV2."
        )
    return CONVERTERS[family].detect(state, config, img_size)
