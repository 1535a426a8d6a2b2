"""The optimisation every pretraining method shares, sized from the Trainer.

:class:`OptimizedModule` is the LightningModule layer under
:class:`~lightly_simmim.methods.PretrainMethod`: the timm optimiser
(:func:`lightly_simmim.optim.create_optimizer`), the learning rate ``base_lr x global
batch / base_batch_size`` with the global batch read from the Trainer (devices, nodes,
accumulation), and the per-step schedule of :mod:`lightly_simmim.schedule` whose length
also comes from the Trainer. A method therefore takes only plain settings, and the same
method object trains on one CPU or many GPUs with the right rate.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torch import nn

from lightly_simmim.optim import (
    OptimizerSettings,
    clip_in_hook,
    create_optimizer,
    fused_allowed,
    parameter_dims,
    scaled_lr,
    timm_no_weight_decay,
)
from lightly_simmim.schedule import PerStepScheduler, ScheduleSettings, create_scheduler

__all__ = ["OptimizedModule", "run_steps", "timm_no_weight_decay"]


def run_steps(trainer: pl.Trainer) -> tuple[int, int]:
    """(optimiser steps per epoch, steps of all ``max_epochs``) from the Trainer.

    ``estimated_stepping_batches`` makes Lightning size the data; with ``max_steps``
    it is capped there, while the schedule keeps the length of all the epochs (a run
    stopped early by ``max_steps`` is a prefix of the full run).
    """
    estimated = trainer.estimated_stepping_batches
    batches = trainer.num_training_batches
    if not math.isfinite(batches):
        return 1, max(1, int(estimated))  # iterable data: only the steps are known
    per_epoch = max(1, math.ceil(int(batches) / trainer.accumulate_grad_batches))
    return per_epoch, per_epoch * max(1, trainer.max_epochs or 1)


class OptimizedModule(pl.LightningModule):
    """A LightningModule with the shared optimiser and per-step schedule.

    Args:
        batch_size_per_device: Images per device and step; with the Trainer's
            devices, nodes and accumulation it gives the global batch that scales
            the learning rate.
        optimizer: Optimiser settings (defaults: AdamW, SimMIM's).
        schedule: Learning-rate schedule, applied per optimiser step.

    Attributes:
        global_batch_size: Images per optimiser step, set in
            :meth:`configure_optimizers` (None before).
        learning_rate: The peak learning rate, set there too.
        steps_per_epoch: Optimiser steps per epoch, set there too.
        total_steps: Optimiser steps of the run (the schedule's length).
        parameter_dims: Each parameter's dimensions, recorded in :meth:`setup`
            (before a strategy wraps the module), or None before.
    """

    def __init__(
        self,
        batch_size_per_device: int,
        optimizer: OptimizerSettings | None = None,
        schedule: ScheduleSettings | None = None,
    ) -> None:
        super().__init__()
        if batch_size_per_device < 1:
            raise ValueError(
                f"batch_size_per_device must be >= 1, got {batch_size_per_device}."
            )
        self.batch_size_per_device = batch_size_per_device
        self.optimizer_settings = optimizer or OptimizerSettings()
        self.schedule_settings = schedule or ScheduleSettings()
        self.global_batch_size: int | None = None
        self.learning_rate: float | None = None
        self.steps_per_epoch = 1
        self.total_steps = 1
        self.parameter_dims: dict[str, int] | None = None

    def setup(self, stage: str) -> None:
        """Records :attr:`parameter_dims`: Lightning calls this before the strategy
        wraps the module (FSDP flattens the parameters) and builds the optimiser."""
        super().setup(stage)
        if self.parameter_dims is None:
            self.parameter_dims = parameter_dims(self)

    def clipped_parameters(self) -> list[nn.Parameter]:
        """The parameters whose gradient norm ``optim.clip_grad`` clips (all here)."""
        return list(self.parameters())

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clips the gradients of :meth:`clipped_parameters` (Lightning's hook;
        see :func:`lightly_simmim.optim.clip_in_hook`)."""
        clip_in_hook(
            self,
            optimizer,
            self.clipped_parameters(),
            gradient_clip_val,
            gradient_clip_algorithm,
        )

    def no_weight_decay(self) -> set[str]:
        """Full names of parameters without weight decay (timm's factory reads this;
        it also leaves out 1-D parameters and biases itself)."""
        return set()

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """timm optimiser and the per-step schedule, sized from the Trainer.

        The global batch is ``batch_size_per_device`` x the Trainer's world size
        (devices x nodes) x its gradient accumulation; the schedule's length is the
        Trainer's epochs x optimiser steps per epoch.

        Returns:
            Lightning's optimiser + scheduler dict, the scheduler stepped every step.
        """
        trainer = self.trainer
        self.steps_per_epoch, self.total_steps = run_steps(trainer)
        settings = self.optimizer_settings
        self.global_batch_size = (
            self.batch_size_per_device
            * trainer.world_size
            * trainer.accumulate_grad_batches
        )
        self.learning_rate = scaled_lr(
            settings.base_lr, self.global_batch_size, settings.base_batch_size
        )
        optimizer = create_optimizer(
            self,
            optimizer=settings.optimizer,
            lr=self.learning_rate,
            weight_decay=settings.weight_decay,
            betas=settings.betas,
            eps=settings.eps,
            momentum=settings.momentum,
            fused=fused_allowed(str(trainer.precision), settings.clip_grad),
            dims=self.parameter_dims,
        )
        # As the official code: warmup and minimum rates scale like the peak, and
        # the cosine runs over all steps with the warmup inside it.
        scheduler = create_scheduler(
            optimizer,
            self.schedule_settings,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            scale=self.global_batch_size / settings.base_batch_size,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},  # type: ignore[typeddict-item]
        }

    def lr_scheduler_step(self, scheduler: object, metric: object) -> None:
        """Sets the rate of the next step (Lightning calls this after each update)."""
        if isinstance(scheduler, PerStepScheduler):
            scheduler.step_update(self.global_step)
        else:  # a torch scheduler of a subclass's own configure_optimizers
            super().lr_scheduler_step(scheduler, metric)  # type: ignore[arg-type]

    def on_train_start(self) -> None:
        """Sets the rate of the (resumed) first step: a function of the step."""
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, PerStepScheduler):
                config.scheduler.step_update(self.global_step)
