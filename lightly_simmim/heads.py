"""SimMIM's prediction head: a per-token linear map back to raw pixels."""

from __future__ import annotations

from torch import Tensor, nn


class SimMIMPredictionHead(nn.Module):
    """1x1 convolution to ``encoder_stride**2 * out_channels`` then PixelShuffle.

    Every feature-map position predicts the ``encoder_stride x encoder_stride`` block
    of pixels it covers; the paper found this one-layer head as good as heavier
    decoders, which is why SimMIM has none.

    Args:
        in_channels: Channels C of the encoder's feature map.
        encoder_stride: Downsampling of the feature map (16 for ViT-B/16, 32 Swin).
        out_channels: Image channels to reconstruct (3 for RGB, 1 for grayscale).

    Raises:
        ValueError: If a size is not positive.
    """

    def __init__(
        self, in_channels: int, encoder_stride: int, out_channels: int = 3
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("encoder_stride", encoder_stride),
            ("out_channels", out_channels),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}.")
        self.encoder_stride = encoder_stride
        self.out_channels = out_channels
        self.conv = nn.Conv2d(
            in_channels, encoder_stride**2 * out_channels, kernel_size=1
        )
        self.shuffle = nn.PixelShuffle(encoder_stride)

    def forward(self, features: Tensor) -> Tensor:
        """Reconstructs pixels.

        Args:
            features: (B, C, h, w) feature map from ``MaskedEncoder.forward_masked``.

        Returns:
            (B, out_channels, h * encoder_stride, w * encoder_stride) reconstruction.
        """
        x: Tensor = self.conv(features)  # (B, s*s*out, h, w)
        out: Tensor = self.shuffle(x)  # (B, out, h*s, w*s)
        return out
