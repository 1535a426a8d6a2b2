"""Lightning callbacks of the pretraining loop, one small class each.

- :func:`checkpoint_callbacks`: Lightning's own ``ModelCheckpoint``, configured for
  ``last.ckpt`` plus one file per epoch, and ``last.ckpt`` refreshed every N steps.
- :class:`StopOnNonFiniteLoss`: stops the run at the first NaN / inf loss, naming the
  step and what to try.
- :class:`ReconstructionImages`: a PNG of original / masked / reconstructed images
  every few epochs and at the end.
- :class:`RunSummary`: one line at the start saying the global batch, the learning
  rate and the steps the run trains with.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch import Tensor
from torch.distributed.fsdp import FullyShardedDataParallel

from lightly_simmim.checkpoints import (
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    set_aside_diverged,
)
from lightly_simmim.data import ImageDataset
from lightly_simmim.methods import Method, PretrainMethod
from lightly_simmim.visualize import save_reconstruction_grid

__all__ = [
    "NonFiniteLossError",
    "ReconstructionImages",
    "RunSummary",
    "StopOnNonFiniteLoss",
    "checkpoint_callbacks",
    "full_parameters",
]


def checkpoint_callbacks(
    run_dir: Path, every_n_steps: int | None = None, keep_epochs: int | None = None
) -> list[ModelCheckpoint]:
    """Lightning ``ModelCheckpoint`` callbacks writing into ``run_dir/checkpoints``.

    One callback writes ``epoch=NNN.ckpt`` (0-based, every file kept) and refreshes
    ``last.ckpt`` at the end of every epoch; with ``every_n_steps`` a second one
    refreshes ``last.ckpt`` every N optimiser steps (no extra files), so a run killed
    mid-epoch loses at most N steps. Atomic writing comes from the trainer's
    :class:`~lightly_simmim.checkpoints.AtomicCheckpointIO` plugin.

    Args:
        run_dir: The run folder.
        every_n_steps: Refresh ``last.ckpt`` every this many steps; None = only at
            epoch ends.
        keep_epochs: Keep only the newest N ``epoch=NNN.ckpt`` files; None keeps
            all (a ViT-B checkpoint is about 1 GB: 800 of them would fill a disk).

    Raises:
        ValueError: On a step interval or a number of kept files below 1.

    Returns:
        The callbacks, for ``Trainer(callbacks=...)``.
    """
    folder = run_dir / CHECKPOINT_DIR
    last_name = Path(LAST_CHECKPOINT).stem
    # enable_version_counter=False: both callbacks own `last.ckpt`; with the counter
    # on, the second would write `last-v1.ckpt` on finding the first one's file.
    if keep_epochs is not None and keep_epochs < 1:
        raise ValueError(
            f"trainer.keep_epoch_checkpoints must be >= 1 or null, got {keep_epochs}."
        )
    # Lightning offers "epoch" as a monitor of its own: the top k by epoch are the
    # k newest files, and save_top_k=-1 keeps every one.
    per_epoch = ModelCheckpoint(
        dirpath=folder,
        filename="epoch={epoch:03d}",
        auto_insert_metric_name=False,
        monitor="epoch" if keep_epochs is not None else None,
        mode="max",
        save_top_k=-1 if keep_epochs is None else keep_epochs,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        save_last=True,
        enable_version_counter=False,
    )
    per_epoch.CHECKPOINT_NAME_LAST = last_name
    callbacks = [per_epoch]
    if every_n_steps is not None:
        if every_n_steps < 1:
            raise ValueError(
                f"trainer.checkpoint_every_n_steps must be >= 1 or null, got "
                f"{every_n_steps}."
            )
        per_steps = ModelCheckpoint(
            dirpath=folder,
            save_top_k=0,  # no step files: only `last.ckpt` is refreshed
            every_n_train_steps=every_n_steps,
            save_last=True,
            enable_version_counter=False,
        )
        per_steps.CHECKPOINT_NAME_LAST = last_name
        callbacks.append(per_steps)
    return callbacks


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run was stopped."""


class StopOnNonFiniteLoss(Callback):
    """Stops training once a batch's loss is NaN or infinite.

    Every step adds "is this loss finite?" to a flag on the loss's device; the flag
    is read (a host synchronisation) on the CPU every step, where reading costs
    nothing, and on accelerators every ``every_n_steps`` steps and at the end of
    every epoch, so the GPU is not stalled once per step. The check runs before the
    checkpoint callbacks (Lightning runs those last), and ``every_n_steps`` should
    divide the checkpoint interval, so no checkpoint is written after a non-finite
    loss was seen. A loss is computed before its step's update, though, so weights
    that one update blew up are saved before their loss shows it: on stopping, the
    checkpoints of the steps the flag covers are set aside and ``last.ckpt`` becomes
    the newest one before them (:func:`~lightly_simmim.checkpoints.set_aside_diverged`).
    With several processes the decision is reduced over all ranks, so every rank
    stops together instead of the others hanging in the next all-reduce.

    Args:
        every_n_steps: Read the flag every this many steps on accelerators.
        checkpoints: The run's checkpoints folder, where the diverged checkpoints
            are set aside; None leaves checkpoints alone.

    Raises:
        NonFiniteLossError: With the steps, epoch, loss and remedies in the message.
    """

    def __init__(self, every_n_steps: int = 1, checkpoints: Path | None = None) -> None:
        super().__init__()
        self.every_n_steps = max(1, every_n_steps)
        self.checkpoints = checkpoints
        self._bad: Tensor | None = None
        self._since = 0  # first step the flag covers

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        """Adds this batch's loss (``outputs["loss"]`` or ``outputs``) to the flag."""
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, Tensor):
            return
        bad = ~torch.isfinite(loss.detach()).all()
        self._bad = bad if self._bad is None else self._bad | bad
        step = trainer.global_step
        if loss.device.type == "cpu" or step % self.every_n_steps == 0:
            self._check(trainer, batch_idx)

    def on_train_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Reads the flag before the epoch's checkpoint is written."""
        self._check(trainer, None)

    def _check(self, trainer: pl.Trainer, batch_idx: int | None) -> None:
        flagged = self._bad is not None and bool(self._bad)
        self._bad = None
        since, self._since = self._since, trainer.global_step
        if not trainer.strategy.reduce_boolean_decision(flagged, all=False):
            return
        lr = (
            f"; learning rate {trainer.optimizers[0].param_groups[0]['lr']:.3g}"
            if trainer.optimizers
            else ""
        )
        steps = (
            f"at optimizer step {trainer.global_step}"
            if since >= trainer.global_step - 1
            else f"between optimizer steps {since} and {trainer.global_step}"
        )
        where = f"{steps} (epoch {trainer.current_epoch}{lr})"
        what = (
            "the loss is NaN or infinite"
            if flagged
            else "the loss of another process is NaN or infinite"
        )
        checkpoints = ""
        if self.checkpoints is not None and trainer.is_global_zero:
            # The weights of step `since` on gave the non-finite loss.
            checkpoints = set_aside_diverged(self.checkpoints, since)
        raise NonFiniteLossError(
            f"Training stopped: {what} {where}. Try a lower learning rate "
            "(--set optim.base_lr=...), full precision (--set trainer.precision=32), "
            "gradient clipping (--set optim.clip_grad=1.0) or a longer warmup "
            "(--set schedule.warmup_epochs=...), in a new run (--set name=...)."
            + checkpoints
        )


class ReconstructionImages(Callback):
    """Saves original / masked / reconstruction grids of a fixed batch of images.

    The batch is taken once, in ``setup``, from ``dataset`` (un-transformed images)
    through the method's ``eval_transform()``, so every PNG shows the same images.
    Methods whose ``reconstruct_batch`` returns None (BYOL) get no PNG.

    Files: ``<folder>/epoch_NNN.png`` (NNN = 0-based epoch, as in the checkpoint
    names) every ``every_n_epochs`` epochs, and ``<folder>/final.png`` at the end.
    The reconstruction runs on every rank, inside FSDP's ``summon_full_params`` when
    the strategy shards the module (it gathers the parameters, collectively: the
    callback's own forward is not the FSDP root's), and only global rank 0 writes.

    Args:
        dataset: Map-style dataset of ``(PIL image, label)``.
        folder: Where the PNGs go.
        every_n_epochs: 0 = only ``final.png``.
        mean: Per-channel normalisation mean, to undo it for display.
        std: Per-channel normalisation std.
        num_images: How many images (the first ones of ``dataset``).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        folder: Path,
        every_n_epochs: int,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        num_images: int = 8,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.folder = folder
        self.every_n_epochs = every_n_epochs
        self.mean = mean
        self.std = std
        self.num_images = num_images
        self.images: Tensor | None = None

    def setup(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str
    ) -> None:
        """Takes the fixed batch: the first images through ``eval_transform()``."""
        method = _method(pl_module)
        transform = method.eval_transform()
        count = min(self.num_images, len(self.dataset))  # type: ignore[arg-type]
        self.images = torch.stack([transform(self.dataset[i][0]) for i in range(count)])

    def on_train_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Writes ``epoch_NNN.png`` every ``every_n_epochs`` epochs."""
        epoch = trainer.current_epoch
        if self.every_n_epochs > 0 and (epoch + 1) % self.every_n_epochs == 0:
            self.save(trainer, pl_module, f"epoch_{epoch:03d}.png")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Writes ``final.png``."""
        self.save(trainer, pl_module, "final.png")

    @torch.no_grad()
    def save(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, name: str
    ) -> Path | None:
        """Reconstructs the fixed batch and writes ``folder/name`` on rank 0.

        Returns:
            The PNG written, or None (not rank 0, or no reconstruction).
        """
        if self.images is None:
            return None
        method = _method(pl_module)
        was_training = method.training
        method.eval()
        try:
            with full_parameters(trainer):
                result = method.reconstruct_batch(self.images.to(method.device))
        finally:
            pl_module.train(was_training)
        if result is None or not trainer.is_global_zero:
            return None
        images, mask, reconstruction = result
        return save_reconstruction_grid(
            self.folder / name, images, mask, reconstruction, self.mean, self.std
        )


def full_parameters(
    trainer: pl.Trainer,
) -> contextlib.AbstractContextManager[object]:
    """A context in which the module's parameters are whole on every rank.

    FSDP keeps each rank's shard of every parameter outside the wrapped root's own
    forward; a callback that runs the module itself enters FSDP's
    ``summon_full_params`` (on every rank: it is collective). Other strategies hold
    whole parameters: nothing to do.
    """
    root = trainer.strategy.model
    if isinstance(root, FullyShardedDataParallel):
        return FullyShardedDataParallel.summon_full_params(root, writeback=False)
    return contextlib.nullcontext()


def _method(module: pl.LightningModule) -> Method:
    """The LightningModule as a :class:`Method` (what these callbacks use of it).

    Raises:
        TypeError: If the module is not a method.
    """
    if not isinstance(module, Method):
        raise TypeError(
            f"{type(module).__name__} is not a pretraining method (see "
            "lightly_simmim.methods.Method)."
        )
    return module


class RunSummary(Callback):
    """Prints the run folder, global batch, learning rate and steps at the start.

    The numbers come from the method after ``configure_optimizers`` has read them
    from the Trainer, so the line says what the run really trains with. Only global
    rank 0 prints.

    Args:
        folder: The run folder.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def on_train_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Prints the summary line."""
        if not trainer.is_global_zero or not isinstance(pl_module, PretrainMethod):
            return
        settings = pl_module.optimizer_settings
        batch = pl_module.global_batch_size
        print(
            f"run folder: {self.folder}\nglobal batch {batch} = "
            f"{pl_module.batch_size_per_device} per device x {trainer.num_devices} "
            f"device(s) x {trainer.num_nodes} node(s) x "
            f"{trainer.accumulate_grad_batches} accumulated; lr = "
            f"{settings.base_lr:g} x {batch} / {settings.base_batch_size} = "
            f"{pl_module.learning_rate:.3g}; {pl_module.steps_per_epoch} steps per "
            f"epoch, {pl_module.total_steps} in all; precision {trainer.precision}",
            flush=True,
        )
