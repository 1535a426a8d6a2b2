"""SimMIM as a plain ``nn.Module``: encoder + head + loss, no training framework."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightly_simmim.encoders.base import MaskedEncoder
from lightly_simmim.heads import SimMIMPredictionHead
from lightly_simmim.loss import SimMIMLoss, normalize_target


class SimMIM(nn.Module):
    """Masked image modeling with a one-layer pixel head.

    Usable in any training loop::

        model = SimMIM(from_timm("swin_base_patch4_window6_192"))
        gen = SimMIMMaskGenerator(192, 32, model.encoder.patch_size, 0.6)
        loss = model(images, gen(len(images), images.device))
        loss.backward()

    With the built-in head and loss, and a mask whose cells each cover whole
    feature-map positions (``mask_patch_size`` a multiple of ``encoder_stride``, as in
    every paper config), the head and the loss run on the masked positions only:
    the same masked L1 (or L2), to float precision, without predicting the pixels the
    loss ignores. Pass ``num_masked`` (positions masked per image, the same for every
    image with :class:`~lightly_simmim.SimMIMMaskGenerator`) to take that path; it
    needs no host synchronisation. Otherwise, or with another head or loss, the head
    predicts the whole image and the loss weights it by the pixel mask.

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

    def forward(
        self, images: Tensor, mask: Tensor, num_masked: int | None = None
    ) -> Tensor:
        """The SimMIM loss of a batch.

        Args:
            images: (B, C, H, W) normalised images.
            mask: Bool (B, H / patch_size, W / patch_size), True = masked.
            num_masked: Feature-map positions masked in every image, given only if
                every image has exactly that many and every position is wholly
                masked or not (mask cells a multiple of the encoder stride); enables
                the masked-positions path.

        Returns:
            Scalar loss.
        """
        return self.loss_and_features(images, mask, num_masked)[0]

    def loss_and_features(
        self, images: Tensor, mask: Tensor, num_masked: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """The loss and the encoder's feature map of the masked images.

        Args:
            images: (B, C, H, W) normalised images.
            mask: Bool (B, H / patch_size, W / patch_size), True = masked.
            num_masked: See :meth:`forward`.

        Returns:
            (scalar loss, feature map (B, D, H / stride, W / stride)).
        """
        self.encoder.check_mask(images, mask)
        features = self.encoder.forward_masked(images, mask)  # (B, D, h, w)
        if num_masked is not None and self._masked_path_applies():
            return self._masked_loss(features, images, mask, num_masked), features
        reconstruction: Tensor = self.head(features)  # (B, C, H, W)
        loss: Tensor = self.loss(reconstruction, images, mask)
        return loss, features

    def _masked_path_applies(self) -> bool:
        # Only the built-in head and loss have the per-position form; a plugin's
        # head or loss sees the whole reconstruction, as it expects.
        return type(self.head) is SimMIMPredictionHead and type(self.loss) is SimMIMLoss

    def _masked_loss(
        self, features: Tensor, images: Tensor, mask: Tensor, num_masked: int
    ) -> Tensor:
        """The masked L1 / L2 computed on the masked feature positions only.

        Equal to ``SimMIMLoss()(head(features), images, mask)`` when every position
        is wholly masked or not: the head is a per-position linear map, and the
        loss's denominator is the masked pixel count, ``B * num_masked * stride**2``.
        """
        head: SimMIMPredictionHead = self.head  # type: ignore[assignment]
        loss: SimMIMLoss = self.loss  # type: ignore[assignment]
        stride = head.encoder_stride
        batch, channels, height, width = images.shape
        grid = (height // stride, width // stride)
        # Positions of the feature map whose cell is masked: (B, h, w) -> (B, h * w).
        cells = mask.reshape(batch, grid[0], mask.shape[1] // grid[0], grid[1], -1)
        masked = cells.any(dim=4).any(dim=2).flatten(1)  # (B, h * w)
        # The masked positions first (a stable sort keeps their order): (B, K).
        order = masked.to(torch.uint8).argsort(dim=1, descending=True, stable=True)
        index = order[:, :num_masked]
        tokens = features.flatten(2).transpose(1, 2)  # (B, h * w, D)
        picked = tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[2]))
        # The 1x1 conv as a linear map; its outputs are ordered (c, dy, dx), as
        # PixelShuffle reads them: (B, K, D) -> (B, K, C * s * s).
        weight = head.conv.weight.flatten(1)  # (C * s * s, D)
        prediction = F.linear(picked, weight, head.conv.bias)
        target = images
        if loss.norm_target_window is not None:
            target = normalize_target(target, loss.norm_target_window)
        # (B, C, h, s, w, s) -> (B, h, w, C, s, s) -> (B, h * w, C * s * s)
        patches = target.reshape(batch, channels, grid[0], stride, grid[1], stride)
        patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(
            batch, -1, prediction.shape[2]
        )
        picked_target = patches.gather(
            1, index.unsqueeze(-1).expand(-1, -1, prediction.shape[2])
        )  # (B, K, C * s * s)
        # In the images' precision, like the reference (under bf16 autocast, a bf16
        # prediction minus float32 images is float32).
        dtype = torch.promote_types(prediction.dtype, images.dtype)
        error = prediction.to(dtype) - picked_target.to(dtype)
        error = error.abs() if loss.loss_type == "l1" else error.square()
        masked_pixels = batch * num_masked * stride * stride
        return error.sum() / (masked_pixels + 1e-5) / channels

    def no_weight_decay(self) -> set[str]:
        """Names of parameters without weight decay (mask token, position tables)."""
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()}
