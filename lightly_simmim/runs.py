"""Run folders: where a run lives, and rebuilding a trained method from one.

A run folder ``output_dir/name`` (``name`` defaults to the method name) holds::

    config.yaml              the resolved config (the source of truth for --resume)
    checkpoints/last.ckpt    refreshed every epoch and every N steps (atomic writes)
    checkpoints/epoch=NNN.ckpt
    reconstructions/epoch_NNN.png, final.png   (masked-image methods)
    logs/csv/version_K/metrics.csv             (K counts starts: 0, then resumes)
    logs/tensorboard/version_K/                (if tensorboard is installed)
    metrics.json             kNN accuracy, wall time and peak memory at the end
    eval/<protocol>.json     results of `lightly-simmim evaluate`
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from torch import Tensor

from lightly_simmim.build import build_method
from lightly_simmim.checkpoints import (
    CHECKPOINT_DIR,
    CONVERTED_KEY,
    LAST_CHECKPOINT,
    CheckpointError,
    check_weights_fit,
    load_checkpoint,
    model_weights,
)
from lightly_simmim.config import Config, ConfigError, load_config, to_dict
from lightly_simmim.encoders import TimmKwargs
from lightly_simmim.methods import PretrainMethod

__all__ = [
    "RESUMABLE",
    "NothingToResumeError",
    "announce_resume",
    "checked_run_folder",
    "find_run",
    "load_config_for_resume",
    "load_initial_weights",
    "load_run",
    "resume_changes",
    "resume_point",
    "run_dir",
]


class NothingToResumeError(FileNotFoundError):
    """``--resume`` was asked for a run folder without a checkpoint."""


def run_dir(config: Config) -> Path:
    """The run folder of a config: ``output_dir / (name or method name)``."""
    return Path(config.output_dir) / (config.name or config.method.name)


def find_run(run_or_checkpoint: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The run folder and checkpoint file meant by a run folder or checkpoint path.

    A folder means ``<folder>/checkpoints/last.ckpt``; a file is taken as the
    checkpoint, and its run folder is the nearest parent holding ``config.yaml``.

    Args:
        run_or_checkpoint: A run folder (``output_dir/name``) or a ``.ckpt`` file.

    Returns:
        ``(run folder, checkpoint file)``.

    Raises:
        FileNotFoundError: The path, the run's ``config.yaml`` or its checkpoint does
            not exist; the message says what a run folder holds.
    """
    path = Path(run_or_checkpoint)
    layout = (
        "A run folder (written by `lightly-simmim pretrain`) holds config.yaml and "
        f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT}."
    )
    if path.is_dir():
        run = path
        checkpoint = path / CHECKPOINT_DIR / LAST_CHECKPOINT
    elif path.is_file():
        checkpoint = path
        parents = [p for p in path.parents if (p / "config.yaml").is_file()][:1]
        if not parents:
            raise FileNotFoundError(
                f"No config.yaml in any folder above checkpoint {str(path)!r}, so the "
                f"model it belongs to is unknown. {layout}"
            )
        run = parents[0]
    else:
        raise FileNotFoundError(
            f"{str(path)!r} is neither a run folder nor a checkpoint file. {layout}"
        )
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{str(run)!r} has no config.yaml. {layout}")
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"{str(run)!r} has no checkpoint {CHECKPOINT_DIR}/{LAST_CHECKPOINT} (was "
            f"the run stopped before its first checkpoint?). {layout}"
        )
    return run, checkpoint


def load_run(
    run_or_checkpoint: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    *,
    config: Config | None = None,
    encoder_kwargs: TimmKwargs | None = None,
) -> tuple[Config, PretrainMethod, Path, Path]:
    """Rebuilds a trained method from a run folder or one of its checkpoints.

    The model is rebuilt from the run's ``config.yaml`` (or ``config``) and the
    checkpoint's ``state_dict`` is loaded into it strictly, with
    ``weights_only=True``.

    Args:
        run_or_checkpoint: A run folder (its ``checkpoints/last.ckpt`` is used) or a
            checkpoint file inside a run folder.
        overrides: ``section.key=value`` strings applied to ``config.yaml`` (say a
            moved ``data.root``).
        config: Use this resolved config instead of reading ``config.yaml`` (the
            benchmark's, whose pretraining sections are the run's).
        encoder_kwargs: Extra ``timm.create_model`` arguments without parameters of
            their own (a fine-tune's ``drop_path_rate``).

    Returns:
        ``(config, method in eval mode on CPU, run folder, checkpoint file)``.

    Raises:
        FileNotFoundError: No run folder / config / checkpoint there.
        CheckpointError: The checkpoint is corrupt or not weights-only.
        ConfigError: The config is invalid, or the checkpoint does not fit it.
    """
    folder, checkpoint_path = find_run(run_or_checkpoint)
    if config is None:
        config = load_config(folder / "config.yaml", overrides)
    state = model_weights(load_checkpoint(checkpoint_path), checkpoint_path)
    # Without the online classifier: its size would come from the dataset, whose
    # root export and evaluation should not depend on.
    method = build_method(config, with_classes=False, encoder_kwargs=encoder_kwargs)
    check_weights_fit(
        state,
        method,
        path=checkpoint_path,
        described_by=repr(str(folder / "config.yaml")),
        # The online classifier (a training-time probe) is not rebuilt.
        optional=("online_classifier.",),
    )
    method.load_state_dict(state, strict=False)
    method.eval()
    return config, method, folder, checkpoint_path


def load_config_for_resume(
    run_or_checkpoint: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> Config:
    """The config of a run folder for ``--resume``, with overrides applied.

    The run folder and name are taken from where the folder is now, so a moved run
    folder resumes in place. Nothing is written here; :func:`resume_changes` checks
    the overrides against :data:`RESUMABLE`.

    Args:
        run_or_checkpoint: A run folder, or a checkpoint file inside one (an
            ``epoch=NNN.ckpt`` to continue from instead of ``last.ckpt``).
        overrides: ``section.key=value`` strings over the run's ``config.yaml``.

    Raises:
        NothingToResumeError: ``folder`` is not a run folder.
    """
    path = Path(run_or_checkpoint)
    folder = (
        path
        if path.is_dir()
        else next((p for p in path.parents if (p / "config.yaml").is_file()), path)
    )
    if not (folder / "config.yaml").is_file():
        raise NothingToResumeError(
            f"Nothing to resume in {str(path)!r}: it has no config.yaml (a run folder "
            "written by `lightly-simmim pretrain` holds config.yaml and "
            f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT})."
        )
    config = load_config(folder / "config.yaml", overrides)
    return replace(config, output_dir=str(folder.parent), name=folder.name)


#: Settings a resumed run may change, as dotted keys (``section.*``: the whole
#: section). Every one of them is applied from the resumed step on: hardware and
#: logging, the length of the run, the learning rate and its schedule (recomputed
#: from the config at the step), where the data live and what evaluation does.
#: Anything else (the model, the method, the data and its augmentation, the
#: optimiser's other settings, the seed) would make the checkpoint describe another
#: run than the config, so a resume refuses it.
RESUMABLE: tuple[str, ...] = (
    "trainer.epochs",
    "trainer.max_steps",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.compile",
    "trainer.checkpoint_every_n_steps",
    "trainer.keep_epoch_checkpoints",
    "trainer.log_every_n_steps",
    "trainer.reconstruction_every_n_epochs",
    "trainer.progress_bar",
    "optim.base_lr",
    "optim.clip_grad",
    "schedule.*",
    "data.root",
    "data.download",
    "data.num_workers",
    "data.check_images",
    "data.on_corrupt",
    "data.limit_eval",
    "eval.*",
    "finetune.*",
)


def _flat(values: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_changes(
    recorded: Config, config: Config
) -> list[tuple[str, object, object]]:
    """What a resume changes, checked against :data:`RESUMABLE`.

    Args:
        recorded: The run folder's ``config.yaml``.
        config: The config the resume would train with.

    Returns:
        ``(dotted key, recorded value, new value)`` for every changed setting.

    Raises:
        ConfigError: A change a resume may not make, naming the keys and the keys
            it may change; nothing has been written.
    """
    old = _flat({**to_dict(recorded), "output_dir": None, "name": None})
    new = _flat({**to_dict(config), "output_dir": None, "name": None})
    changes = [
        (key, old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    allowed = {key for key in RESUMABLE if not key.endswith(".*")}
    sections = tuple(key[:-1] for key in RESUMABLE if key.endswith(".*"))
    refused = [
        f"{key} ({old_value!r} -> {new_value!r})"
        for key, old_value, new_value in changes
        if key not in allowed and not key.startswith(sections)
    ]
    if refused:
        raise ConfigError(
            f"A resume cannot change {', '.join(refused)}: the checkpoint was trained "
            "with the recorded value, so the run would no longer be one run. Start a "
            "new run instead (--set name=...). A resume may change: "
            f"{', '.join(RESUMABLE)}. Nothing was written."
        )
    return changes


# -------------------------------------------------------- how a run starts


def checked_run_folder(
    config: Config, resume: bool, checkpoint: Path | None
) -> tuple[Path, Path]:
    """The run folder and the checkpoint to resume from (``last.ckpt`` unless
    another is given), if a new / resumed run may use them.

    Raises:
        NothingToResumeError: ``resume`` without a checkpoint.
        FileExistsError: A new run into a folder that holds a checkpoint.
    """
    folder = run_dir(config)
    last = folder / CHECKPOINT_DIR / LAST_CHECKPOINT
    if resume and checkpoint is not None:
        if not checkpoint.is_file():
            raise NothingToResumeError(
                f"Checkpoint {str(checkpoint)!r} does not exist."
            )
        return folder, checkpoint
    # Any checkpoint counts: a full disk can leave epoch=000.ckpt without last.ckpt.
    saved = sorted((folder / CHECKPOINT_DIR).glob("*.ckpt"))
    if resume and not last.is_file():
        if saved:
            raise NothingToResumeError(
                f"{str(folder)!r} has no {CHECKPOINT_DIR}/{LAST_CHECKPOINT}, but "
                f"{saved[-1].name}: resume from it with `lightly-simmim pretrain "
                f"--resume {saved[-1]}`."
            )
        raise NothingToResumeError(
            f"Nothing to resume in {str(folder)!r}: there is no {CHECKPOINT_DIR}/"
            f"{LAST_CHECKPOINT} (the run stopped before its first checkpoint, or this "
            "is not a run folder). Start it again without --resume."
        )
    if not resume and saved:
        newest = folder if last.is_file() else saved[-1]
        raise FileExistsError(
            f"Run folder {str(folder)!r} already holds a checkpoint. Continue it with "
            f"`lightly-simmim pretrain --resume {newest}`, or start a new run with "
            "--set name=<new name> (or another output_dir)."
        )
    return folder, last


def resume_point(
    checkpoint: Path, folder: Path, config: Config
) -> tuple[str, dict[str, Tensor]]:
    """Checks that ``checkpoint`` holds a training state of this package that
    ``config`` can continue, before anything else is built or written (check the
    weights against the model with :func:`~lightly_simmim.checkpoints.check_weights_fit`
    once it is).

    Lightning loads through our weights-only CheckpointIO, except in strategies with
    their own loader (FSDP reads single-file checkpoints with a plain unpickler):
    checking the file weights-only here covers those too.

    Returns:
        (where the run resumes, in words (``step 120, epoch 3``); the model weights,
        memory-mapped).

    Raises:
        CheckpointError: The file is corrupt, not a checkpoint of this package, or
            converted weights without a training state.
        ConfigError: ``config`` ends the run before the checkpoint's epoch or step
            (``trainer.epochs`` / ``trainer.max_steps`` lowered below it).
    """
    loaded = load_checkpoint(checkpoint, mmap=True)
    if CONVERTED_KEY in loaded:
        raise CheckpointError(
            f"{str(checkpoint)!r} was converted from an official SimMIM checkpoint "
            f"({loaded[CONVERTED_KEY]}): it holds weights, not a training state to "
            f"resume. Continue pretraining from it with `lightly-simmim pretrain "
            f"--config {folder / 'config.yaml'} --init-from {folder} --set name=NEW "
            "data.root=...`."
        )
    where = f"step {loaded.get('global_step', '?')}, epoch {loaded.get('epoch', '?')}"
    _check_not_past_end(loaded, checkpoint, config)
    return where, model_weights(loaded, checkpoint)


def _check_not_past_end(
    loaded: Mapping[str, object], checkpoint: Path, config: Config
) -> None:
    """Refuses a resume whose run ends before the checkpoint's epoch or step.

    Lightning refuses a checkpoint of a later epoch than ``max_epochs`` only once
    training starts (after the run folder's config.yaml is rewritten), and silently
    trains nothing for one of a later step than ``max_steps``; the weights would
    then have trained longer than the config says.
    """
    epoch, step = loaded.get("epoch"), loaded.get("global_step")
    trainer = config.trainer
    if isinstance(epoch, int) and trainer.epochs <= epoch:
        raise ConfigError(
            f"{str(checkpoint)!r} was saved in epoch {epoch + 1} (step {step}), but "
            f"this resume ends the run after epoch {trainer.epochs} "
            f"(trainer.epochs={trainer.epochs}). A resume can lengthen a run, not "
            f"undo training: resume with trainer.epochs of at least {epoch + 1} "
            "(without --set trainer.epochs=..., the run folder's config.yaml keeps "
            "its own)."
        )
    max_steps = trainer.max_steps
    if isinstance(step, int) and max_steps is not None and max_steps < step:
        raise ConfigError(
            f"{str(checkpoint)!r} was saved at step {step}, but this resume ends the "
            f"run at step {max_steps} (trainer.max_steps={max_steps}). A resume can "
            f"lengthen a run, not undo training: resume with trainer.max_steps of "
            f"at least {step}, or null."
        )


def load_initial_weights(method: PretrainMethod, source: str) -> None:
    """Loads the weights of a run folder or checkpoint (``init_from``) into ``method``.

    Raises:
        FileNotFoundError: No run folder or checkpoint there.
        CheckpointError: Not a checkpoint of this package, or another architecture.
    """
    _, checkpoint = find_run(source)
    state = model_weights(load_checkpoint(checkpoint), checkpoint)
    check_weights_fit(
        state,
        method,
        path=checkpoint,
        described_by="this run's config",
        optional=("online_classifier.",),  # a probe: trained afresh
    )
    method.load_state_dict(state, strict=False)
    print(f"initialised from {checkpoint}", flush=True)


def announce_resume(
    folder: Path,
    checkpoint: Path,
    where: str,
    changes: Sequence[tuple[str, object, object]],
) -> None:
    changed = "; ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changes)
    print(
        f"resuming {folder} from {checkpoint.name} ({where})"
        + (
            f" with changed settings, applied from this step on: {changed}"
            if changes
            else ""
        ),
        flush=True,
    )
