"""The family-independent conversion of an official backbone into a timm model.

:func:`convert_backbone` detects the family and architecture, applies the overrides,
builds the timm model, lets the family's converter rename and resize the tensors
(``map_state``), adapts the patch embedding to another channel count, and checks
that the tensors and the model's state dict match one to one, name and shape,
before anything is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import timm
from timm.models import adapt_input_conv
from torch import nn

from lightly_simmim.convert.architecture import (
    BUFFER,
    Architecture,
    MappedState,
    Overrides,
)
from lightly_simmim.convert.detect import CONVERTERS, detect_family
from lightly_simmim.convert.errors import OfficialCheckpointError, name_keys
from lightly_simmim.convert.safe_load import (
    OfficialCheckpoint,
    read_official_checkpoint,
)
from lightly_simmim.encoders import TimmKwargs

__all__ = [
    "ConvertedBackbone",
    "Source",
    "as_checkpoint",
    "build_timm_model",
    "check_fits",
    "convert_backbone",
    "fit_input_channels",
]

Source = str | os.PathLike[str] | OfficialCheckpoint
"""A checkpoint path, or an already read :class:`OfficialCheckpoint`."""

_PATCH_WEIGHT = "patch_embed.proj.weight"


def build_timm_model(
    architecture: Architecture,
    num_classes: int = 0,
    drop_path_rate: float | None = None,
) -> nn.Module:
    """A randomly initialised timm model of ``architecture`` (never downloads).

    Args:
        architecture: Name and keyword arguments.
        num_classes: Classifier size; 0 = no classifier.
        drop_path_rate: Stochastic depth; None keeps timm's default.

    Returns:
        The timm model, in training mode.
    """
    arguments: dict[str, object] = {
        **architecture.timm_kwargs,
        "num_classes": num_classes,
    }
    if drop_path_rate is not None:
        arguments["drop_path_rate"] = drop_path_rate
    timm_kwargs: TimmKwargs = arguments
    model: nn.Module = timm.create_model(
        architecture.timm_name, pretrained=False, **timm_kwargs
    )
    return model


def fit_input_channels(mapped: MappedState, model: nn.Module) -> None:
    """Adapts the patch embedding to the model's input channels, in place.

    timm's ``adapt_input_conv``: RGB to one channel sums the colour filters, to more
    channels repeats them (scaled); the same as loading timm's own weights with
    another ``in_chans``.
    """
    weight = mapped.tensors.get(_PATCH_WEIGHT)
    target = model.state_dict().get(_PATCH_WEIGHT)
    if weight is None or target is None or weight.shape[1] == target.shape[1]:
        return
    mapped.tensors[_PATCH_WEIGHT] = adapt_input_conv(int(target.shape[1]), weight)
    mapped.notes.append(
        f"patch embedding adapted from {weight.shape[1]} to {target.shape[1]} input "
        f"channels"
    )


def check_fits(mapped: MappedState, model: nn.Module, source: str) -> None:
    """Raises unless the tensors are exactly the model's state dict, name and shape.

    Args:
        mapped: Tensors under timm names (classifier included, if the model has one).
        model: The target timm model.
        source: The checkpoint, for the message.

    Raises:
        OfficialCheckpointError: Naming the first official tensors that map nowhere,
            the first model tensors nothing maps to, or the first shape mismatches.
    """
    expected = model.state_dict()
    name = type(model).__name__
    nowhere = [
        mapped.origin.get(key, key) for key in mapped.tensors if key not in expected
    ]
    if nowhere:
        raise OfficialCheckpointError(
            f"{source}: tensors {name_keys(nowhere)} map to no parameter of the timm "
            f"{name}."
        )
    missing = [key for key in expected if key not in mapped.tensors]
    if missing:
        raise OfficialCheckpointError(
            f"{source}: the timm {name} parameters {name_keys(missing)} get no tensor "
            f"from the checkpoint."
        )
    wrong = [
        f"{mapped.origin.get(key, key)!r} {tuple(value.shape)} -> {key!r} "
        f"{tuple(expected[key].shape)}"
        for key, value in mapped.tensors.items()
        if value.shape != expected[key].shape
    ]
    if wrong:
        raise OfficialCheckpointError(
            f"{source}: shapes do not fit the timm {name}: {'; '.join(wrong[:3])}"
            f"{f' and {len(wrong) - 3} more' if len(wrong) > 3 else ''}."
        )


def as_checkpoint(source: Source) -> OfficialCheckpoint:
    """Reads ``source`` unless it is already an :class:`OfficialCheckpoint`."""
    if isinstance(source, OfficialCheckpoint):
        return source
    return read_official_checkpoint(source)


@dataclass(frozen=True)
class ConvertedBackbone:
    """A timm model holding an official backbone, and how it got there.

    Attributes:
        source: The architecture stored in the checkpoint.
        target: The architecture built.
        model: The timm model, every parameter loaded (``strict=True``).
        mapped: The tensors under timm names and the fate of the others.
    """

    source: Architecture
    target: Architecture
    model: nn.Module
    mapped: MappedState


def convert_backbone(
    checkpoint: OfficialCheckpoint, overrides: Overrides, keep_classifier: bool
) -> ConvertedBackbone:
    """Builds the target timm model and loads the checkpoint's backbone into it.

    Args:
        checkpoint: The official checkpoint.
        overrides: Size changes and build settings.
        keep_classifier: Build the model with the checkpoint's classifier (if it
            has one) and load it; otherwise the classifier is dropped with a note.

    Returns:
        Architectures, the loaded timm model and the mapping's account.

    Raises:
        OfficialCheckpointError: An override that does not apply to the family, or
            tensors that do not fit the model.
    """
    state = checkpoint.encoder_state
    family = detect_family(state)
    if family is None:  # only for a hand-made OfficialCheckpoint
        raise OfficialCheckpointError(
            f"{checkpoint.source} is not an official SimMIM checkpoint."
        )
    converter = CONVERTERS[family]
    source = converter.detect(state, checkpoint.config, overrides.img_size)
    target = converter.retarget(source, overrides)
    stride = target.encoder_stride
    if any(side % stride for side in target.img_size):
        raise OfficialCheckpointError(
            f"img_size {target.img_size} is not a multiple of the {family}'s encoder "
            f"stride {stride}."
        )
    num_classes = source.num_classes if keep_classifier else 0
    model = build_timm_model(target, num_classes, overrides.drop_path_rate)
    mapped = converter.map_state(state, model)
    if checkpoint.kind == "pretrain":  # messages name the keys as stored
        mapped.origin = {key: f"encoder.{name}" for key, name in mapped.origin.items()}
    fit_input_channels(mapped, model)
    if num_classes:
        for key, value in mapped.classifier.items():
            mapped.put(key, value, key)
    elif mapped.classifier:
        for key in mapped.classifier:
            mapped.dropped[key] = f"classifier ({source.num_classes} classes)"
        mapped.notes.append(
            f"classifier head.* ({source.num_classes} classes) not used; to_timm "
            f"keeps it"
        )
    buffers = sum(reason == BUFFER for reason in mapped.dropped.values())
    if buffers:
        mapped.notes.append(f"{buffers} stored buffers dropped ({BUFFER})")
    check_fits(mapped, model, checkpoint.source)
    model.load_state_dict(mapped.tensors, strict=True)
    return ConvertedBackbone(source, target, model, mapped)
