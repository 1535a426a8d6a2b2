"""Which layer and which pooling give the features for kNN / linear evaluation.

The last layer of a masked-image model is tuned to predict pixels and is known to be
a weak kNN / linear feature; intermediate layers are often much better. A
:class:`FeatureExtractor` picks a layer by its index into timm's
``forward_intermediates`` (transformer blocks for ViT / DeiT / BEiT, stages for Swin
and ConvNeXt) and a pooling over its spatial positions::

    extractor = FeatureExtractor(encoder, layer=-4, pooling="avg")
    features = extractor(images)  # (B, channels of that layer)

What each choice computes:

- ``layer=None`` (default): the last layer. ``layer=i``: the output of block / stage
  ``i`` (negative counts from the end, ``-1`` is the last); an index equal to the last
  is the same as ``None``.
- ``pooling="default"``: the encoder's own pooled ``forward`` (timm's pre-logits
  features: class token or average, with the model's ``fc_norm`` / head norm). Only for
  the last layer, because timm's post-pooling norm is sized for it.
- ``pooling="avg"``: the mean over all spatial positions (patch tokens for ViT-like
  models, prefix tokens excluded; the feature map for Swin / ConvNeXt), ``(B, C_i)``.
- ``pooling="cls"``: the class token, ``(B, D)``; only for models that have one
  (ViT / DeiT with ``class_token=True``, BEiT).

Normalisation (``norm=True``, the default) follows timm's ``forward_intermediates``:
for ViT / DeiT / BEiT the model's final ``norm`` (the LayerNorm applied after the last
block) is applied to the tokens of every selected block; for Swin / ConvNeXt only the
last stage is normalised (``norm`` / ``norm_pre``), because the final norm is sized for
the last stage's channels. So ``layer=-1, pooling="avg"`` on a ViT is the mean of the
patch tokens of ``model.norm(last block output)``, the mean of the feature map from
``forward_masked`` without a mask. A model with ``fc_norm`` (timm's average-pool
variants, where ``model.norm`` is an Identity) gets no norm before the mean, and
``fc_norm`` is not applied after it.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from torch import Tensor, nn

from lightly_simmim.encoders.base import TimmMaskedEncoder

Pooling = Literal["default", "avg", "cls"]
"""How a layer's tokens / feature map are reduced to one vector per image."""

POOLINGS: tuple[str, ...] = get_args(Pooling)


def timm_model_of(encoder: nn.Module) -> nn.Module | None:
    """The timm model behind ``encoder``, or None if there is none.

    Args:
        encoder: A :class:`TimmMaskedEncoder` adapter, or a timm model itself (any
            module with ``forward_intermediates``).

    Returns:
        The wrapped timm model (shared, not a copy), ``encoder`` itself if it is a
        timm model, else None.
    """
    if isinstance(encoder, TimmMaskedEncoder):
        return encoder.timm_model
    if callable(getattr(encoder, "forward_intermediates", None)):
        return encoder
    return None


def num_layers(model: nn.Module) -> int:
    """Number of layers ``forward_intermediates`` can return for a timm model.

    That is one per transformer block for ViT / DeiT / BEiT and one per stage for
    Swin / ConvNeXt: the length of timm's ``feature_info``.

    Raises:
        ValueError: If the model has no ``feature_info`` list.
    """
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or not info:
        raise ValueError(
            f"{type(model).__name__} has no timm feature_info; cannot select a layer."
        )
    return len(info)


class FeatureExtractor(nn.Module):
    """Frozen-feature view of an encoder: one layer, one pooling, ``(B, D)`` out.

    See the module docstring for what each ``layer`` / ``pooling`` computes. The
    encoder is registered as a submodule (shared, not copied), so ``.eval()`` and
    ``.to()`` on the extractor reach it.

    Args:
        encoder: A :class:`TimmMaskedEncoder` adapter or a timm model. Any other
            module works only with ``layer=None, pooling="default"`` (its own
            ``forward``).
        layer: Index into ``forward_intermediates``'s layers (blocks for ViT-like
            models, stages for Swin / ConvNeXt); negative counts from the end; None
            is the last layer.
        pooling: ``"default"``, ``"avg"`` or ``"cls"``.
        norm: Apply the model's final norm as timm's ``forward_intermediates`` does
            (see the module docstring).

    Raises:
        ValueError: For an unknown pooling, a layer out of range, ``"default"``
            pooling of an intermediate layer, ``"cls"`` on a model without class
            token, or a layer / pooling choice on a module that is not a timm model.

    Examples:
        >>> enc = from_timm("vit_base_patch16_224")
        >>> FeatureExtractor(enc, layer=-4, pooling="cls")(images).shape
        torch.Size([B, 768])
        >>> swin = from_timm("swin_base_patch4_window6_192")
        >>> FeatureExtractor(swin, layer=-2, pooling="avg")(images).shape
        torch.Size([B, 512])
    """

    def __init__(
        self,
        encoder: nn.Module,
        layer: int | None = None,
        pooling: Pooling = "default",
        norm: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(
                f"Unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}."
            )
        self.encoder = encoder
        self.pooling: Pooling = pooling
        self.norm = norm
        model = timm_model_of(encoder)
        if model is None:
            if layer is not None or pooling != "default":
                raise ValueError(
                    f"layer={layer!r}, pooling={pooling!r} need a timm model (or a "
                    f"SimMIM encoder adapter wrapping one), got "
                    f"{type(encoder).__name__}; use layer=None, pooling='default' "
                    f"for its own forward."
                )
            self.layer: int | None = None
            return
        count = num_layers(model)
        if layer is not None and not -count <= layer < count:
            raise ValueError(
                f"layer={layer} is out of range for {type(model).__name__} with "
                f"{count} layers (blocks / stages): use {-count}..{count - 1}."
            )
        # Absolute index, None for the last layer (so -1 and None behave the same).
        index = None if layer is None else layer % count
        self.layer = None if index == count - 1 else index
        if pooling == "default" and self.layer is not None:
            raise ValueError(
                f"pooling='default' is the encoder's own pooled forward and exists "
                f"only for the last layer; use pooling='avg' (or 'cls') with "
                f"layer={layer}."
            )
        if pooling == "cls" and getattr(model, "cls_token", None) is None:
            raise ValueError(
                f"pooling='cls' needs a class token, and {type(model).__name__} has "
                f"none; use pooling='avg' or 'default'."
            )

    @property
    def num_features(self) -> int:
        """Width D of the returned features.

        Raises:
            ValueError: If it cannot be known without a forward pass (a non-timm
                encoder without a ``num_features`` attribute).
        """
        model = timm_model_of(self.encoder)
        if self.pooling == "default":
            width = getattr(self.encoder, "num_features", None)
            if width is None and model is not None:
                width = getattr(model, "num_features", None)
            if width is None:
                raise ValueError(
                    f"{type(self.encoder).__name__} has no num_features attribute."
                )
            return int(width)
        assert model is not None  # checked in __init__ for "avg" / "cls"
        info: Any = model.feature_info
        index = num_layers(model) - 1 if self.layer is None else self.layer
        return int(info[index]["num_chs"])

    def forward(self, images: Tensor) -> Tensor:
        """Features of a batch of images.

        Args:
            images: (B, in_chans, H, W), a size the encoder accepts.

        Returns:
            (B, D) features: D is the encoder's ``num_features`` for
            ``"default"`` and ``"cls"``, and the selected layer's channels for
            ``"avg"`` (smaller for early Swin / ConvNeXt stages).
        """
        if self.pooling == "default":
            pooled: Tensor = self.encoder(images)
            return pooled
        model: Any = timm_model_of(self.encoder)  # forward_intermediates is untyped
        index = num_layers(model) - 1 if self.layer is None else self.layer
        if self.pooling == "cls":
            # List of one (spatial (B, D, h, w), prefix (B, num_prefix, D)) pair;
            # the class token is the first prefix token (then register / dist).
            [(_, prefix)] = model.forward_intermediates(
                images,
                indices=[index],
                return_prefix_tokens=True,
                norm=self.norm,
                stop_early=True,
                intermediates_only=True,
            )
            cls_token: Tensor = prefix[:, 0]  # (B, D)
            return cls_token
        # List of one NCHW map (B, C_i, h_i, w_i); prefix tokens already split off.
        [feature_map] = model.forward_intermediates(
            images,
            indices=[index],
            norm=self.norm,
            stop_early=True,
            intermediates_only=True,
        )
        averaged: Tensor = feature_map.mean(dim=(2, 3))  # (B, C_i)
        return averaged
