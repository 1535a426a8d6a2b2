"""An official checkpoint as a run folder: evaluate, export and pretrain further.

:func:`write_run_folder` converts an official microsoft/SimMIM checkpoint
(:func:`~lightly_simmim.convert.convert_official_checkpoint`) into the layout
``lightly-simmim pretrain`` writes, ``config.yaml`` plus ``checkpoints/last.ckpt``, so
that ``lightly-simmim evaluate`` and ``export`` take it like any run, and
``lightly-simmim pretrain --init-from FOLDER`` continues pretraining from its weights
(with a new optimiser and schedule: the official files' optimiser state is not
converted, so the folder is not for ``--resume``).

The config describes the converted model: the SimMIM method with the checkpoint's
mask settings (``DATA.MASK_PATCH_SIZE`` / ``DATA.MASK_RATIO`` where its config has
them; smaller cells where those do not fit a small ``img_size``, see
:func:`fit_mask_patch`), the timm encoder the weights were mapped onto,
ImageNet-style RGB data at the model's image size (``data.root`` to be given with
``--set`` when it is used).
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import torch

from lightly_simmim.atomic import atomic_write
from lightly_simmim.checkpoints import CHECKPOINT_DIR, CONVERTED_KEY, LAST_CHECKPOINT
from lightly_simmim.config import Config, MethodConfig, dump_config
from lightly_simmim.convert.architecture import config_value
from lightly_simmim.convert.load import Conversion, convert_official_checkpoint
from lightly_simmim.convert.safe_load import read_official_checkpoint

__all__ = ["fit_mask_patch", "write_run_folder"]


def _config(conversion: Conversion, folder: Path, mask: tuple[int, float]) -> Config:
    """The run config that rebuilds the converted model."""
    target = conversion.target
    kwargs = dict(target.timm_kwargs)
    if conversion.drop_path_rate is not None:
        kwargs["drop_path_rate"] = conversion.drop_path_rate
    size = kwargs.get("img_size", 224)
    side = int(size if isinstance(size, int) else size[0])
    defaults = Config()
    data = dataclasses.replace(
        defaults.data,
        dataset="imagenet",
        input_size=side,
        in_chans=1 if kwargs.get("in_chans", 3) == 1 else 3,
        mean=None,  # ImageNet statistics, as the official code normalises
        std=None,
    )
    options: dict[str, object] = {"mask_patch_size": mask[0], "mask_ratio": mask[1]}
    window = getattr(conversion.model.loss, "norm_target_window", None)
    if isinstance(window, int):
        options["norm_target_window"] = window
    return dataclasses.replace(
        defaults,
        method=MethodConfig(name="simmim", options=options),
        encoder=dataclasses.replace(
            defaults.encoder, name=target.timm_name, kwargs=kwargs, init="timm"
        ),
        data=data,
        output_dir=str(folder.parent),
        name=folder.name,
    )


def fit_mask_patch(mask_patch_size: int, side: int, model_patch_size: int) -> int:
    """The checkpoint's mask cell side, or a smaller one that fits ``side``.

    SimMIM needs cells that tile the image, cover whole tokens and leave some
    visible; the official 32 px cells do not at a small ``img_size`` (one cell on a
    32 px image, all masked). Then the largest multiple of ``model_patch_size`` that
    divides ``side`` in at least 2 x 2 cells; the checkpoint's own if none does (the
    method then names the problem).
    """
    if side % mask_patch_size == 0 and side // mask_patch_size >= 2:
        return mask_patch_size
    fitting = [
        cell
        for cell in range(model_patch_size, side // 2 + 1, model_patch_size)
        if side % cell == 0 and cell <= mask_patch_size
    ]
    return max(fitting, default=mask_patch_size)


def write_run_folder(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    img_size: int | None = None,
    window_size: int | None = None,
    split_rel_pos_bias: bool = False,
) -> tuple[Path, Conversion]:
    """Converts an official checkpoint into a new run folder.

    Args:
        source: The official ``.pth`` file.
        output: The run folder to create; it must not exist, or be empty.
        img_size: Input size to use the weights at (tables resized).
        window_size: Swin / SwinV2 window size.
        split_rel_pos_bias: ViT: one relative position table per block.

    Returns:
        ``(run folder, the conversion with its notes)``.

    Raises:
        FileExistsError: ``output`` holds files.
        OfficialCheckpointError: Not an official checkpoint, or tensors that do not
            fit (see :func:`convert_official_checkpoint`).
        WriteError: The folder cannot be written.
    """
    folder = Path(output)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(
            f"{str(folder)!r} already exists and is not an empty folder; choose a new "
            "run folder for the converted checkpoint."
        )
    checkpoint = read_official_checkpoint(source)
    conversion = convert_official_checkpoint(
        checkpoint,
        img_size=img_size,
        window_size=window_size,
        split_rel_pos_bias=split_rel_pos_bias,
    )
    patch = config_value(checkpoint.config, "DATA", "MASK_PATCH_SIZE")
    ratio = config_value(checkpoint.config, "DATA", "MASK_RATIO")
    mask = (
        int(patch) if isinstance(patch, int) else 32,
        float(ratio) if isinstance(ratio, (int, float)) else 0.6,
    )
    side = conversion.target.img_size[0]
    cell = fit_mask_patch(mask[0], side, conversion.target.patch_size)
    if cell != mask[0]:
        note = (
            f"mask_patch_size {mask[0]} does not tile {side} px images in 2 x 2 or "
            f"more cells; the run folder masks {cell} px cells (method."
            f"mask_patch_size in its config.yaml)."
        )
        conversion = dataclasses.replace(conversion, notes=(*conversion.notes, note))
        mask = (cell, mask[1])
    config = _config(conversion, folder, mask)
    # The method's weights are its SimMIM model's, under "model.".
    state = {
        f"model.{key}": value.detach().clone()
        for key, value in conversion.model.state_dict().items()
    }
    buffer = io.BytesIO()
    torch.save(
        {
            "state_dict": state,
            "epoch": checkpoint.epoch if checkpoint.epoch is not None else 0,
            "global_step": 0,
            CONVERTED_KEY: str(source),
        },
        buffer,
    )
    atomic_write(folder / CHECKPOINT_DIR / LAST_CHECKPOINT, buffer.getvalue())
    dump_config(config, folder / "config.yaml")
    return folder, conversion
