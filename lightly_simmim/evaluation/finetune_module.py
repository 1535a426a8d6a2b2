"""The LightningModule of a fine-tune: optimiser, schedule, mixing, loss, metrics."""

from __future__ import annotations

from typing import Any, TypedDict

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import Tensor, nn
from torchmetrics import SumMetric

from lightly_simmim.evaluation.classifier import resolve_layer_decay
from lightly_simmim.evaluation.optimizer import finetune_optimizer
from lightly_simmim.evaluation.recipes import LR_REFERENCE_BATCH, FinetuneRecipe
from lightly_simmim.optim import (
    clip_in_hook,
    fused_allowed,
    parameter_dims,
    scaled_lr,
)
from lightly_simmim.schedule import PerStepScheduler, ScheduleSettings, create_scheduler

__all__ = ["EpochRecord", "FinetuneModule", "build_mixup"]


class EpochRecord(TypedDict):
    """One epoch of a fine-tune.

    Attributes:
        epoch: 0-based epoch index.
        train_loss: Mean training loss of the epoch.
        lr: Learning rate of the head (the undecayed group) in the epoch's last step.
        top1: Validation top-1 accuracy (percent) after the epoch.
        top5: Validation top-5 accuracy (percent; top-``min(5, classes)``).
    """

    epoch: int
    train_loss: float
    lr: float
    top1: float
    top5: float


def build_mixup(recipe: FinetuneRecipe, num_classes: int) -> Mixup | None:
    """timm's ``Mixup`` for the recipe, with its label smoothing; None without mixing.

    Args:
        recipe: The ``mixup_*`` / ``cutmix_alpha`` and ``label_smoothing`` settings.
        num_classes: Classes of the one-hot targets.

    Returns:
        A ``Mixup`` giving ``(mixed images, soft targets (B, num_classes))``, or None
        if the recipe does not mix.
    """
    if not recipe.mixes:
        return None
    return Mixup(  # type: ignore[no-untyped-call]
        mixup_alpha=recipe.mixup_alpha,
        cutmix_alpha=recipe.cutmix_alpha,
        prob=recipe.mixup_prob,
        switch_prob=recipe.mixup_switch_prob,
        mode=recipe.mixup_mode,
        label_smoothing=recipe.label_smoothing,
        num_classes=num_classes,
    )


class FinetuneModule(pl.LightningModule):
    """Lightning module of :func:`~lightly_simmim.evaluation.finetune`.

    AdamW with layer-wise LR decay
    (:func:`~lightly_simmim.evaluation.optimizer.finetune_optimizer`) and warmup +
    cosine over all steps (:mod:`lightly_simmim.schedule`), both sized from the
    Trainer: the learning rates are ``base_* x global batch / 512``, with the global
    batch over every device and node of the run. Training batches are mixed with
    timm's ``Mixup`` (label smoothing folded into its soft targets) and scored by
    ``SoftTargetCrossEntropy``; without mixing, by a label-smoothing cross-entropy
    (the official choice of loss). Validation top-1 / top-5 hits are counted with
    torchmetrics (summed over devices) and kept, with the epoch's mean training loss
    and learning rate, in :attr:`history`.

    Args:
        model: A timm classifier (see :func:`timm_classifier`).
        num_classes: Number of classes (>= 2).
        recipe: Optimisation, loss and mixing settings.

    Attributes:
        history: Epoch index -> :class:`EpochRecord` fields seen so far.
        layer_decay: The resolved layer decay.
        mixup: The recipe's timm ``Mixup``, or None.
        global_batch_size: Images per step over all devices (set when training).
    """

    def __init__(
        self, model: nn.Module, num_classes: int, recipe: FinetuneRecipe
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
        self.model = model
        # Read now: a strategy may shard (flatten) the parameters before the
        # optimiser is built (see lightly_simmim.optim.parameter_dims).
        self.parameter_dims = parameter_dims(model)
        self.recipe = recipe
        self.mixup = build_mixup(recipe, num_classes)
        self.criterion: nn.Module
        if self.mixup is not None:
            self.criterion = SoftTargetCrossEntropy()  # type: ignore[no-untyped-call]
        elif recipe.label_smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(  # type: ignore[no-untyped-call]
                recipe.label_smoothing
            )
        else:
            self.criterion = nn.CrossEntropyLoss()
        self.layer_decay = resolve_layer_decay(model, recipe.layer_decay)
        self.num_classes = num_classes
        self.top = min(5, num_classes)
        # Hit counts rather than mean accuracies: exact percentages, summed over
        # devices by torchmetrics.
        # nan_strategy="disable": the default NaN check asks the device every update
        # (a host synchronisation per step). Hit counts cannot be NaN, and a NaN loss
        # now shows as a NaN epoch loss in the history instead of being dropped with
        # a warning. MeanMetric's "disable" drops the weights (torchmetrics 1.9), so
        # the epoch's loss is a weighted sum over a count.
        self.val_hits1 = SumMetric(nan_strategy="disable")
        self.val_hits5 = SumMetric(nan_strategy="disable")
        self.val_count = SumMetric(nan_strategy="disable")
        self.train_loss_sum = SumMetric(nan_strategy="disable")
        self.train_count = SumMetric(nan_strategy="disable")
        self.history: dict[int, dict[str, float]] = {}
        self.global_batch_size = recipe.batch_size
        self._last_lr = 0.0

    def forward(self, images: Tensor) -> Tensor:
        """Logits (B, num_classes) of images (B, C, H, W)."""
        logits: Tensor = self.model(images)
        return logits

    @property
    def lr_factor(self) -> float:
        """``global batch / 512``: the factor of every ``base_*`` learning rate."""
        return scaled_lr(1.0, self.global_batch_size, LR_REFERENCE_BATCH)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """AdamW with layer decay and the per-step warmup + cosine schedule."""
        recipe = self.recipe
        # world_size counts every process: devices x nodes.
        self.global_batch_size = recipe.batch_size * self.trainer.world_size
        optimizer = finetune_optimizer(
            self.model,
            lr=recipe.base_lr * self.lr_factor,
            weight_decay=recipe.weight_decay,
            layer_decay=self.layer_decay,
            betas=recipe.betas,
            eps=recipe.eps,
            rel_pos_weight_decay=recipe.rel_pos_weight_decay,
            fused=fused_allowed(str(self.trainer.precision), recipe.clip_grad),
            dims=self.parameter_dims,
        )
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = ScheduleSettings(
            name="cosine",
            warmup_epochs=recipe.warmup_epochs,
            base_warmup_lr=recipe.base_warmup_lr,
            base_min_lr=recipe.base_min_lr,
        )
        scheduler = create_scheduler(
            optimizer,
            schedule,
            steps_per_epoch=max(1, total_steps // recipe.epochs),
            total_steps=total_steps,
            scale=self.lr_factor,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},  # type: ignore[typeddict-item]
        }

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clips the model's gradients (:func:`lightly_simmim.optim.clip_in_hook`)."""
        clip_in_hook(
            self,
            optimizer,
            self.model.parameters(),
            gradient_clip_val,
            gradient_clip_algorithm,
        )

    def lr_scheduler_step(self, scheduler: Any, metric: Any | None) -> None:
        """Sets the rates of the next step (after every optimiser update)."""
        assert isinstance(scheduler, PerStepScheduler)
        scheduler.step_update(self.global_step)

    def on_train_start(self) -> None:
        """Sets the rates of the first step."""
        for config in self.trainer.lr_scheduler_configs:
            assert isinstance(config.scheduler, PerStepScheduler)
            config.scheduler.step_update(self.global_step)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """The loss of one batch, mixed and with soft targets if the recipe mixes."""
        images, labels = batch
        targets: Tensor = labels
        if self.mixup is not None:
            images, targets = self.mixup(images, labels)  # targets: (B, num_classes)
        loss: Tensor = self.criterion(self.model(images), targets)
        self.train_loss_sum.update(loss.detach() * len(images))
        self.train_count.update(len(images))
        optimizer: Any = self.optimizers()
        self._last_lr = max(float(g["lr"]) for g in optimizer.param_groups)
        return loss

    def on_train_epoch_end(self) -> None:
        """Records the epoch's mean loss and the head's learning rate."""
        record = self.history.setdefault(self.current_epoch, {})
        total = float(self.train_loss_sum.compute())
        record["train_loss"] = total / max(1.0, float(self.train_count.compute()))
        self.train_loss_sum.reset()
        self.train_count.reset()
        record["lr"] = self._last_lr

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Accumulates top-1 / top-5 hits of one validation batch."""
        images, labels = batch
        ranked = self.model(images).topk(self.top, dim=1).indices  # (B, top)
        correct = ranked == labels.unsqueeze(1)  # (B, top), one True at most
        self.val_hits1.update(correct[:, 0].sum())
        self.val_hits5.update(correct.any(dim=1).sum())
        self.val_count.update(len(labels))

    def on_validation_epoch_end(self) -> None:
        """Records the epoch's validation accuracy (percent)."""
        # A sanity check (with a user's own Trainer) is not an epoch's result.
        if not self.trainer.sanity_checking:
            count = float(self.val_count.compute())
            record = self.history.setdefault(self.current_epoch, {})
            record["top1"] = 100.0 * float(self.val_hits1.compute()) / count
            record["top5"] = 100.0 * float(self.val_hits5.compute()) / count
        for metric in (self.val_hits1, self.val_hits5, self.val_count):
            metric.reset()
