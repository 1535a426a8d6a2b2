"""The pretraining loop: a config in, a run folder out, on Lightning's ``Trainer``.

:func:`pretrain` wires what the config names (datasets and the method from the entry
points, :mod:`lightly_simmim.build`) into one Lightning ``Trainer`` shared by every
method (:mod:`lightly_simmim.trainer`), then evaluates the pooled features with kNN
(:mod:`lightly_simmim.evaluation.protocol`). The run folder is described in
:mod:`lightly_simmim.runs`.

The learning rate follows the global batch, ``batch_size x devices x num_nodes x
accumulate_grad_batches``, which the method reads from the ``Trainer`` (so ``devices:
auto`` or ``-1`` count the devices actually used), as it reads the schedule's length.
Every epoch file is kept unless ``trainer.keep_epoch_checkpoints`` says otherwise:
budget disk space for long runs (a ViT-B checkpoint with AdamW state is about 1 GB);
``last.ckpt`` is all ``--resume`` needs.

A run killed mid-epoch resumes from its last ``last.ckpt`` with the step counter and
optimiser restored and the schedule recomputed from the config at that step; the rest
of that epoch draws a fresh shuffle of the data (Lightning's loaders do not record
their position), and the run still ends at the same final epoch and global step.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, TypedDict

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader

from lightly_simmim.atomic import atomic_write
from lightly_simmim.build import Splits, build_method, dataset_splits, method_settings
from lightly_simmim.callbacks import (
    ReconstructionImages,
    RunSummary,
    StopOnNonFiniteLoss,
    checkpoint_callbacks,
)
from lightly_simmim.checkpoints import (
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    AtomicCheckpointIO,
    check_weights_fit,
    remove_stale_temporaries,
)
from lightly_simmim.config import Config, ConfigError, dump_config, load_config
from lightly_simmim.data import TransformedDataset
from lightly_simmim.data.memory import in_memory, stack_batch
from lightly_simmim.evaluation.protocol import knn_evaluate
from lightly_simmim.methods import PretrainMethod
from lightly_simmim.proc_status import status_kib
from lightly_simmim.runs import (
    announce_resume,
    checked_run_folder,
    load_initial_weights,
    load_run,
    resume_changes,
    resume_point,
    run_dir,
)
from lightly_simmim.trainer import build_trainer, csv_and_tensorboard, on_cpu

__all__ = ["PeakMemory", "PretrainMetrics", "pretrain", "train_loader"]


class PeakMemory(TypedDict):
    """Peak memory of a training process (see ``_peak_memory``)."""

    peak_memory_mb: float | None
    peak_memory_kind: Literal["cuda_allocated", "cpu_max_rss"] | None


class _RunMetrics(PeakMemory):
    method: str
    epoch: int
    global_step: int
    train_seconds: float
    resumed: bool
    global_batch_size: int | None


class PretrainMetrics(_RunMetrics, total=False):
    """``metrics.json`` of a run; ``knn`` only where ``eval.knn`` is on."""

    knn: Mapping[str, object]


def _callbacks(
    config: Config, folder: Path, method: PretrainMethod, splits: Splits
) -> list[Callback]:
    images = ReconstructionImages(
        splits["test"],
        folder / "reconstructions",
        config.trainer.reconstruction_every_n_epochs,
        method.mean,
        method.std,
    )
    trainer = config.trainer
    # Read the NaN flag at every checkpoint step (and every log step) on GPUs.
    check_every = math.gcd(
        trainer.log_every_n_steps, trainer.checkpoint_every_n_steps or 0
    )
    return [
        StopOnNonFiniteLoss(check_every, folder / CHECKPOINT_DIR),
        RunSummary(folder),
        images,
        *checkpoint_callbacks(
            folder,
            config.trainer.checkpoint_every_n_steps,
            config.trainer.keep_epoch_checkpoints,
        ),
    ]


def train_loader(
    config: Config, method: PretrainMethod, splits: Splits
) -> DataLoader[object]:
    """The loader the loop trains on: in-memory batches augmented on the device where
    the data and the method allow it (:mod:`lightly_simmim.data.memory`), else
    per-image transforms in data loader workers.

    Args:
        config: The run config (``data`` section).
        method: The method (its ``batch_augmentation`` / ``default_transform``).
        splits: The run's datasets (``splits["train"]`` is used).

    Returns:
        The shuffled loader of full batches.
    """
    data = config.data
    memory = None
    if data.in_memory and method.batch_augmentation() is not None:
        memory = in_memory(splits["train"])
    if memory is not None:
        # One uint8 tensor, a batch per index operation; the method crops, flips
        # and normalises the batch on the training device (on_after_batch_transfer).
        return DataLoader(
            memory,
            batch_size=data.batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=stack_batch,
            pin_memory=not on_cpu(config.trainer),
        )
    workers = data.num_workers
    return DataLoader(
        TransformedDataset(splits["train"], method.default_transform()),
        batch_size=data.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        pin_memory=not on_cpu(config.trainer),
    )


def _loaders(
    config: Config, method: PretrainMethod, splits: Splits
) -> tuple[DataLoader[object], DataLoader[object] | None]:
    """The training loader, and a validation loader for methods that validate."""
    data = config.data
    val_loader = None
    if is_overridden("validation_step", method) and (
        config.eval.dataset in (None, data.dataset)
    ):
        # A method that validates (say, scores an online classifier) gets the test
        # split through eval_transform() every epoch: a cheap progress signal in
        # the logs between the kNN evaluations.
        val_loader = DataLoader(
            TransformedDataset(splits["test"], method.eval_transform()),
            batch_size=data.batch_size,
            num_workers=data.num_workers,
            persistent_workers=data.num_workers > 0,
        )
    return train_loader(config, method, splits), val_loader


def _check_one_batch(config: Config, splits: Splits, world_size: int) -> None:
    """Raises ConfigError unless every process gets one full batch per epoch."""
    images = len(splits["train"])  # type: ignore[arg-type]
    # Each rank gets ceil(images / world) of them (the distributed sampler pads).
    if -(-images // world_size) < config.data.batch_size:
        raise ConfigError(
            f"{images} training images make no full batch of {config.data.batch_size} "
            f"on each of {world_size} process(es); lower data.batch_size or raise "
            "data.limit_train."
        )


def _fit(
    trainer: pl.Trainer,
    method: PretrainMethod,
    loaders: tuple[DataLoader[object], DataLoader[object] | None],
    config: Config,
    checkpoint: Path | None,
) -> None:
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
        try:
            trainer.fit(
                model,
                train_dataloaders=loaders[0],
                val_dataloaders=loaders[1],
                ckpt_path=None if checkpoint is None else str(checkpoint),
                weights_only=True,
            )
        except SystemExit:
            # Lightning turns Ctrl+C into sys.exit(1) after a graceful shutdown,
            # saying nothing of the run; say where it can continue from.
            if trainer.interrupted and trainer.is_global_zero:
                print(_interrupted_hint(run_dir(config)), file=sys.stderr, flush=True)
            raise


def _interrupted_hint(folder: Path) -> str:
    """What an interrupted pretraining leaves, and how to continue it."""
    if (folder / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file():
        return (
            f"lightly-simmim pretrain: interrupted; {folder} keeps its last "
            f"checkpoint: continue with `lightly-simmim pretrain --resume {folder}`."
        )
    return (
        f"lightly-simmim pretrain: interrupted before the first checkpoint of "
        f"{folder}; start it again (trainer.checkpoint_every_n_steps saves within "
        "an epoch)."
    )


def _peak_memory(device: torch.device) -> PeakMemory:
    """Peak memory of this process's training, for ``metrics.json``.

    On CUDA the most memory torch allocated on the device (its caching allocator
    holds a little more); elsewhere the peak resident set size of this process
    (data loader workers, separate processes, not counted), which is a lifetime
    maximum: run one training per process to compare methods (the benchmark does).
    ``peak_memory_mb`` is None where neither can be read.

    On Linux the peak is ``VmHWM``, the high-water mark of this process's own address
    space. ``ru_maxrss`` is no use there: it survives ``exec``, so a child started by
    a big parent (the benchmark, after its in-process fine-tunes) reports at least
    the parent's peak. ``ru_maxrss`` remains the fallback elsewhere (macOS).
    """
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        return {"peak_memory_mb": round(peak, 1), "peak_memory_kind": "cuda_allocated"}
    hwm = status_kib("VmHWM")
    if hwm is not None:
        peak = hwm / 2**10
        return {"peak_memory_mb": round(peak, 1), "peak_memory_kind": "cpu_max_rss"}
    try:
        import resource
    except ImportError:  # Windows
        return {"peak_memory_mb": None, "peak_memory_kind": None}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    peak = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    return {"peak_memory_mb": round(peak, 1), "peak_memory_kind": "cpu_max_rss"}


def _final_knn(
    trainer: pl.Trainer, method: PretrainMethod, config: Config, splits: Splits
) -> Mapping[str, object]:
    evaluated = method
    if "fsdp" in str(config.trainer.strategy).lower():
        # FSDP leaves the module sharded; the saved checkpoint is complete.
        evaluated = load_run(run_dir(config))[1]
    device = trainer.strategy.root_device
    knn = knn_evaluate(evaluated.to(device), config, device=device, splits=splits)
    evaluated.cpu()
    print(
        f"kNN top-1: {knn['top1']:.2f}% (top-5 {knn['top5']:.2f}%; k={knn['k']}, "
        f"{knn['train_images']} train / {knn['test_images']} test images)",
        flush=True,
    )
    return knn


def pretrain(
    config: Config,
    resume: bool = False,
    checkpoint: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Pretrains ``config.method`` and evaluates it with kNN at the end.

    On resume the run folder's ``config.yaml`` is the source of truth: pass the
    config read from it (the CLI's ``--resume RUN_DIR`` does), so the run continues
    to the same final epoch with the same schedule. ``config.yaml`` is rewritten
    with what was passed, overrides included.

    With ``strategy: ddp`` Lightning starts the other ranks by running the same
    command again; everything here that writes files does so on global rank 0 only.

    A resume first checks, before it writes anything, that the config changes only
    settings in :data:`lightly_simmim.runs.RESUMABLE` (and says which it changes,
    applied from the resumed step on) and that the checkpoint is one of this run's
    architecture.

    Args:
        config: The resolved run config.
        resume: Continue from ``<run>/checkpoints/last.ckpt`` (optimiser, loop and
            step counters included) instead of starting fresh.
        checkpoint: With ``resume``: continue from this checkpoint of the run
            instead (an intact ``epoch=NNN.ckpt`` when ``last.ckpt`` is broken).
        callbacks: More Lightning callbacks for the Trainer (a timer, a logger).

    Returns:
        The run folder.

    Raises:
        NothingToResumeError: ``resume`` without a checkpoint in the run folder.
        FileExistsError: Not ``resume``, but the run folder already has a checkpoint.
        CheckpointError: The checkpoint is corrupt or of another architecture.
        NonFiniteLossError: The loss became NaN or infinite.
        ConfigError, DatasetNotFoundError, CorruptImageError: Bad settings or data.
    """
    started = time.perf_counter()
    given = None if checkpoint is None else Path(checkpoint)
    folder, last = checked_run_folder(config, resume, given)
    changes: list[tuple[str, object, object]] = []
    where: str = ""
    weights: dict[str, torch.Tensor] = {}
    if resume:  # refused changes and checkpoints fail here, before anything else
        changes = resume_changes(load_config(folder / "config.yaml"), config)
        where, weights = resume_point(last, folder, config)
    method_settings(config)  # an unknown method or option fails here, at once
    pl.seed_everything(config.seed, workers=True, verbose=False)
    splits = dataset_splits(config)
    method = build_method(config)
    if config.trainer.activation_checkpointing:
        method.set_grad_checkpointing(True)
    if config.init_from is not None and not resume:
        load_initial_weights(method, config.init_from)
    if resume:  # a checkpoint of another architecture copied in
        check_weights_fit(
            weights, method, path=last, described_by=repr(str(folder / "config.yaml"))
        )
    trainer = build_trainer(
        config.trainer,
        max_epochs=config.trainer.epochs,
        max_steps=config.trainer.max_steps,
        callbacks=[*_callbacks(config, folder, method, splits), *callbacks],
        default_root_dir=folder,
        gradient_clip_val=config.optim.clip_grad,
        accumulate_grad_batches=config.optim.accumulate_grad_batches,
        logger=csv_and_tensorboard(folder / "logs", config.trainer.log_every_n_steps),
        checkpoint_io=AtomicCheckpointIO(),
    )
    _check_one_batch(config, splits, trainer.world_size)
    loaders = _loaders(config, method, splits)
    if trainer.is_global_zero:
        if resume:
            remove_stale_temporaries(folder / CHECKPOINT_DIR)
            announce_resume(folder, last, where, changes)
        dump_config(config, folder / "config.yaml")
    _fit(trainer, method, loaders, config, last if resume else None)
    if not trainer.is_global_zero:
        return folder
    peak = _peak_memory(trainer.strategy.root_device)
    metrics = PretrainMetrics(
        method=config.method.name,
        epoch=trainer.current_epoch,
        global_step=trainer.global_step,
        train_seconds=round(time.perf_counter() - started, 1),
        resumed=resume,
        global_batch_size=method.global_batch_size,
        peak_memory_mb=peak["peak_memory_mb"],
        peak_memory_kind=peak["peak_memory_kind"],
    )
    if config.eval.knn:
        metrics["knn"] = _final_knn(trainer, method, config, splits)
    atomic_write(
        folder / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode()
    )
    print(f"wrote {folder / 'metrics.json'}", flush=True)
    return folder
