"""The Lightning ``Trainer`` a run config asks for: devices, strategy, precision.

Pretraining and the evaluations that train (fine-tune) build their Trainer here, so
they run on the same devices, nodes, strategy and precision. ``strategy: ddp`` means
DDP that tolerates parameters without gradients (see :func:`lightning_strategy`);
other strategy strings (``fsdp``, ``ddp_spawn``, ...) go to Lightning unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.callbacks import Callback, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.plugins import CheckpointIO
from pytorch_lightning.strategies import DDPStrategy, Strategy

from lightly_simmim.config import ConfigError, TrainerConfig
from lightly_simmim.devices import resolve_precision

__all__ = [
    "build_trainer",
    "csv_and_tensorboard",
    "device_type",
    "lightning_strategy",
    "on_cpu",
    "precision_of",
]


def device_type(trainer: TrainerConfig) -> str:
    """``"cpu"``, ``"cuda"`` or ``"mps"``: where ``auto`` / the accelerator trains."""
    accelerator = trainer.accelerator
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator != "auto":
        return accelerator
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def precision_of(trainer: TrainerConfig) -> str:
    """The Lightning precision of a trainer section (``auto`` resolved, see
    :mod:`lightly_simmim.devices`)."""
    return resolve_precision(trainer.precision, device_type(trainer))


def on_cpu(trainer: TrainerConfig) -> bool:
    """Whether the run trains on the CPU (``auto`` without CUDA or MPS)."""
    if trainer.accelerator == "cpu":
        return True
    if trainer.accelerator != "auto":
        return False
    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def lightning_strategy(name: str, precision: str | None = None) -> str | Strategy:
    """Lightning's strategy for a config string and the run's precision.

    - ``"ddp"`` tolerates unused parameters. Every method has parameters that get no
      gradient in some steps (timm's ``fc_norm`` and other pooling layers are used
      only for the no-grad features of the online classifier and evaluation;
      BYOL's target network never), which plain DDP rejects. Finding them costs one
      walk over the autograd graph per step; a method known to use all its
      parameters can skip it with ``ddp_find_unused_parameters_false``.
    - ``"fsdp"`` with a ``*-mixed`` precision keeps parameters, gradient reduction
      and buffers in fp32 and leaves the low precision to autocast, as on one device
      and under DDP. Lightning's default for the plain string casts the parameters,
      the buffers (BatchNorm statistics) and the root's inputs to bf16 / fp16, so the
      loss targets (SimMIM's pixels, MAE's normalised patches) would be rounded.

    Every other string goes to Lightning as is.
    """
    if name == "ddp":
        return DDPStrategy(find_unused_parameters=True)
    if name == "fsdp" and precision is not None and precision.endswith("-mixed"):
        from pytorch_lightning.strategies import FSDPStrategy
        from torch.distributed.fsdp import MixedPrecision

        fp32 = torch.float32
        return FSDPStrategy(
            mixed_precision=MixedPrecision(
                param_dtype=fp32, reduce_dtype=fp32, buffer_dtype=fp32
            )
        )
    return name


def csv_and_tensorboard(folder: Path, flush_every: int) -> list[Logger]:
    """A CSV logger in ``folder/csv``, and TensorBoard in ``folder/tensorboard`` if
    it is installed."""
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


def build_trainer(
    config: TrainerConfig,
    *,
    max_epochs: int,
    callbacks: list[Callback],
    default_root_dir: Path | None = None,
    max_steps: int | None = None,
    gradient_clip_val: float | None = None,
    accumulate_grad_batches: int = 1,
    logger: list[Logger] | bool = False,
    checkpoint_io: CheckpointIO | None = None,
    enable_checkpointing: bool = True,
    model_summary: bool = True,
) -> pl.Trainer:
    """A Trainer on the devices, nodes, strategy and precision of ``config``.

    Args:
        config: The run's ``trainer`` section (devices, precision, progress bar).
        max_epochs: Epochs to train.
        callbacks: Lightning callbacks (a progress bar is added if configured).
        default_root_dir: Lightning's folder for anything not given a path.
        max_steps: Stop after this many optimiser steps; None = all epochs.
        gradient_clip_val: Norm clipping by Lightning; None = none (methods that
            clip their own parameters only do it themselves).
        accumulate_grad_batches: Batches per optimiser step.
        logger: Loggers, or False.
        checkpoint_io: Lightning's checkpoint plugin (atomic writes).
        enable_checkpointing: False for trainings that keep no checkpoint.
        model_summary: Print Lightning's table of modules at the start.

    Returns:
        The Trainer.

    Raises:
        ConfigError: If Lightning rejects the devices / accelerator / strategy /
            precision combination (the message names the settings).
    """
    precision = precision_of(config)
    progress: list[Callback] = []
    if config.progress_bar:
        # Outside a terminal (logs, CI) every refresh is a new line: refresh less.
        rate = 1 if sys.stdout.isatty() else max(1, config.log_every_n_steps)
        progress.append(TQDMProgressBar(refresh_rate=rate))
    try:
        return pl.Trainer(
            accelerator=config.accelerator,
            devices=config.devices,
            num_nodes=config.num_nodes,
            strategy=lightning_strategy(config.strategy, precision),
            precision=precision,  # type: ignore[arg-type]
            max_epochs=max_epochs,
            max_steps=-1 if max_steps is None else max_steps,
            gradient_clip_val=gradient_clip_val,
            accumulate_grad_batches=accumulate_grad_batches,
            log_every_n_steps=config.log_every_n_steps,
            # Deterministic kernels cost nothing on CPU; on GPUs they can be slow.
            deterministic=True if on_cpu(config) else None,
            callbacks=[*callbacks, *progress],
            logger=logger,
            enable_progress_bar=config.progress_bar,
            enable_checkpointing=enable_checkpointing,
            enable_model_summary=model_summary,
            plugins=[] if checkpoint_io is None else [checkpoint_io],
            default_root_dir=default_root_dir,
            # Validation (if any) only reports; no sanity run needed.
            num_sanity_val_steps=0,
        )
    # ImportError: an accelerator or strategy whose package is not installed
    # (tpu needs torch_xla, deepspeed its own package); Lightning's message says
    # what to install.
    except (MisconfigurationException, TypeError, ValueError, ImportError) as error:
        raise ConfigError(
            f"Lightning rejects the trainer settings (trainer.accelerator="
            f"{config.accelerator!r}, devices={config.devices!r}, num_nodes="
            f"{config.num_nodes}, strategy={config.strategy!r}, precision="
            f"{config.precision!r}): {error}"
        ) from error
