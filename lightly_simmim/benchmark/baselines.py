"""The benchmark's reference rows that are not a method: raw pixels, and SimMIM
with single-token masks (the ablation of the paper's block masks)."""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from lightly_simmim.build import method_settings
from lightly_simmim.config import Config, ConfigError
from lightly_simmim.methods import ImageTransform

__all__ = ["RawPixels", "single_token_config"]


class RawPixels(nn.Module):
    """The raw-pixel baseline as a "method": features are the flattened pixels.

    Args:
        transform: The evaluation transform of the methods (resize, crop,
            normalise), so the pixels are exactly what the encoders see.
    """

    def __init__(self, transform: ImageTransform) -> None:
        super().__init__()
        self._transform = transform

    def eval_transform(self) -> ImageTransform:
        """The transform given at construction."""
        return self._transform

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C * H * W)."""
        return images.flatten(1)


def single_token_config(config: Config, patch_size: int, mask_ratio: float) -> Config:
    """The ablation of a SimMIM run: masks of one model patch at ``mask_ratio``.

    Raises:
        ConfigError: The row's method has no ``mask_patch_size`` / ``mask_ratio``.
    """
    method = config.method
    settings = method_settings(config)
    if not {"mask_patch_size", "mask_ratio"} <= set(vars(settings)):
        raise ConfigError(
            f"baselines.single_token names a {method.name!r} row, which has no "
            "mask_patch_size / mask_ratio options; name a simmim row, or null."
        )
    options = {**method.options, "mask_patch_size": patch_size}
    options["mask_ratio"] = mask_ratio
    return replace(config, method=replace(method, options=options))
