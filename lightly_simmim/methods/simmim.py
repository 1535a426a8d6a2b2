"""SimMIM (Xie et al., CVPR 2022) as a :class:`PretrainMethod`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from lightly_simmim.batch_transforms import BatchRandomResizedCrop
from lightly_simmim.encoders import TimmKwargs, from_timm
from lightly_simmim.encoders.base import MaskedEncoder, TimmMaskedEncoder
from lightly_simmim.heads import SimMIMPredictionHead
from lightly_simmim.loss import SimMIMLoss
from lightly_simmim.masking import SimMIMMaskGenerator
from lightly_simmim.methods.base import PretrainMethod
from lightly_simmim.methods.interface import Reconstruction, ViewTransform
from lightly_simmim.model import SimMIM
from lightly_simmim.settings import Checked, SettingError, setting
from lightly_simmim.transforms import SimMIMTransform


@dataclass
class SimMIMSettings(Checked):
    """SimMIM's options; the defaults are the paper's."""

    #: Side in pixels of a masking cell (32 in the paper, for 192 / 224 px images).
    mask_patch_size: int = setting(32, ge=1)
    #: Fraction of cells masked per image.
    mask_ratio: float = setting(0.6, ge=0, le=1)
    #: "l1" (the paper's) or "l2" reconstruction loss on masked pixels.
    loss_type: Literal["l1", "l2"] = "l1"
    #: Odd window for a per-pixel normalised target (47 in later official configs);
    #: None = raw normalised pixels, as in the paper.
    norm_target_window: int | None = setting(None, gt=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        window = self.norm_target_window
        if window is not None and window % 2 == 0:
            raise SettingError("norm_target_window", window, "must be odd")


class SimMIMMethod(PretrainMethod):
    """SimMIM: mask blocks of the image, regress their pixels with a linear head.

    The encoder is a :class:`~lightly_simmim.encoders.MaskedEncoder` (any timm family
    with an adapter: ViT, BEiT, Swin, SwinV2, ConvNeXt, ...); the model is
    :class:`lightly_simmim.SimMIM` (encoder + 1x1-conv / PixelShuffle head + masked
    L1). Masks are drawn on the batch's device inside ``training_step`` by a
    :class:`~lightly_simmim.SimMIMMaskGenerator` seeded with ``seed``, so every rank
    draws its own masks and runs are reproducible. Pooled features are the encoder's
    ``forward``: timm's pooled pre-logits features (the class token of a default ViT,
    the average of the last feature map of Swin / ConvNeXt).

    Raises:
        TypeError: If the encoder is not a ``MaskedEncoder``.
        ValueError: If the mask settings do not fit ``input_size`` and the encoder's
            patch size (``input_size % mask_patch_size`` and ``mask_patch_size %
            patch_size`` must be 0, some cells masked and some visible), or the
            encoder has another number of input channels than ``in_chans``.
    """

    Settings = SimMIMSettings
    settings: SimMIMSettings
    pluggable: ClassVar[frozenset[str]] = frozenset({"head", "loss", "transform"})

    @classmethod
    def build_encoder(cls, name: str, kwargs: TimmKwargs) -> nn.Module:
        """``lightly_simmim.encoders.from_timm(name, **kwargs)``: a MaskedEncoder."""
        return from_timm(name, **kwargs)

    def _build_modules(self, encoder: nn.Module) -> None:
        if not isinstance(encoder, MaskedEncoder):
            raise TypeError(
                f"simmim needs a MaskedEncoder (lightly_simmim.encoders.from_timm), "
                f"got {type(encoder).__name__}."
            )
        if encoder.in_chans != self.in_chans:
            raise ValueError(
                f"The encoder takes {encoder.in_chans} input channels but in_chans="
                f"{self.in_chans}; create it with in_chans={self.in_chans}."
            )
        settings = self.settings
        # Raises ValueError naming the sizes if the cells do not tile the image or
        # do not cover whole tokens.
        self.mask_generator = SimMIMMaskGenerator(
            input_size=self.input_size,
            mask_patch_size=settings.mask_patch_size,
            model_patch_size=encoder.patch_size,
            mask_ratio=settings.mask_ratio,
            seed=self.seed,
        )
        generator = self.mask_generator
        if not 0 < generator.num_masked_cells < generator.num_cells:
            # All masked leaves no context to predict from; none leaves no target
            # (the loss would divide by zero masked pixels).
            raise ValueError(
                f"mask_ratio {settings.mask_ratio} masks "
                f"{generator.num_masked_cells} of the {generator.num_cells} cell(s) "
                f"that mask_patch_size {settings.mask_patch_size} makes of a "
                f"{self.input_size} px image: SimMIM needs some cells masked and some "
                f"visible. Use a smaller mask_patch_size or a mask_ratio strictly "
                f"between 0 and 1."
            )
        if self.input_size % encoder.encoder_stride != 0:
            raise ValueError(
                f"input_size {self.input_size} must be a multiple of the encoder "
                f"stride {encoder.encoder_stride}."
            )
        # Heads and losses picked by entry point name (method.head / method.loss)
        # follow the built-ins' constructors: the head takes the encoder's geometry,
        # the loss no arguments (the built-in one takes the method's loss options).
        head_cls = self.head_factory or SimMIMPredictionHead
        head = head_cls(
            in_channels=encoder.num_features,
            encoder_stride=encoder.encoder_stride,
            out_channels=encoder.in_chans,
        )
        loss: nn.Module
        if self.loss_factory is None:
            loss = SimMIMLoss(settings.loss_type, settings.norm_target_window)
        else:
            loss = self.loss_factory()
        self.model = SimMIM(encoder, head=head, loss=loss)
        # Masked positions per image of the feature map, where every position is
        # wholly masked or not (cells a multiple of the stride): the head and loss
        # then run on those positions only (see SimMIM.loss_and_features).
        self.num_masked: int | None = None
        if settings.mask_patch_size % encoder.encoder_stride == 0:
            per_cell = (settings.mask_patch_size // encoder.encoder_stride) ** 2
            self.num_masked = self.mask_generator.num_masked_cells * per_cell

    def reseed_masks(self, step: int) -> None:
        """Restarts the mask streams for a run starting at ``step``."""
        super().reseed_masks(step)
        self.mask_generator.reseed(self.mask_seed(step))

    @property
    def encoder(self) -> MaskedEncoder:
        """The masked encoder."""
        return self.model.encoder

    @property
    def feature_dim(self) -> int:
        """The encoder's ``num_features``."""
        return self.encoder.num_features

    def forward(self, images: Tensor) -> Tensor:
        """Pooled features (B, feature_dim) of unmasked (B, C, H, W) images."""
        features: Tensor = self.encoder(images)
        return features

    def method_loss(self, views: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        images = views[0]  # (B, C, H, W)
        # Drawn here rather than in data loader workers: on the GPU, from this
        # rank's own seeded stream.
        mask = self.mask_generator(len(images), device=images.device)  # (B, h, w)
        loss, features = self.model.loss_and_features(images, mask, self.num_masked)
        # The online classifier reads the masked image's pooled feature map (the
        # features this step computes anyway): no second forward.
        return loss, features.mean(dim=(2, 3))  # (B, D)

    def batch_augmentation(self) -> BatchRandomResizedCrop | None:
        """SimMIMTransform's crop (area 0.67-1) and flip, per batch on the device."""
        if self.transform_factory is not None:
            return None
        return BatchRandomResizedCrop(
            self.input_size,
            scale=(0.67, 1.0),
            mean=self.mean,
            std=self.std,
            in_chans=self.in_chans,
        )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing in the encoder's blocks (memory for compute)."""
        if isinstance(self.encoder, TimmMaskedEncoder):
            self.encoder.set_grad_checkpointing(enable)

    def _own_transform(self) -> ViewTransform:
        """:class:`~lightly_simmim.SimMIMTransform`: crop (0.67-1), flip, normalise."""
        return SimMIMTransform(
            input_size=self.input_size, in_chans=self.in_chans, normalize=self.normalize
        )

    @torch.no_grad()
    def reconstruct_batch(self, images: Tensor) -> Reconstruction | None:
        """SimMIM's reconstruction of images masked with a fixed-seed mask.

        Args:
            images: (B, C, H, W) normalised images.

        Returns:
            (images, mask bool (B, H / patch_size, W / patch_size) with True =
            masked, reconstruction (B, C, H, W)).
        """
        generator = self._fixed_generator(images.device)
        mask = self.mask_generator(len(images), images.device, generator=generator)
        return images, mask, self.model.reconstruct(images, mask)

    def timm_encoder(self) -> nn.Module:
        """The timm model wrapped by the encoder adapter.

        Raises:
            TypeError: For a third-party adapter that does not wrap a timm model.
        """
        if not isinstance(self.encoder, TimmMaskedEncoder):
            raise TypeError(
                f"{type(self.encoder).__name__} does not wrap a timm model; export "
                f"needs a TimmMaskedEncoder."
            )
        return self.encoder.timm_model

    def _no_weight_decay(self) -> set[str]:
        # The adapter lists the mask token and timm's position tables / tokens.
        return {f"model.{name}" for name in self.model.no_weight_decay()}
