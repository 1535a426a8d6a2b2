"""Checkpoint files: written atomically, read without unpickling arbitrary objects.

Two guarantees hold for every checkpoint this package writes or reads:

- **A kill never leaves a corrupt file.** :class:`AtomicCheckpointIO` (handed to
  Lightning's ``Trainer`` as a plugin) serialises into a temporary file in the target's
  own folder, flushes it to disk with ``fsync`` and renames it over the target with
  ``os.replace``. A rename within one file system is atomic, so after a ``SIGKILL`` (or
  a power cut) at any moment ``last.ckpt`` is either the previous complete checkpoint
  or the new complete one. Lightning's own writer goes through fsspec, which stages
  the file in the system temp folder and *moves* it, which is a copy (not atomic)
  whenever ``/tmp`` is another file system, and never calls ``fsync``.
- **Loading never unpickles arbitrary objects.** Every load goes through
  ``torch.load(..., weights_only=True)``, which accepts only tensors, primitive types
  and containers of them; a checkpoint holding anything else is refused with
  :class:`CheckpointError`. Our methods keep their hyperparameters out of the
  checkpoint (the run folder's ``config.yaml`` holds them), so nothing else is needed.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import Tensor, nn

from lightly_simmim.atomic import atomic_write, remove_stale_temporaries
from lightly_simmim.torch_load import (
    UNREADABLE_CHECKPOINT_ERRORS,
    load_error_detail,
)

if TYPE_CHECKING:
    from torch.serialization import MAP_LOCATION

__all__ = [
    "CHECKPOINT_DIR",
    "CONVERTED_KEY",
    "DIVERGED_DIR",
    "LAST_CHECKPOINT",
    "AtomicCheckpointIO",
    "CheckpointError",
    "atomic_write",
    "check_weights_fit",
    "load_checkpoint",
    "model_weights",
    "remove_stale_temporaries",
    "set_aside_diverged",
]

#: Sub-folder of a run folder that holds the checkpoints.
CHECKPOINT_DIR = "checkpoints"
#: File name of the newest checkpoint (refreshed every epoch and every N steps).
LAST_CHECKPOINT = "last.ckpt"
#: Sub-folder of the checkpoints folder for checkpoints of diverged weights.
DIVERGED_DIR = "diverged"
#: Marks a checkpoint converted from an official SimMIM file
#: (``lightly-simmim convert --to run``): model weights only, nothing to resume.
CONVERTED_KEY = "lightly_simmim_converted_from"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: corrupt, truncated, or not weights-only."""


def load_checkpoint(
    path: str | os.PathLike[str], map_location: MAP_LOCATION = "cpu", mmap: bool = False
) -> dict[str, object]:
    """Loads a checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: A ``.ckpt`` file written by Lightning (or any ``torch.save`` file of
            tensors and primitives).
        map_location: Where to put the tensors (``torch.load``'s argument).
        mmap: Map the tensors from the file instead of reading them (cheap: for
            checking a checkpoint without loading it).

    Returns:
        The checkpoint dictionary (Lightning's: ``state_dict``, ``epoch``,
        ``global_step``, loop and optimiser states, ...).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: The file is truncated or corrupt, not a mapping, or holds
            objects other than tensors and primitives (which are never unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist.")
    try:
        loaded = torch.load(
            path, map_location=map_location, weights_only=True, mmap=mmap
        )
    except pickle.UnpicklingError as error:
        if not zipfile.is_zipfile(path):
            # Not what torch.save writes: bytes that only start like a pickle.
            raise _unreadable(path, error) from error
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds Python objects other than tensors and "
            "primitive types; it is not loaded, because unpickling them could run "
            f"arbitrary code. ({str(error).splitlines()[0]})"
        ) from error
    except UNREADABLE_CHECKPOINT_ERRORS as error:
        raise _unreadable(path, error) from error
    if not isinstance(loaded, dict):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds a {type(loaded).__name__}, expected a "
            "dictionary."
        )
    return loaded


def _unreadable(path: Path, error: Exception) -> CheckpointError:
    """The error for a file torch cannot read, with an intact alternative."""
    return CheckpointError(
        f"Checkpoint {str(path)!r} cannot be read ({load_error_detail(error)}); "
        f"it is truncated, corrupt or not a PyTorch checkpoint."
        f"{_intact_alternative(path)}"
    )


def _intact_alternative(broken: Path) -> str:
    """A sentence offering the newest readable ``epoch=NNN.ckpt`` beside ``broken``."""
    candidates = sorted(broken.parent.glob("epoch=*.ckpt"), reverse=True)
    for candidate in candidates:
        if candidate == broken:
            continue
        try:
            torch.load(candidate, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # any failure: not intact, try the next older one
            continue
        run = broken.parent.parent
        return (
            f" The newest intact checkpoint beside it is {candidate.name}: continue "
            f"from it with `lightly-simmim pretrain --resume {candidate}` (or "
            f"evaluate / export {candidate}); {run} itself names the broken "
            f"{broken.name}."
        )
    return ""


def set_aside_diverged(folder: Path, first_bad_step: int) -> str:
    """Moves checkpoints of weights whose loss was not finite out of the way.

    A step's loss is computed before its update, so a loss check learns that an
    update blew the weights up only at the next step, after a checkpoint of those
    weights may have been written (every N steps, or at an epoch's end): every
    checkpoint of ``global_step >= first_bad_step`` holds weights that gave a NaN or
    infinite loss (or were trained from them). Each moves into ``folder/diverged/``
    as ``<name>-step=<step>.ckpt`` (kept, never deleted), and ``last.ckpt``, if it
    was one of them, becomes a copy of the newest checkpoint left, so ``--resume``,
    ``evaluate`` and ``export`` continue from the last weights with a finite loss.

    Args:
        folder: A run's checkpoints folder.
        first_bad_step: The first global step whose weights gave a non-finite loss.

    Returns:
        Sentences for the error message: what was moved and what ``last.ckpt`` is.
    """
    steps: dict[Path, int] = {}
    for path in sorted(folder.glob("*.ckpt")) if folder.is_dir() else []:
        try:
            step = load_checkpoint(path, mmap=True).get("global_step")
        except (CheckpointError, FileNotFoundError):
            continue  # not ours to judge: leave it where it is
        if isinstance(step, int):
            steps[path] = step
    last = folder / LAST_CHECKPOINT
    bad = [path for path, step in steps.items() if step >= first_bad_step]
    if not bad:
        if last in steps:
            return (
                f" {CHECKPOINT_DIR}/{LAST_CHECKPOINT} (step {steps[last]}) is the last "
                "checkpoint before the divergence."
            )
        return " No checkpoint was written before it."
    aside = folder / DIVERGED_DIR
    aside.mkdir(exist_ok=True)
    moved = []
    for path in bad:
        # The step in the name: a second divergence of a resumed run keeps the first.
        target = aside / f"{path.stem}-step={steps[path]}{path.suffix}"
        os.replace(path, target)
        moved.append(target.name)
    text = (
        f" The checkpoints written from step {first_bad_step} on hold weights whose "
        f"loss was not finite: set aside in {aside} ({', '.join(moved)})."
    )
    if last not in bad:
        return text
    good = {path: step for path, step in steps.items() if path not in bad}
    if not good:
        return text + " No checkpoint from before the divergence is left."
    newest = max(good, key=lambda path: good[path])
    atomic_write(last, newest.read_bytes())
    return text + (
        f" {CHECKPOINT_DIR}/{LAST_CHECKPOINT} is now a copy of {newest.name} (step "
        f"{good[newest]}), the newest checkpoint before the divergence: resume "
        f"from it with a lower rate (`lightly-simmim pretrain --resume {folder.parent} "
        "--set optim.base_lr=...`)."
    )


def model_weights(
    checkpoint: Mapping[str, object], path: str | os.PathLike[str]
) -> dict[str, Tensor]:
    """The model weights of a checkpoint written by ``lightly-simmim pretrain``.

    Args:
        checkpoint: What :func:`load_checkpoint` returned.
        path: The file, for messages.

    Returns:
        The ``state_dict`` (parameter name -> tensor).

    Raises:
        CheckpointError: The file holds no model weights of a Lightning run (some
            other ``torch.save`` of a dictionary, an official SimMIM checkpoint).
    """
    state = checkpoint.get("state_dict")
    if isinstance(state, dict) and all(isinstance(v, Tensor) for v in state.values()):
        return state
    keys = ", ".join(sorted(str(key) for key in checkpoint)[:6]) or "none"
    hint = (
        " It looks like an official SimMIM checkpoint: convert it with "
        "`lightly-simmim convert` first."
        if "model" in checkpoint
        else ""
    )
    raise CheckpointError(
        f"{str(path)!r} is not a checkpoint written by `lightly-simmim pretrain`: it "
        f"has no model weights ('state_dict'; its top-level keys: {keys}). Use a run "
        f"folder's checkpoints/last.ckpt or epoch=NNN.ckpt.{hint}"
    )


def check_weights_fit(
    state: Mapping[str, Tensor],
    model: nn.Module,
    *,
    path: str | os.PathLike[str],
    described_by: str,
    optional: tuple[str, ...] = (),
) -> None:
    """Raises CheckpointError unless ``state`` has exactly ``model``'s tensors.

    Checked before anything loads the weights, so a checkpoint of another run or
    architecture is a one-line error instead of a ``KeyError`` or a size mismatch
    deep inside ``load_state_dict``.

    Args:
        state: The checkpoint's model weights.
        model: The model built from the run's config.
        path: The checkpoint, for messages.
        described_by: What ``model`` was built from (``RUN/config.yaml``).
        optional: Name prefixes that may be missing or extra on either side (the
            online classifier, which evaluation does not rebuild).

    Raises:
        CheckpointError: Missing, extra or differently shaped tensors; the message
            names the first few and says what to do.
    """
    expected = model.state_dict()

    def counts(name: str) -> bool:
        return not name.startswith(optional) if optional else True

    problems = [
        f"{name} has shape {tuple(state[name].shape)} in the checkpoint but "
        f"{tuple(tensor.shape)} in the model"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    problems += [f"{n} is missing" for n in expected if n not in state and counts(n)]
    problems += [
        f"{n} is not in the model" for n in state if n not in expected and counts(n)
    ]
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise CheckpointError(
            f"Checkpoint {str(path)!r} does not fit the model {described_by} "
            f"describes: {'; '.join(problems[:3])}{more}. It was written by another "
            "model (a checkpoint of another run copied in, or a config changed "
            "since): use it with the config it was trained with."
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint plugin, writing atomically and loading weights-only.

    Pass it as ``Trainer(plugins=[AtomicCheckpointIO()])``. Saving serialises the
    checkpoint with ``torch.save`` and writes it with :func:`atomic_write`; loading
    uses :func:`load_checkpoint`, i.e. ``weights_only=True`` whatever the caller
    asks for. Remote paths (``s3://`` and the like) fall back to Lightning's writer.
    """

    def save_checkpoint(
        self,
        checkpoint: dict[str, object],
        path: str | Path,
        storage_options: object = None,
    ) -> None:
        """Writes ``checkpoint`` to ``path`` atomically.

        Raises:
            TypeError: If ``storage_options`` is given (not supported, as in
                Lightning's ``TorchCheckpointIO``).
        """
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__} does not support storage_options, got "
                f"{storage_options!r}."
            )
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(path, buffer.getbuffer().tobytes())

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: MAP_LOCATION = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, object]:
        """Loads ``path`` with ``weights_only=True`` (the argument is ignored).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            CheckpointError: See :func:`load_checkpoint`.
        """
        # weights_only=False is never honoured: a checkpoint is data, not code.
        return load_checkpoint(path, map_location=map_location)

    def remove_checkpoint(self, path: str | Path) -> None:
        """Deletes a checkpoint file (ModelCheckpoint's rotation)."""
        if "://" in str(path):
            super().remove_checkpoint(path)
            return
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()
