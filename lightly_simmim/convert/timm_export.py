"""Official SimMIM backbones as timm weights: a state dict, or files on disk.

:func:`to_timm` gives the timm name, keyword arguments and state dict;
:func:`export_official_to_timm` writes them as ``.safetensors`` plus a JSON side
file that ``timm.create_model(..., pretrained=True,
pretrained_cfg_overlay=dict(file=...))`` loads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

from safetensors.torch import save as safetensors_bytes
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor

from lightly_simmim.atomic import atomic_write
from lightly_simmim.convert.architecture import Overrides
from lightly_simmim.convert.detect import detect_family
from lightly_simmim.convert.mapping import Source, as_checkpoint, convert_backbone
from lightly_simmim.encoders import TimmKwargs

__all__ = ["TimmExport", "export_official_to_timm", "to_timm"]


class TimmExport(NamedTuple):
    """What :func:`to_timm` returns; unpacks as ``name, kwargs, state_dict``."""

    timm_name: str
    """Registered timm model name."""
    timm_kwargs: TimmKwargs
    """``timm.create_model`` keyword arguments, ``num_classes`` included."""
    state_dict: dict[str, Tensor]
    """The model's full state dict (contiguous CPU copies)."""


def to_timm(
    source: Source,
    *,
    include_classifier: bool = True,
    img_size: int | tuple[int, int] | None = None,
    window_size: int | None = None,
    in_chans: int | None = None,
    drop_path_rate: float | None = None,
    split_rel_pos_bias: bool = False,
) -> TimmExport:
    """The backbone of an official checkpoint as a timm model's state dict.

    The state dict has been loaded into ``timm.create_model(timm_name,
    **timm_kwargs)`` with ``strict=True`` before it is returned, so it fits that
    model exactly: every parameter, nothing else.

    Args:
        source: A checkpoint path, or an already read :class:`OfficialCheckpoint`.
        include_classifier: Keep a fine-tuning checkpoint's classifier (then
            ``num_classes`` is its class count); otherwise ``num_classes=0``. A
            pretraining checkpoint has none either way.
        img_size: Input size to use the weights at (tables resized).
        window_size: Swin / SwinV2 window size.
        in_chans: Input channels.
        drop_path_rate: Added to the keyword arguments if given.
        split_rel_pos_bias: ViT: one relative position table per block.

    Returns:
        ``(timm_name, timm_kwargs, state_dict)``.

    Raises:
        FileNotFoundError: No file at ``source``.
        ValueError: A size or rate override out of range.
        OfficialCheckpointError: See :func:`convert_official_checkpoint`.
    """
    overrides = Overrides(
        img_size=img_size,
        window_size=window_size,
        in_chans=in_chans,
        drop_path_rate=drop_path_rate,
        split_rel_pos_bias=split_rel_pos_bias,
    )
    backbone = convert_backbone(as_checkpoint(source), overrides, include_classifier)
    classes = backbone.source.num_classes if include_classifier else 0
    kwargs: dict[str, object] = {**backbone.target.timm_kwargs, "num_classes": classes}
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    # Copies: safetensors refuses views and shared storage, and the caller owns them.
    state = {
        key: value.detach().cpu().contiguous().clone()
        for key, value in backbone.model.state_dict().items()
    }
    return TimmExport(backbone.target.timm_name, kwargs, state)


def _pretrained_cfg(kwargs: TimmKwargs) -> dict[str, object]:
    """timm's data and classifier config for the exported weights."""
    size = kwargs["img_size"]
    height, width = (size, size) if isinstance(size, int) else size
    channels = int(kwargs["in_chans"])
    cfg: dict[str, object] = {
        "num_classes": kwargs["num_classes"],
        "input_size": [channels, height, width],
        # The official evaluation: bicubic resize to size / 0.875, centre crop.
        "interpolation": "bicubic",
        "crop_pct": 0.875,
    }
    if channels == 3:  # the official code normalises with ImageNet statistics
        cfg.update(mean=list(IMAGENET_DEFAULT_MEAN), std=list(IMAGENET_DEFAULT_STD))
    return cfg


def export_official_to_timm(
    source: Source,
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    include_classifier: bool = True,
    img_size: int | tuple[int, int] | None = None,
    window_size: int | None = None,
    in_chans: int | None = None,
    drop_path_rate: float | None = None,
    split_rel_pos_bias: bool = False,
) -> Path:
    """Writes an official checkpoint's backbone as timm ``.safetensors`` + ``.json``.

    The JSON file beside it (same stem) holds ``model_name`` and ``kwargs`` for
    ``timm.create_model`` (as in :func:`lightly_simmim.export.export_timm`), a
    ``pretrained_cfg`` for timm (class count, input size, ImageNet mean / std and
    the evaluation crop of the official code), and the family, kind and source
    checkpoint. Load it with::

        info = json.load(open("swin_b.json"))
        cfg = dict(file="swin_b.safetensors", **info["pretrained_cfg"])
        model = timm.create_model(
            info["model_name"],
            pretrained=True,
            pretrained_cfg_overlay=cfg,
            **info["kwargs"],  # then num_classes=N for a new classifier
        )

    The ``pretrained_cfg`` matters for a classifier: timm keeps pretrained
    classifier weights only when the model's ``num_classes`` equals the config's.
    Both files are written atomically.

    Args:
        source: A checkpoint path, or an already read :class:`OfficialCheckpoint`.
        output: The ``.safetensors`` file to write (the suffix is added if missing).
        overwrite: Replace existing files; otherwise an existing file is an error.
        include_classifier: Keep a fine-tuning checkpoint's classifier.
        img_size: Input size to use the weights at (tables resized).
        window_size: Swin / SwinV2 window size.
        in_chans: Input channels.
        drop_path_rate: Added to the keyword arguments if given.
        split_rel_pos_bias: ViT: one relative position table per block.

    Returns:
        The ``.safetensors`` path.

    Raises:
        FileExistsError: The output or its JSON file exists and not ``overwrite``.
        FileNotFoundError: No file at ``source``.
        ValueError: A size or rate override out of range.
        OfficialCheckpointError: See :func:`convert_official_checkpoint`.
    """
    target = Path(output)
    if target.suffix != ".safetensors":
        target = target.with_name(target.name + ".safetensors")
    side_file = target.with_suffix(".json")
    existing = [str(path) for path in (target, side_file) if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} exists; replace it with --overwrite (overwrite=True "
            "in Python)."
        )
    checkpoint = as_checkpoint(source)
    name, kwargs, state = to_timm(
        checkpoint,
        include_classifier=include_classifier,
        img_size=img_size,
        window_size=window_size,
        in_chans=in_chans,
        drop_path_rate=drop_path_rate,
        split_rel_pos_bias=split_rel_pos_bias,
    )
    info = {
        "model_name": name,
        "kwargs": kwargs,
        "pretrained_cfg": _pretrained_cfg(kwargs),
        "family": detect_family(checkpoint.encoder_state),
        "kind": checkpoint.kind,
        "source": checkpoint.source,
        "usage": (
            "timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay="
            "dict(file=<this .safetensors>, **pretrained_cfg), **kwargs)"
        ),
    }
    atomic_write(
        target, safetensors_bytes(state, metadata={"format": "pt", "timm_model": name})
    )
    atomic_write(side_file, (json.dumps(info, indent=2) + "\n").encode())
    return target
