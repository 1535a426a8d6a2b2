"""The pretraining loop: a config in, a run folder out, on Lightning's ``Trainer``.

:func:`pretrain` wires what the config names (dataset, method from the
``lightly.methods`` entry points, encoder, optimiser, schedule, devices) into one
Lightning ``Trainer`` shared by every method, then evaluates the pooled features with
kNN. The run folder ``output_dir/name`` (``name`` defaults to the method name) holds::

    config.yaml              the resolved config (the source of truth for --resume)
    checkpoints/last.ckpt    refreshed every epoch and every N steps (atomic writes)
    checkpoints/epoch=NNN.ckpt
    reconstructions/epoch_NNN.png, final.png   (masked-image methods)
    logs/csv/version_K/metrics.csv             (K counts starts: 0, then resumes)
    logs/tensorboard/version_K/                (if tensorboard is installed)
    metrics.json             kNN accuracy, wall time and peak memory at the end

The learning rate follows the global batch, ``batch_size x devices x num_nodes x
accumulate_grad_batches``, which is resolved from the ``Trainer`` (so ``devices:
auto`` or ``-1`` count the devices actually used). ``strategy: ddp`` means DDP that
tolerates parameters without gradients (see :func:`_strategy`); other strategy
strings (``fsdp``, ``ddp_spawn``, ...) go to Lightning unchanged. Every epoch file is
kept: budget disk space for long runs (a ViT-B checkpoint with AdamW state is about
1 GB), or delete old ``epoch=*.ckpt`` files; ``last.ckpt`` is all ``--resume`` needs.

A run killed mid-epoch resumes from its last ``last.ckpt`` with the step counter,
optimiser and schedule restored; the rest of that epoch draws a fresh shuffle of the
data (Lightning's loaders do not record their position), and the run still ends at
the same final epoch and global step.

:func:`load_run` rebuilds a trained method from a run folder or checkpoint for
evaluation and export.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.callbacks import Callback, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.strategies import DDPStrategy, Strategy
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader, Dataset, Subset

from lightly_simmim import registry
from lightly_simmim.callbacks import (
    ReconstructionImages,
    StopOnNonFiniteLoss,
    checkpoint_callbacks,
)
from lightly_simmim.checkpoints import (
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    AtomicCheckpointIO,
    atomic_write,
    find_run,
    load_checkpoint,
    remove_stale_temporaries,
)
from lightly_simmim.config import Config, ConfigError, dump_config, from_dict
from lightly_simmim.config import load_config as _load_config
from lightly_simmim.data import (
    DatasetNotFoundError,
    TransformedDataset,
    build_dataset,
    num_classes,
)
from lightly_simmim.evaluation import extract_features, knn_accuracy
from lightly_simmim.transforms import IMAGENET_NORMALIZE

__all__ = [
    "NothingToResumeError",
    "build_method",
    "dataset_splits",
    "knn_evaluate",
    "load_config_for_resume",
    "load_run",
    "method_and_settings",
    "pretrain",
    "run_dir",
]


class NothingToResumeError(FileNotFoundError):
    """``--resume`` was asked for a run folder without a checkpoint."""


def run_dir(config: Config) -> Path:
    """The run folder of a config: ``output_dir / (name or method name)``."""
    return Path(config.output_dir) / (config.name or config.method.name)


def _normalization(config: Config) -> tuple[list[float] | None, list[float] | None]:
    """Mean / std the images are normalised with (None in the config = ImageNet)."""
    if config.data.mean is not None and config.data.std is not None:
        return config.data.mean, config.data.std
    if config.data.in_chans == 3:
        return IMAGENET_NORMALIZE["mean"], IMAGENET_NORMALIZE["std"]
    return None, None


def _subset(
    dataset: Dataset[tuple[Any, int]], limit: int | None
) -> Dataset[tuple[Any, int]]:
    """``limit`` images spread evenly over ``dataset`` (all of it for None).

    Evenly spaced rather than the first ones: image folders are sorted by class, so
    the first N images would often be a single class.
    """
    size = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= size:
        return dataset
    if limit < 1:
        raise ConfigError(f"data.limit_train / limit_eval must be >= 1, got {limit}.")
    return Subset(dataset, [i * size // limit for i in range(limit)])


def dataset_splits(
    config: Config, train: bool = True
) -> dict[str, Dataset[tuple[Any, int]]]:
    """The untransformed datasets of a run, subsets applied.

    ``"train"``: ``data.dataset``'s training split (``data.limit_train``), only if
    ``train``; ``"memory"`` and ``"test"``: the training and test splits of
    ``eval.dataset`` (default ``data.dataset``), the kNN memory bank
    (``data.limit_train``) and queries (``data.limit_eval``). A split that is the
    same as another is built once.
    """
    data = config.data
    eval_name = config.eval.dataset or data.dataset

    def build(name: str, split_train: bool) -> Dataset[tuple[Any, int]]:
        try:
            dataset = build_dataset(
                name,
                root=data.root,
                train=split_train,
                download=data.download,
                on_corrupt=data.on_corrupt,
                check_images=data.check_images,
            )
        except DatasetNotFoundError as error:
            # The data module knows the layout; only the config knows the key.
            raise DatasetNotFoundError(
                f"{error} Point the config at the data with --set data.root=PATH."
            ) from error
        return _subset(dataset, data.limit_train if split_train else data.limit_eval)

    splits: dict[str, Dataset[tuple[Any, int]]] = {}
    if train:
        splits["train"] = build(data.dataset, True)
    if train and eval_name == data.dataset:
        splits["memory"] = splits["train"]
    else:
        splits["memory"] = build(eval_name, True)
    splits["test"] = build(eval_name, False)
    return splits


def _on_cpu(config: Config) -> bool:
    accelerator = config.trainer.accelerator
    if accelerator == "cpu":
        return True
    if accelerator != "auto":
        return False
    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def _loggers(folder: Path, flush_every: int) -> list[Logger]:
    loggers: list[Logger] = [
        CSVLogger(folder, name="csv", flush_logs_every_n_steps=flush_every)
    ]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        pass  # optional: CSV is always written
    else:
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(folder, name="tensorboard"))
    return loggers


def _strategy(name: str) -> str | Strategy:
    """Lightning's strategy for a config string; ``"ddp"`` tolerates unused parameters.

    Every method has parameters that get no gradient in some steps (timm's
    ``fc_norm`` and other pooling layers are used only for the no-grad features of
    the online classifier and evaluation; BYOL's target network never), which plain
    DDP rejects. Finding them costs one walk over the autograd graph per step; a
    method known to use all its parameters can skip it with
    ``ddp_find_unused_parameters_false``. Every other string goes to Lightning as is.
    """
    if name == "ddp":
        return DDPStrategy(find_unused_parameters=True)
    return name


def _build_trainer(
    config: Config, folder: Path, callbacks: list[Callback]
) -> pl.Trainer:
    t = config.trainer
    progress: list[Callback] = []
    if t.progress_bar:
        # Outside a terminal (logs, CI) every refresh is a new line: refresh less.
        rate = 1 if sys.stdout.isatty() else max(1, t.log_every_n_steps)
        progress.append(TQDMProgressBar(refresh_rate=rate))
    try:
        return _trainer(config, folder, [*callbacks, *progress])
    except (MisconfigurationException, TypeError, ValueError) as error:
        # Lightning checks devices / accelerator / strategy / precision here.
        raise ConfigError(
            f"Lightning rejects the trainer settings (trainer.accelerator="
            f"{t.accelerator!r}, devices={t.devices!r}, num_nodes={t.num_nodes}, "
            f"strategy={t.strategy!r}, precision={t.precision!r}): {error}"
        ) from error


def _trainer(config: Config, folder: Path, callbacks: list[Callback]) -> pl.Trainer:
    t = config.trainer
    return pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=_strategy(t.strategy),
        precision=t.precision,
        max_epochs=t.epochs,
        max_steps=-1 if t.max_steps is None else t.max_steps,
        gradient_clip_val=config.optim.clip_grad,
        accumulate_grad_batches=config.optim.accumulate_grad_batches,
        log_every_n_steps=t.log_every_n_steps,
        # Deterministic kernels cost nothing on CPU; on GPUs they can be much slower.
        deterministic=True if _on_cpu(config) else None,
        callbacks=callbacks,
        logger=_loggers(folder / "logs", t.log_every_n_steps),
        enable_progress_bar=t.progress_bar,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=folder,
        # Validation (if the method has any) only reports; no sanity run needed.
        num_sanity_val_steps=0,
    )


def _steps_per_epoch(
    num_images: int, batch_size: int, world_size: int, accumulate: int
) -> int:
    """Optimiser steps per epoch: each rank gets ceil(N / world) images (the
    distributed sampler pads), drops its last partial batch, and steps once per
    ``accumulate`` batches (and once more for a partial group at the epoch end)."""
    batches = math.ceil(num_images / world_size) // batch_size
    return math.ceil(batches / accumulate)


def method_and_settings(config: Config) -> tuple[Any, Any]:
    """The method class of ``config.method.name`` and its checked options.

    Raises:
        UnknownComponentError: No such ``lightly.methods`` entry point.
        ConfigError: An option is unknown or of the wrong type.
    """
    method_cls = registry.get("methods", config.method.name)
    settings = from_dict(method_cls.Settings, config.method.options, prefix="method.")
    return method_cls, settings


def build_method(
    config: Config,
    *,
    global_batch_size: int | None = None,
    steps_per_epoch: int = 1,
    with_classes: bool = True,
) -> Any:
    """Builds the method a config names, with a freshly initialised encoder.

    Args:
        config: The run config.
        global_batch_size: Images per optimiser step over all devices; None = the
            per-device batch times ``accumulate_grad_batches`` (one device).
        steps_per_epoch: Optimiser steps per epoch, for the LR schedule.
        with_classes: Size the online classifier from the dataset (reads an image
            folder's class folders); False builds none.

    Returns:
        The ``LightningModule`` of the ``lightly.methods`` entry point
        ``config.method.name``.

    Raises:
        ConfigError: A method option is unknown or of the wrong type.
        UnknownComponentError: No such method is registered.
        PluginLoadError: The method's plugin fails to import.
    """
    method_cls, settings = method_and_settings(config)
    encoder = method_cls.build_encoder(config.encoder.name, dict(config.encoder.kwargs))
    mean, std = config.data.mean, config.data.std
    classes = None
    if with_classes and config.trainer.online_classifier:
        classes = num_classes(config.data.dataset, config.data.root)
    if global_batch_size is None:
        global_batch_size = (
            config.data.batch_size * config.optim.accumulate_grad_batches
        )
    return method_cls(
        encoder,
        settings,
        config.optim,
        config.schedule,
        input_size=config.data.input_size,
        in_chans=config.data.in_chans,
        mean=mean,
        std=std,
        num_classes=classes,
        global_batch_size=global_batch_size,
        steps_per_epoch=steps_per_epoch,
        epochs=config.trainer.epochs,
        seed=config.seed,
    )


def knn_evaluate(
    method: Any,
    config: Config,
    device: torch.device | str = "cpu",
    splits: dict[str, Dataset[tuple[Any, int]]] | None = None,
) -> dict[str, Any]:
    """kNN accuracy of the method's pooled features: train split vs test split.

    Both splits go through ``method.eval_transform()``; the memory bank is the
    training split (``data.limit_train`` images), the queries the test split
    (``data.limit_eval``), of ``eval.dataset`` if set, else of ``data.dataset``.

    Args:
        method: A method (``forward(images) -> (B, D)`` pooled features).
        config: The run config (``eval.knn_k``, ``eval.knn_temperature``, data).
        device: Where to run the encoder.
        splits: Untransformed ``"memory"`` and ``"test"`` datasets already built
            from ``config``; None builds them.

    Returns:
        ``{"top1", "top5"}`` in percent plus ``k``, ``temperature``,
        ``train_images``, ``test_images``.
    """
    transform = method.eval_transform()
    if splits is None:
        splits = dataset_splits(config, train=False)
    features = {}
    for split in ("memory", "test"):
        loader = DataLoader(
            TransformedDataset(splits[split], transform),
            batch_size=max(256, config.data.batch_size),
            num_workers=config.data.num_workers,
        )
        features[split] = extract_features(method, loader, device=device)
    name = config.eval.dataset or config.data.dataset
    result = knn_accuracy(
        *features["memory"],
        *features["test"],
        num_classes=num_classes(name, config.data.root),
        k=config.eval.knn_k,
        temperature=config.eval.knn_temperature,
    )
    return {
        **result,
        "k": config.eval.knn_k,
        "temperature": config.eval.knn_temperature,
        "train_images": len(features["memory"][1]),
        "test_images": len(features["test"][1]),
    }


def load_run(
    run_or_checkpoint: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> tuple[Config, Any, Path, Path]:
    """Rebuilds a trained method from a run folder or one of its checkpoints.

    The model is rebuilt from the run's ``config.yaml`` and the checkpoint's
    ``state_dict`` is loaded into it strictly, with ``weights_only=True``.

    Args:
        run_or_checkpoint: A run folder (its ``checkpoints/last.ckpt`` is used) or a
            checkpoint file inside a run folder.
        overrides: ``section.key=value`` strings applied to ``config.yaml`` (say a
            moved ``data.root``).

    Returns:
        ``(config, method in eval mode on CPU, run folder, checkpoint file)``.

    Raises:
        FileNotFoundError: No run folder / config / checkpoint there.
        CheckpointError: The checkpoint is corrupt or not weights-only.
        ConfigError: The config is invalid, or the checkpoint does not fit it.
    """
    folder, checkpoint_path = find_run(run_or_checkpoint)
    config = _load_config(folder / "config.yaml", overrides)
    state = load_checkpoint(checkpoint_path)["state_dict"]
    # Without the online classifier: its size would come from the dataset, whose
    # root export and evaluation should not depend on.
    method = build_method(config, with_classes=False)
    missing, unexpected = method.load_state_dict(state, strict=False)
    if missing:
        raise ConfigError(
            f"Checkpoint {str(checkpoint_path)!r} does not fit the model of "
            f"{str(folder / 'config.yaml')!r}: missing {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}."
        )
    # The online classifier (a training-time probe) is not rebuilt; its weights are
    # the only ones allowed to be left over.
    stray = [key for key in unexpected if not key.startswith("online_classifier.")]
    if stray:
        raise ConfigError(
            f"Checkpoint {str(checkpoint_path)!r} does not fit the model of "
            f"{str(folder / 'config.yaml')!r}: unexpected {', '.join(stray[:5])}"
            f"{' ...' if len(stray) > 5 else ''}."
        )
    method.eval()
    return config, method, folder, checkpoint_path


def _peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory of this process's training, for ``metrics.json``.

    On CUDA the most memory torch allocated on the device (its caching allocator
    holds a little more); elsewhere the peak resident set size of this process
    (data loader workers, separate processes, not counted), which is a
    lifetime maximum: run one training per process to compare methods (the
    benchmark does). ``peak_memory_mb`` is None where neither can be read.
    """
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        return {"peak_memory_mb": round(peak, 1), "peak_memory_kind": "cuda_allocated"}
    try:
        import resource
    except ImportError:  # Windows
        return {"peak_memory_mb": None, "peak_memory_kind": None}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    peak = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    return {"peak_memory_mb": round(peak, 1), "peak_memory_kind": "cpu_max_rss"}


def pretrain(config: Config, resume: bool = False) -> Path:
    """Pretrains ``config.method`` and evaluates it with kNN at the end.

    On resume the run folder's ``config.yaml`` is the source of truth: pass the
    config read from it (the CLI's ``--resume RUN_DIR`` does), so the run continues
    to the same final epoch with the same schedule. ``config.yaml`` is rewritten
    with what was passed, overrides included.

    With ``strategy: ddp`` Lightning starts the other ranks by running the same
    command again; everything here that writes files does so on global rank 0 only.

    Args:
        config: The resolved run config.
        resume: Continue from ``<run>/checkpoints/last.ckpt`` (optimiser, schedule,
            loop and step counters included) instead of starting fresh.

    Returns:
        The run folder.

    Raises:
        NothingToResumeError: ``resume`` without a checkpoint in the run folder.
        FileExistsError: Not ``resume``, but the run folder already has a checkpoint.
        NonFiniteLossError: The loss became NaN or infinite.
        ConfigError, DatasetNotFoundError, CorruptImageError: Bad settings or data.
    """
    started = time.perf_counter()
    folder = run_dir(config)
    last = folder / CHECKPOINT_DIR / LAST_CHECKPOINT
    if resume and not last.is_file():
        raise NothingToResumeError(
            f"Nothing to resume in {str(folder)!r}: there is no {CHECKPOINT_DIR}/"
            f"{LAST_CHECKPOINT} (the run stopped before its first checkpoint, or this "
            "is not a run folder). Start it again without --resume."
        )
    if not resume and last.is_file():
        raise FileExistsError(
            f"Run folder {str(folder)!r} already holds a checkpoint. Continue it with "
            f"`lightly-simmim pretrain --resume {folder}`, or start a new run with "
            "--set name=<new name> (or another output_dir)."
        )
    method_and_settings(config)  # an unknown method or option fails here, at once
    pl.seed_everything(config.seed, workers=True, verbose=False)
    mean, std = _normalization(config)

    # The trainer comes first: it resolves devices ("auto", -1, "0,1") and nodes,
    # which give the global batch, which gives the learning rate and the schedule.
    splits = dataset_splits(config)
    images = ReconstructionImages(
        splits["test"],
        folder / "reconstructions",
        config.trainer.reconstruction_every_n_epochs,
        mean,
        std,
    )
    callbacks: list[Callback] = [
        StopOnNonFiniteLoss(),
        images,
        *checkpoint_callbacks(
            folder,
            config.trainer.checkpoint_every_n_steps,
            config.trainer.keep_epoch_checkpoints,
        ),
    ]
    trainer = _build_trainer(config, folder, callbacks)
    world_size = trainer.num_devices * trainer.num_nodes
    accumulate = config.optim.accumulate_grad_batches
    global_batch = config.data.batch_size * world_size * accumulate
    steps = _steps_per_epoch(
        len(splits["train"]),  # type: ignore[arg-type]
        config.data.batch_size,
        world_size,
        accumulate,
    )
    if steps < 1:
        raise ConfigError(
            f"{len(splits['train'])} training images make no full batch of "  # type: ignore[arg-type]
            f"{config.data.batch_size} on each of {world_size} process(es); lower "
            "data.batch_size or raise data.limit_train."
        )
    method = build_method(config, global_batch_size=global_batch, steps_per_epoch=steps)
    loader = DataLoader(
        TransformedDataset(splits["train"], method.default_transform()),
        batch_size=config.data.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.data.num_workers,
        persistent_workers=config.data.num_workers > 0,
        pin_memory=not _on_cpu(config),
    )
    val_loader = None
    if is_overridden("validation_step", method) and (
        config.eval.dataset in (None, config.data.dataset)
    ):
        # A method that validates (say, scores an online classifier) gets the test
        # split through eval_transform() every epoch: a cheap progress signal in
        # the logs between the kNN evaluations.
        val_loader = DataLoader(
            TransformedDataset(splits["test"], method.eval_transform()),
            batch_size=config.data.batch_size,
            num_workers=config.data.num_workers,
            persistent_workers=config.data.num_workers > 0,
        )
    if trainer.is_global_zero:
        if resume:
            remove_stale_temporaries(folder / CHECKPOINT_DIR)
        dump_config(config, folder / "config.yaml")
        lr = config.optim.base_lr * global_batch / config.optim.base_batch_size
        print(
            f"run folder: {folder}\nglobal batch {global_batch} = "
            f"{config.data.batch_size} per device x {trainer.num_devices} device(s) "
            f"x {trainer.num_nodes} node(s) x {accumulate} accumulated; lr = "
            f"{config.optim.base_lr:g} x {global_batch} / "
            f"{config.optim.base_batch_size} = {lr:.3g}; {steps} steps per epoch",
            flush=True,
        )
    if resume:
        # Lightning loads through our weights-only CheckpointIO, except in strategies
        # with their own loader (FSDP reads single-file checkpoints with a plain
        # unpickler): checking the file weights-only first covers those too.
        load_checkpoint(last, mmap=True)
    # Lightning unwraps a compiled module (checkpoint keys stay the plain ones).
    model: pl.LightningModule = (
        torch.compile(method) if config.trainer.compile else method  # type: ignore[assignment]
    )
    with warnings.catch_warnings():
        # Resuming writes into the folder that holds the checkpoints, on purpose.
        warnings.filterwarnings(
            "ignore", ".*Checkpoint directory .* exists and is not empty.*"
        )
        # Lightning's own use of a deprecated torch API, nothing a user can act on.
        warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
        trainer.fit(
            model,
            train_dataloaders=loader,
            val_dataloaders=val_loader,
            ckpt_path=str(last) if resume else None,
            weights_only=True,
        )
    if not trainer.is_global_zero:
        return folder
    metrics: dict[str, Any] = {
        "method": config.method.name,
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "train_seconds": round(time.perf_counter() - started, 1),
        "resumed": resume,
        "global_batch_size": global_batch,
        **_peak_memory(trainer.strategy.root_device),
    }
    if config.eval.knn:
        evaluated = method
        if "fsdp" in str(config.trainer.strategy).lower():
            # FSDP leaves the module sharded; the saved checkpoint is complete.
            evaluated = load_run(folder)[1]
        device = trainer.strategy.root_device
        knn = knn_evaluate(evaluated.to(device), config, device=device, splits=splits)
        evaluated.cpu()
        metrics["knn"] = knn
        print(
            f"kNN top-1: {knn['top1']:.2f}% (top-5 {knn['top5']:.2f}%; k={knn['k']}, "
            f"{knn['train_images']} train / {knn['test_images']} test images)",
            flush=True,
        )
    atomic_write(
        folder / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode()
    )
    print(f"wrote {folder / 'metrics.json'}", flush=True)
    return folder


def load_config_for_resume(
    folder: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> Config:
    """The config of a run folder for ``--resume``, with overrides applied.

    The run folder and name are taken from where the folder is now, so a moved run
    folder resumes in place.

    Raises:
        NothingToResumeError: ``folder`` is not a run folder.
    """
    path = Path(folder)
    if not (path / "config.yaml").is_file():
        raise NothingToResumeError(
            f"Nothing to resume in {str(path)!r}: it has no config.yaml (a run folder "
            "written by `lightly-simmim pretrain` holds config.yaml and "
            f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT})."
        )
    config = _load_config(path / "config.yaml", overrides)
    return replace(config, output_dir=str(path.parent), name=path.name)
