"""SimMIM as a plain ``nn.Module``: encoder + head + loss, no training framework."""

from __future__ import annotations

from torch import Tensor, nn

from lightly_simmim.encoders.base import MaskedEncoder
from lightly_simmim.heads import SimMIMPredictionHead
from lightly_simmim.loss import SimMIMLoss


class SimMIM(nn.Module):
    """Masked image modeling with a one-layer pixel head.

    Usable in any training loop::

        model = SimMIM(from_timm("swin_base_patch4_window6_192"))
        gen = SimMIMMaskGenerator(192, 32, model.encoder.patch_size, 0.6)
        loss = model(images, gen(len(images), images.device))
        loss.backward()

    Args:
        encoder: A :class:`MaskedEncoder` (see ``lightly_simmim.encoders.from_timm``).
        head: Prediction head; by default a :class:`SimMIMPredictionHead` matching
            the encoder.
        loss: Loss; by default the paper's masked L1 :class:`SimMIMLoss`.
    """

    def __init__(
        self,
        encoder: MaskedEncoder,
        head: nn.Module | None = None,
        loss: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head or SimMIMPredictionHead(
            in_channels=encoder.num_features,
            encoder_stride=encoder.encoder_stride,
            out_channels=encoder.in_chans,
        )
        self.loss = loss or SimMIMLoss()

    def reconstruct(self, images: Tensor, mask: Tensor) -> Tensor:
        """Reconstructs the images from their unmasked part.

        Args:
            images: (B, C, H, W) normalised images.
            mask: Bool (B, H / patch_size, W / patch_size), True = masked.

        Returns:
            (B, C, H, W) reconstruction (in the normalised pixel space).
        """
        self.encoder.check_mask(images, mask)
        features = self.encoder.forward_masked(images, mask)  # (B, D, H/s, W/s)
        reconstruction: Tensor = self.head(features)  # (B, C, H, W)
        return reconstruction

    def forward(self, images: Tensor, mask: Tensor) -> Tensor:
        """The SimMIM loss of a batch.

        Args:
            images: (B, C, H, W) normalised images.
            mask: Bool (B, H / patch_size, W / patch_size), True = masked.

        Returns:
            Scalar loss.
        """
        loss: Tensor = self.loss(self.reconstruct(images, mask), images, mask)
        return loss

    def no_weight_decay(self) -> set[str]:
        """Names of parameters without weight decay (mask token, position tables)."""
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()}
