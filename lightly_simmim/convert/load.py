"""Official SimMIM checkpoints as this package's :class:`SimMIM` model.

:func:`load_official_checkpoint` returns a ready model (timm encoder adapter with
the mask token, pretraining head) and warns about any part that is fresh rather than
loaded; :func:`convert_official_checkpoint` returns it with the account of every
tensor, for tools such as the command line.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from lightly_simmim.convert.architecture import Architecture, Overrides, config_value
from lightly_simmim.convert.errors import OfficialCheckpointError, name_keys
from lightly_simmim.convert.mapping import Source, as_checkpoint, convert_backbone
from lightly_simmim.convert.safe_load import CheckpointKind
from lightly_simmim.encoders.base import MaskedEncoder
from lightly_simmim.encoders.factory import from_timm
from lightly_simmim.heads import SimMIMPredictionHead
from lightly_simmim.loss import SimMIMLoss
from lightly_simmim.model import SimMIM

__all__ = ["Conversion", "convert_official_checkpoint", "load_official_checkpoint"]


@dataclass(frozen=True)
class Conversion:
    """An official checkpoint converted to :class:`SimMIM`, with its account.

    Attributes:
        model: Encoder (timm adapter) with mask token and pretraining head.
        source: The architecture stored in the checkpoint.
        target: The architecture built (``source`` with the overrides applied).
        kind: ``"pretrain"`` or ``"finetune"``.
        notes: What happened to tensors that were not copied as they are (dropped
            buffers and classifier, resized tables, adapted channels).
        fresh: Parts that are newly initialised, not loaded (also in ``notes``).
        drop_path_rate: The encoder's stochastic depth (None: timm's default); with
            ``target`` it rebuilds the encoder:
            ``from_timm(target.timm_name, **target.timm_kwargs,
            drop_path_rate=...)``.
    """

    model: SimMIM
    source: Architecture
    target: Architecture
    kind: CheckpointKind
    notes: tuple[str, ...]
    fresh: tuple[str, ...]
    drop_path_rate: float | None = None


def _loss_from_config(
    config: Mapping[str, object] | None,
) -> tuple[SimMIMLoss, str | None]:
    """The paper's loss, with the normalised target if the config enables it.

    The SwinV2 pretraining configs of microsoft/Swin-Transformer set
    ``MODEL.SIMMIM.NORM_TARGET`` (``ENABLE``, ``PATCH_SIZE`` 47): the target pixels
    are normalised by the mean and std of their neighbourhood.
    """
    norm = config_value(config, "MODEL", "SIMMIM", "NORM_TARGET")
    window = config_value(norm, "PATCH_SIZE")
    if config_value(norm, "ENABLE") and isinstance(window, int):
        return SimMIMLoss(norm_target_window=window), (
            f"loss: target normalised over {window}x{window} pixels, as the "
            f"checkpoint's config (MODEL.SIMMIM.NORM_TARGET) says"
        )
    return SimMIMLoss(), None


def _load_mask_token(
    encoder: MaskedEncoder, token: Tensor | None, source: str
) -> str | None:
    """Copies the official mask token; a note if there is none (fine-tuning)."""
    if token is None:
        return "mask_token: fresh (a fine-tuning checkpoint has none)"
    if token.shape != encoder.mask_token.shape:
        raise OfficialCheckpointError(
            f"{source}: mask_token {tuple(token.shape)} does not fit the encoder's "
            f"{tuple(encoder.mask_token.shape)}."
        )
    with torch.no_grad():
        encoder.mask_token.copy_(token)
    return None


def _load_head(
    head: SimMIMPredictionHead,
    decoder: dict[str, Tensor],
    source: str,
    channels_changed: bool,
) -> str | None:
    """Copies the official decoder into ``head``; a note if the head stays fresh.

    The official decoder is ``Sequential(Conv2d(C, stride**2 * 3, 1),
    PixelShuffle(stride))``: the same layout as :class:`SimMIMPredictionHead`.
    """
    if not decoder:
        return "head: fresh (a fine-tuning checkpoint has no decoder)"
    if set(decoder) != {"0.weight", "0.bias"}:
        raise OfficialCheckpointError(
            f"{source}: decoder tensors {name_keys(sorted(decoder))} are not the "
            f"official 1x1 conv (decoder.0.weight, decoder.0.bias)."
        )
    weight, bias = decoder["0.weight"], decoder["0.bias"]
    expected = head.conv.weight.shape
    if weight.shape != expected and channels_changed:
        return (
            f"head: fresh (the decoder predicts {weight.shape[0]} values per token "
            f"for the checkpoint's input channels, this model {expected[0]})"
        )
    if weight.shape != expected or bias.shape != (expected[0],):
        raise OfficialCheckpointError(
            f"{source}: decoder.0.weight {tuple(weight.shape)} does not fit the "
            f"head's {tuple(head.conv.weight.shape)}."
        )
    head.conv.load_state_dict({"weight": weight, "bias": bias})
    return None


def convert_official_checkpoint(
    source: Source,
    *,
    img_size: int | tuple[int, int] | None = None,
    window_size: int | None = None,
    in_chans: int | None = None,
    drop_path_rate: float | None = None,
    split_rel_pos_bias: bool = False,
) -> Conversion:
    """Converts an official SimMIM checkpoint to :class:`SimMIM`, accounting for all.

    The family and architecture are read from the tensors (see
    :func:`~lightly_simmim.convert.detect.detect_architecture`); the timm model is
    built through timm and wrapped by the matching encoder adapter
    (:func:`~lightly_simmim.encoders.from_timm`). Every official tensor is copied,
    resized, or dropped for a stated reason (stored buffers, a fine-tuning
    classifier); any other mismatch raises before anything is loaded.

    Args:
        source: A checkpoint path, or an already read :class:`OfficialCheckpoint`.
        img_size: Use the weights at this input size (int or (H, W)); relative
            position bias tables are resized bicubically as in the official code.
        window_size: Swin / SwinV2 window size (see :class:`Overrides`).
        in_chans: Input channels (patch embedding adapted, head fresh).
        drop_path_rate: Stochastic depth of the built encoder; by default the
            checkpoint config's ``MODEL.DROP_PATH_RATE``, else timm's default.
        split_rel_pos_bias: ViT: one relative position table per block, copied
            from the shared one, as the official fine-tuning does.

    Returns:
        The model (in training mode) with the source and target architectures and
        notes; ``fresh`` lists the mask token of a fine-tuning checkpoint and a head
        that could not be loaded.

    Raises:
        FileNotFoundError: No file at ``source``.
        ValueError: A size or rate override out of range.
        OfficialCheckpointError: Not an official checkpoint, an override that does
            not apply to its family, or tensors that do not fit.
    """
    overrides = Overrides(
        img_size=img_size,
        window_size=window_size,
        in_chans=in_chans,
        drop_path_rate=drop_path_rate,
        split_rel_pos_bias=split_rel_pos_bias,
    )
    checkpoint = as_checkpoint(source)
    configured = config_value(checkpoint.config, "MODEL", "DROP_PATH_RATE")
    if drop_path_rate is None and isinstance(configured, (int, float)):
        overrides = replace(overrides, drop_path_rate=float(configured))
    backbone = convert_backbone(checkpoint, overrides, keep_classifier=False)
    loss, loss_note = _loss_from_config(checkpoint.config)
    encoder = from_timm(backbone.model)
    head = SimMIMPredictionHead(
        encoder.num_features, encoder.encoder_stride, encoder.in_chans
    )
    channels_changed = (
        backbone.source.timm_kwargs["in_chans"]
        != backbone.target.timm_kwargs["in_chans"]
    )
    fresh = [
        note
        for note in (
            _load_mask_token(encoder, backbone.mapped.mask_token, checkpoint.source),
            _load_head(
                head, checkpoint.decoder_state, checkpoint.source, channels_changed
            ),
        )
        if note is not None
    ]
    notes = [*backbone.mapped.notes, *([loss_note] if loss_note else []), *fresh]
    return Conversion(
        model=SimMIM(encoder, head=head, loss=loss),
        source=backbone.source,
        target=backbone.target,
        kind=checkpoint.kind,
        notes=tuple(notes),
        fresh=tuple(fresh),
        drop_path_rate=overrides.drop_path_rate,
    )


def load_official_checkpoint(
    source: Source,
    *,
    img_size: int | tuple[int, int] | None = None,
    window_size: int | None = None,
    in_chans: int | None = None,
    drop_path_rate: float | None = None,
    split_rel_pos_bias: bool = False,
) -> SimMIM:
    """An official SimMIM checkpoint as a ready :class:`SimMIM` model.

    Reads the file without executing anything from it, detects ViT / Swin / SwinV2
    and its sizes, builds the timm model, maps every tensor, and returns the
    encoder with its pretraining head. Fresh parts (the head and mask token of a
    fine-tuning checkpoint) are announced with ``warnings.warn``; use
    :func:`convert_official_checkpoint` to get the full account instead.

    Args:
        source: A checkpoint path, or an already read :class:`OfficialCheckpoint`.
        img_size: Input size to use the weights at (tables resized).
        window_size: Swin / SwinV2 window size.
        in_chans: Input channels.
        drop_path_rate: Stochastic depth of the encoder.
        split_rel_pos_bias: ViT: one relative position table per block.

    Returns:
        The :class:`SimMIM` model, in training mode.

    Raises:
        FileNotFoundError: No file at ``source``.
        ValueError: A size or rate override out of range.
        OfficialCheckpointError: See :func:`convert_official_checkpoint`.

    Examples:
        >>> vit = load_official_checkpoint("simmim_pretrain__vit_base__img224.pth")
        >>> swin = load_official_checkpoint(
        ...     "simmim_pretrain__swin_base__img192_window6__100ep.pth",
        ...     img_size=224,
        ...     window_size=7,  # tables resized from window 6 to 7
        ... )
    """
    conversion = convert_official_checkpoint(
        source,
        img_size=img_size,
        window_size=window_size,
        in_chans=in_chans,
        drop_path_rate=drop_path_rate,
        split_rel_pos_bias=split_rel_pos_bias,
    )
    for note in conversion.fresh:
        warnings.warn(f"{conversion.kind} checkpoint: {note}.", stacklevel=2)
    return conversion.model
