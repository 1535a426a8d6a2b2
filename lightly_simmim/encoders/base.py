"""The one interface every SimMIM encoder adapter implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, cast, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class TimmModelAPI(Protocol):
    """The methods every timm model has and ``nn.Module`` does not declare."""

    def forward_features(self, x: Tensor) -> Tensor:
        """Unpooled features (tokens or a feature map) of images."""
        ...

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pooled features (``pre_logits=True``) or logits of ``forward_features``."""
        ...

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces the classifier by one with ``num_classes`` outputs (0 = none)."""
        ...


def timm_api(model: nn.Module) -> TimmModelAPI:
    """``model`` typed as the timm model it is.

    Raises:
        TypeError: If ``model`` lacks timm's ``forward_features`` / ``forward_head``
            / ``reset_classifier``.
    """
    if not isinstance(model, TimmModelAPI):
        raise TypeError(
            f"{type(model).__name__} is not a timm model (it has no forward_features "
            "/ forward_head / reset_classifier); wrap a timm model."
        )
    return model


class MaskedEncoder(nn.Module, ABC):
    """An image encoder that can replace masked tokens by a learnable mask token.

    Adapters wrap a timm model (one class per timm family) and expose what SimMIM and
    the evaluation need. The mask token replaces masked patch embeddings right after
    the patch embedding (after its norm, for Swin; after the stem, for ConvNeXt) and
    before position embeddings and prefix tokens: ``x = x * (1 - w) + mask_token * w``.

    Attributes:
        mask_token: Learnable ``(1, 1, D)`` parameter, D the patch-embedding width;
            initialised trunc-normal with std 0.02 and excluded from weight decay.
    """

    mask_token: nn.Parameter

    @classmethod
    @abstractmethod
    def supports(cls, model: nn.Module) -> bool:
        """Whether this adapter can wrap ``model`` (a timm model instance)."""

    @property
    @abstractmethod
    def patch_size(self) -> int:
        """Side in pixels of one token of the masked grid (16 for ViT-B/16, 4 Swin)."""

    @property
    @abstractmethod
    def encoder_stride(self) -> int:
        """Total downsampling of the feature map from ``forward_masked``."""

    @property
    @abstractmethod
    def num_features(self) -> int:
        """Channels C of the feature map, and width of the pooled features."""

    @property
    @abstractmethod
    def in_chans(self) -> int:
        """Number of input image channels."""

    @abstractmethod
    def forward_masked(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Encodes images with masked tokens replaced by the mask token.

        Args:
            images: (B, in_chans, H, W).
            mask: Bool (B, H / patch_size, W / patch_size), True = masked; None
                masks nothing.

        Returns:
            Feature map (B, num_features, H / encoder_stride, W / encoder_stride);
            prefix tokens (class, register) are dropped.
        """

    @abstractmethod
    def forward(self, images: Tensor) -> Tensor:
        """Pooled features (B, num_features) of unmasked images, for kNN / linear."""

    def no_weight_decay(self) -> set[str]:
        """Parameter names (relative to this module) that get no weight decay."""
        return {"mask_token"}

    def check_mask(self, images: Tensor, mask: Tensor | None) -> None:
        """Raises ValueError if ``images`` / ``mask`` do not fit this encoder."""
        if images.ndim != 4 or images.shape[1] != self.in_chans:
            raise ValueError(
                f"Expected images of shape (B, {self.in_chans}, H, W), got "
                f"{tuple(images.shape)}."
            )
        height, width = images.shape[-2:]
        if height % self.encoder_stride or width % self.encoder_stride:
            raise ValueError(
                f"Image size {height}x{width} must be a multiple of the encoder stride "
                f"{self.encoder_stride}."
            )
        if mask is None:
            return
        expected = (
            images.shape[0],
            height // self.patch_size,
            width // self.patch_size,
        )
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"mask has shape {tuple(mask.shape)} but images "
                f"{tuple(images.shape)} with patch_size {self.patch_size} need "
                f"{expected}; build the mask generator with "
                f"model_patch_size={self.patch_size}."
            )


def new_mask_token(dim: int) -> nn.Parameter:
    """A ``(1, 1, dim)`` mask token, trunc-normal std 0.02 as in SimMIM."""
    token = nn.Parameter(torch.zeros(1, 1, dim))
    nn.init.trunc_normal_(token, std=0.02)
    return token


def blend_mask_token(tokens: Tensor, mask: Tensor, mask_token: Tensor) -> Tensor:
    """``tokens * (1 - w) + mask_token * w`` with w the mask, channels last.

    Args:
        tokens: (B, ..., D) patch embeddings (sequence or NHWC).
        mask: Bool (B, ...) with the same leading shape, True = masked.
        mask_token: (1, 1, D).

    Returns:
        Tensor shaped like ``tokens``.
    """
    w = mask.unsqueeze(-1).to(tokens.dtype)  # (B, ..., 1)
    return tokens * (1.0 - w) + mask_token.to(tokens.dtype).view(-1) * w


class TimmMaskedEncoder(MaskedEncoder):
    """Shared plumbing of the adapters that wrap one timm model.

    Subclasses implement the masked forward for their family; this class provides
    what is the same for every timm model:

    - ``forward`` is timm's own pooled pre-logits features,
      ``forward_head(forward_features(x), pre_logits=True)``, so kNN / linear
      evaluation sees exactly what a timm user (and a fine-tune) would see.
    - ``no_weight_decay`` is the mask token plus the timm model's own
      ``no_weight_decay()`` names and any parameter whose name contains one of
      :attr:`no_weight_decay_keywords`, prefixed with the model's path inside the
      adapter.
    - ``set_grad_checkpointing`` forwards to timm.
    """

    no_weight_decay_keywords: tuple[str, ...] = ()
    """Substrings of timm parameter names that get no weight decay, on top of the
    names the timm model lists itself (position tables and the like)."""

    # Geometry, set by each adapter's __init__ from its timm model.
    _patch_size: int
    _encoder_stride: int
    _in_chans: int

    @property
    def patch_size(self) -> int:
        """Side in pixels of one token of the masked grid."""
        return self._patch_size

    @property
    def encoder_stride(self) -> int:
        """Stride of the feature map from ``forward_masked``."""
        return self._encoder_stride

    @property
    def num_features(self) -> int:
        """timm's ``num_features``: channels of the last feature map."""
        return int(getattr(self.timm_model, "num_features"))  # noqa: B009

    @property
    def in_chans(self) -> int:
        """Input channels of the timm model's first layer."""
        return self._in_chans

    @property
    @abstractmethod
    def timm_model(self) -> nn.Module:
        """The wrapped timm model (shared with the caller, not a copy)."""

    def forward(self, images: Tensor) -> Tensor:
        """timm's pooled pre-logits features of unmasked images.

        Args:
            images: (B, in_chans, H, W).

        Returns:
            (B, num_features), e.g. the class token for a ViT with token pooling or
            the normalised average of the last feature map for ConvNeXt.
        """
        # Adapters wrap timm models only (``supports``); no check per batch here.
        model = cast(TimmModelAPI, self.timm_model)
        features = model.forward_features(images)
        pooled: Tensor = model.forward_head(features, pre_logits=True)
        return pooled

    def no_weight_decay(self) -> set[str]:
        """Mask token, timm's no-decay names and keyword matches, as names here."""
        model = self.timm_model
        listed = getattr(model, "no_weight_decay", None)
        timm_names: set[str] = set(listed()) if callable(listed) else set()
        no_decay_ids = {
            id(param)
            for name, param in model.named_parameters()
            if name in timm_names
            or any(key in name for key in self.no_weight_decay_keywords)
        }
        no_decay_ids.add(id(self.mask_token))
        # Match by identity so the names come out with this adapter's prefixes, and
        # include every alias of a shared parameter (the ViT mask token is also
        # registered inside lightly's masked ViT).
        return {
            name
            for name, param in self.named_parameters(remove_duplicate=False)
            if id(param) in no_decay_ids
        }

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Enables or disables activation checkpointing in the timm blocks."""
        set_checkpointing = getattr(self.timm_model, "set_grad_checkpointing", None)
        if callable(set_checkpointing):
            set_checkpointing(enable)


def prepare_timm_model(model: nn.Module) -> None:
    """Removes the classifier of ``model`` in place and checks the feature width.

    SimMIM and the pooled features never use the classifier; leaving it in would
    give parameters that never receive a gradient (which breaks DDP without
    ``find_unused_parameters``). A fine-tune attaches a new head.

    Raises:
        ValueError: If timm's pooled pre-logits width differs from the feature map
            width (a pre-logits MLP, e.g. ``head_hidden_size``), which would break
            the ``num_features`` contract.
    """
    if getattr(model, "num_classes", 0):
        timm_api(model).reset_classifier(0)
    width = getattr(model, "num_features", None)
    pooled_width = getattr(model, "head_hidden_size", width)
    if pooled_width != width:
        raise ValueError(
            f"{type(model).__name__} pools to {pooled_width} features through a "
            f"pre-logits MLP but its feature map has {width} channels; create it "
            f"without a pre-logits layer (e.g. head_hidden_size=None)."
        )


def square_size(size: int | tuple[int, ...] | list[int], what: str) -> int:
    """The side of a square (patch) size given as an int or a pair.

    Raises:
        ValueError: If the pair is not square.
    """
    if isinstance(size, int):
        return size
    sides = tuple(int(s) for s in size)
    if len(set(sides)) != 1:
        raise ValueError(f"Only square {what}s are supported, got {sides}.")
    return sides[0]
