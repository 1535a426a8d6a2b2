"""Export a pretrained encoder as a safetensors file that timm loads.

:func:`export_timm` rebuilds the method from a run's ``config.yaml``, loads the
checkpoint (``weights_only=True``), and writes the plain timm model inside
(``method.timm_encoder()``, without SimMIM's mask token or any head) as
``<name>.safetensors`` plus ``<name>.json`` beside it. Load it with timm::

    info = json.load(open("encoder.json"))
    model = timm.create_model(
        info["model_name"],
        pretrained=True,
        pretrained_cfg_overlay=dict(file="encoder.safetensors"),
        num_classes=10,  # a fresh classifier for your task; 0 = features only
        **info["kwargs"],
    )

safetensors holds tensors only, so loading it never unpickles anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from lightly_simmim.atomic import atomic_write
from lightly_simmim.encoders.factory import resolve_timm_name
from lightly_simmim.runs import load_run

__all__ = ["EXPORT_MARK", "export_paths", "export_timm"]


def _timm_arguments(
    name: str, kwargs: Mapping[str, object]
) -> tuple[str, dict[str, object]]:
    """The registered timm name and ``create_model`` kwargs that rebuild the encoder.

    Derived names (``swin_base_patch4_window6_192``) become the registered model plus
    size overrides; ``num_classes`` and ``pretrained`` are the caller's to choose.
    """
    registered, overrides = resolve_timm_name(name)
    merged: dict[str, object] = {**overrides, **kwargs}
    for key in ("num_classes", "pretrained", "pretrained_cfg_overlay"):
        merged.pop(key, None)
    return registered, merged


#: The key that marks a file as written by :func:`export_timm` (safetensors
#: metadata and the JSON side file); only such files are replaced without asking.
EXPORT_MARK = "lightly_simmim_export"


def _written_by_export(path: Path) -> bool:
    """Whether ``path`` is a safetensors / JSON file an export wrote."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as file:
                return EXPORT_MARK in (file.metadata() or {})
        return EXPORT_MARK in json.loads(path.read_text())
    except (OSError, ValueError, TypeError, SafetensorError):
        return False


def export_paths(
    out: str | os.PathLike[str] | None, folder: Path, overwrite: bool
) -> tuple[Path, Path]:
    """The ``.safetensors`` file and JSON side file an export writes.

    Args:
        out: ``--output``: a file (``.safetensors`` is appended if missing), an
            existing folder to write into, or None for ``RUN/export/``.
        folder: The run folder.
        overwrite: Replace existing files even if an export did not write them.

    Returns:
        ``(weights, side file)``.

    Raises:
        FileExistsError: A target exists that an export did not write (another
            run's file, a run folder's ``metrics.json``) and ``overwrite`` is off.
    """
    default_name = f"{folder.name}_timm.safetensors"
    target = Path(out) if out is not None else folder / "export" / default_name
    if target.is_dir():
        target = target / default_name
    if target.suffix != ".safetensors":
        target = target.with_name(target.name + ".safetensors")
    paths = (target, target.with_suffix(".json"))
    if not overwrite:
        foreign = [p for p in paths if p.exists() and not _written_by_export(p)]
        if foreign:
            raise FileExistsError(
                f"{', '.join(map(str, foreign))} already exist(s) and was not written "
                "by an export; choose another --output, or pass --overwrite to "
                "replace it."
            )
    return paths


def export_timm(
    run_or_checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Writes the pretrained encoder of a run as a timm-loadable safetensors file.

    Args:
        run_or_checkpoint: A run folder (its ``checkpoints/last.ckpt``) or a
            checkpoint file inside a run folder.
        out: The ``.safetensors`` file to write, or a folder to write it into;
            default ``<run>/export/<run name>_timm.safetensors``. A JSON file with
            the same stem is written beside it: ``model_name`` and ``kwargs`` for
            ``timm.create_model``, plus ``pretrained_cfg`` (input size, channels,
            normalisation), ``num_features``, the source checkpoint and the method.
        overwrite: Replace existing target files that an export did not write.

    Returns:
        The safetensors path.

    Raises:
        FileNotFoundError: No run folder / config / checkpoint there.
        CheckpointError: The checkpoint is corrupt or not weights-only.
        ConfigError: The run's config is invalid or does not fit the checkpoint.
        FileExistsError: A target exists that an export did not write.
        WriteError: The files cannot be written (read-only, no space, ...).
    """
    config, method, folder, checkpoint = load_run(run_or_checkpoint)
    target, side_file = export_paths(out, folder, overwrite)
    model = method.timm_encoder()
    # Contiguous copies: safetensors refuses views and tensors that share storage
    # (tied weights), and a copy also detaches them from the module.
    state = {
        key: value.detach().cpu().contiguous().clone()
        for key, value in model.state_dict().items()
    }
    name, kwargs = _timm_arguments(config.encoder.name, dict(config.encoder.kwargs))
    info = {
        EXPORT_MARK: True,
        "model_name": name,
        "kwargs": kwargs,
        "pretrained_cfg": {
            "input_size": [
                config.data.in_chans,
                config.data.input_size,
                config.data.input_size,
            ],
            "mean": list(method.mean),
            "std": list(method.std),
        },
        "num_features": int(method.feature_dim),
        "method": config.method.name,
        "checkpoint": str(checkpoint),
        "usage": (
            "timm.create_model(model_name, pretrained=True, "
            "pretrained_cfg_overlay=dict(file=<this .safetensors>), num_classes=N, "
            "**kwargs)"
        ),
    }
    atomic_write(
        target,
        safetensors_bytes(
            state, metadata={"format": "pt", "timm_model": name, EXPORT_MARK: "1"}
        ),
    )
    atomic_write(side_file, (json.dumps(info, indent=2) + "\n").encode())
    return target
