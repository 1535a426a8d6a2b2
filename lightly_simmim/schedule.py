"""Learning-rate schedules on timm's schedulers, stepped per optimiser update.

One module serves pretraining, fine-tuning and the linear probe: linear warmup from
the warmup rate, then a cosine to the minimum rate over all steps (the warmup inside
it, as timm's scheduler and the official SimMIM code run it), multistep decays by
``gamma``, or a constant rate, built from timm's ``CosineLRScheduler`` /
``MultiStepLRScheduler`` with ``t_in_epochs=False``. Like the peak rate, the warmup
and minimum rates are given per base batch size and scaled with the global batch
(``scale``), as the official code scales all three. timm's schedulers are also what
applies layer-wise LR decay: timm's optimiser factory only stores an ``lr_scale`` in
each parameter group, and ``Scheduler.update_groups`` multiplies the rate by it.

The schedule is a function of the step and its settings, nothing else:
:class:`PerStepScheduler` keeps no state of its own in a checkpoint, so a resumed run
recomputes the rate from its config and its step (a changed schedule applies from the
resumed step on). A LightningModule drives it from two hooks::

    def lr_scheduler_step(self, scheduler, metric):
        scheduler.step_update(self.global_step)   # after every optimiser step

    def on_train_start(self):                      # the rate of the first step
        for config in self.trainer.lr_scheduler_configs:
            config.scheduler.step_update(self.global_step)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler
from timm.scheduler.scheduler import Scheduler

from lightly_simmim.settings import Checked, setting

__all__ = ["PerStepScheduler", "ScheduleSettings", "create_scheduler"]

ScheduleName = Literal["cosine", "multistep", "constant"]


@dataclass
class ScheduleSettings(Checked):
    """Per-step learning-rate schedule with linear warmup.

    Attributes:
        name: ``"cosine"`` (to the minimum rate), ``"multistep"`` (times ``gamma``
            at each milestone) or ``"constant"``.
        warmup_epochs: Epochs of linear warmup from the warmup rate (fractions work).
        base_warmup_lr: Learning rate at step 0, per base batch size: scaled with
            the global batch like ``base_lr``.
        base_min_lr: Final learning rate of the cosine, per base batch size.
        milestones: Epochs at which multistep multiplies the rate by ``gamma``.
        gamma: The multistep factor.
    """

    name: ScheduleName = "cosine"
    warmup_epochs: float = setting(1.0, ge=0)
    base_warmup_lr: float = setting(4e-6, ge=0)
    base_min_lr: float = setting(4e-5, ge=0)
    milestones: list[int] = setting(default_factory=list, ge=0)
    gamma: float = setting(0.1, gt=0)


class PerStepScheduler:
    """A timm scheduler stepped per optimiser update, with no state of its own.

    ``state_dict`` holds nothing the schedule depends on and ``load_state_dict``
    restores nothing: the rate at a step is recomputed from the settings, so a resumed
    run follows the schedule its (possibly changed) config describes.

    Args:
        scheduler: A timm scheduler with ``t_in_epochs=False``.
        total_steps: Optimiser steps of the whole run.

    Attributes:
        scheduler: The timm scheduler.
        total_steps: Optimiser steps of the whole run.
        optimizer: The optimiser whose groups it sets.
    """

    def __init__(self, scheduler: Scheduler, total_steps: int) -> None:
        self.scheduler = scheduler
        self.total_steps = total_steps
        self.optimizer: torch.optim.Optimizer = scheduler.optimizer

    def step_update(self, step: int) -> None:
        """Sets every parameter group's rate for optimiser step ``step`` (0-based),
        times the group's ``lr_scale`` where timm's layer decay put one."""
        self.scheduler.step_update(step)

    def state_dict(self) -> dict[str, int]:
        """Only informative: the schedule is recomputed from settings and step."""
        return {"total_steps": self.total_steps}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        """Restores nothing (see the class docstring)."""


def create_scheduler(
    optimizer: torch.optim.Optimizer,
    settings: ScheduleSettings,
    *,
    steps_per_epoch: int,
    total_steps: int,
    scale: float = 1.0,
    warmup_prefix: bool = False,
) -> PerStepScheduler:
    """The per-step schedule of ``settings`` over ``total_steps`` optimiser steps.

    The optimiser's current ``lr`` is the peak rate. Epoch counts become steps as
    ``int(epochs * steps_per_epoch)``.

    Args:
        optimizer: The optimiser; its groups' ``lr`` is the peak rate (before
            ``lr_scale``).
        settings: The schedule.
        steps_per_epoch: Optimiser steps per epoch (after gradient accumulation).
        total_steps: Steps of the whole run (the end of the cosine).
        scale: Factor of ``base_warmup_lr`` and ``base_min_lr``: the global batch /
            the base batch size, the same scaling as the peak rate's.
        warmup_prefix: For the cosine: warmup first, then the cosine over the
            remaining steps; False runs the cosine over all steps with the warmup
            inside it (timm's default, and the official SimMIM code's).

    Returns:
        The scheduler; it has set the rate of step 0 already.

    Raises:
        ValueError: On negative step counts.
    """
    if steps_per_epoch < 1 or total_steps < 0:
        raise ValueError(
            f"Need steps_per_epoch >= 1 and total_steps >= 0, got {steps_per_epoch} "
            f"and {total_steps}."
        )
    warmup = int(settings.warmup_epochs * steps_per_epoch)
    warmup_lr = settings.base_warmup_lr * scale
    scheduler: Scheduler
    if settings.name == "cosine":
        # max(1, ...): timm needs a positive length; a run no longer than its
        # warmup then ends at min_lr right away.
        length = total_steps - warmup if warmup_prefix else total_steps
        scheduler = CosineLRScheduler(
            optimizer,
            t_initial=max(1, length),
            lr_min=settings.base_min_lr * scale,
            warmup_t=warmup,
            warmup_lr_init=warmup_lr,
            warmup_prefix=warmup_prefix,
            t_in_epochs=False,
        )
    else:
        milestones = [int(m * steps_per_epoch) for m in settings.milestones]
        if settings.name == "constant":
            milestones = []
        scheduler = MultiStepLRScheduler(
            optimizer,
            decay_t=_timm_milestones(milestones),
            decay_rate=settings.gamma,
            warmup_t=warmup,
            warmup_lr_init=warmup_lr,
            warmup_prefix=False,
            t_in_epochs=False,
        )
    return PerStepScheduler(scheduler, total_steps)


def _timm_milestones(steps: Sequence[int]) -> list[int]:
    """Milestone steps in timm's convention.

    timm's multistep compares milestones with ``t + 1`` (a decay at milestone ``m``
    applies from step ``m - 1``); the official SimMIM code and torch's MultiStepLR
    decay from step ``m`` itself, so the steps move by one.
    """
    return sorted(int(step) + 1 for step in steps)
