"""The interface every pretraining method implements, and what they share.

A method is a ``LightningModule`` subclass of :class:`PretrainMethod` registered in
the ``lightly.methods`` entry point group. The training loop never imports a method:
it looks the class up by name, builds the encoder with
:meth:`PretrainMethod.build_encoder`, the method's options with
``config.from_dict(cls.Settings, options)``, and then the method. This module owns
what is the same for every method, so that a benchmark compares methods and not their
plumbing:

- the optimiser (timm's factory, with weight decay off for 1-D parameters, biases and
  the names in :meth:`PretrainMethod.no_weight_decay`) and the learning rate, scaled
  linearly with the global batch size and scheduled per step (:class:`LRSchedule`);
- the online linear classifier on detached features, and the logging;
- the channel handling of lightly's pretraining transforms (:class:`ConvertChannels`;
  the evaluation transform is :class:`lightly_simmim.transforms.EvalTransform`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytorch_lightning as pl
import timm.optim
import torch
from lightly.utils.benchmarking import OnlineLinearClassifier
from PIL.Image import Image
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from lightly_simmim.config import OptimConfig, ScheduleConfig
from lightly_simmim.masking import process_seed
from lightly_simmim.transforms import IMAGENET_NORMALIZE, EvalTransform, to_channels

__all__ = [
    "ConvertChannels",
    "LRSchedule",
    "PretrainMethod",
    "scaled_lr",
]

Batch = tuple[list[Tensor], Tensor]
"""What ``training_step`` receives: (views, labels). ``views`` is the default-collated
output of ``default_transform()``: a list with one (B, C, H, W) tensor per view;
``labels`` is long (B,), -1 where a sample has no label."""


class ConvertChannels:
    """Runs :func:`to_channels` before a transform (lightly's transforms assume RGB).

    A class rather than a closure so that it pickles into data loader workers.

    Args:
        transform: A callable from a PIL image to a list of (C, H, W) tensors, e.g.
            lightly's ``BYOLTransform``.
        in_chans: 1 or 3.
    """

    def __init__(self, transform: Callable[[Any], list[Any]], in_chans: int) -> None:
        self.transform = transform
        self.in_chans = in_chans

    def __call__(self, image: Image | Tensor) -> list[Tensor]:
        """Converts the channels, then transforms.

        Returns:
            Whatever ``transform`` returns: a list of (in_chans, H, W) views.
        """
        views: list[Tensor] = self.transform(to_channels(image, self.in_chans))
        return views

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r}, in_chans={self.in_chans})"


def scaled_lr(optim: OptimConfig, global_batch_size: int) -> float:
    """The linear scaling rule: ``base_lr * global_batch_size / base_batch_size``.

    Args:
        optim: The optimiser config (``base_lr`` is the rate at ``base_batch_size``).
        global_batch_size: Images per optimiser step over all devices, nodes and
            accumulated batches.

    Returns:
        The peak learning rate.
    """
    return optim.base_lr * global_batch_size / optim.base_batch_size


class LRSchedule:
    """Learning rate per optimiser step: linear warmup, then cosine / steps / flat.

    With ``W`` warmup steps, ``N`` total steps and peak rate ``lr``:

    - step ``s < W``: ``warmup_lr + (lr - warmup_lr) * s / W``;
    - ``"cosine"``: ``min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2`` with
      ``p = min(1, (s - W) / (N - W))``, so ``min_lr`` is reached at step ``N``;
    - ``"multistep"``: ``lr * gamma ** k``, ``k`` the number of milestones (in
      epochs) already reached;
    - ``"constant"``: ``lr``.

    Called with a step it returns the factor ``lr(step) / lr`` that
    ``torch.optim.lr_scheduler.LambdaLR`` multiplies the optimiser's rate with. It
    holds only numbers, so the scheduler's state dict (which copies the attributes of
    callable objects) stays loadable with ``torch.load(weights_only=True)``.

    Args:
        name: ``"cosine"``, ``"multistep"`` or ``"constant"``.
        peak_lr: The rate after warmup (already scaled by the batch size).
        warmup_steps: Steps of linear warmup (0 = none).
        total_steps: Steps of the whole run (the end of the cosine).
        warmup_lr: Rate at step 0.
        min_lr: Final rate of the cosine.
        milestone_steps: Steps at which multistep multiplies the rate by ``gamma``.
        gamma: The multistep factor.

    Raises:
        ValueError: On an unknown name or negative step counts.
    """

    def __init__(
        self,
        name: str,
        peak_lr: float,
        warmup_steps: int,
        total_steps: int,
        warmup_lr: float = 0.0,
        min_lr: float = 0.0,
        milestone_steps: Sequence[int] = (),
        gamma: float = 0.1,
    ) -> None:
        if name not in ("cosine", "multistep", "constant"):
            raise ValueError(
                f"schedule.name must be 'cosine', 'multistep' or 'constant', got "
                f"{name!r}."
            )
        if warmup_steps < 0 or total_steps < 0:
            raise ValueError(
                f"warmup_steps ({warmup_steps}) and total_steps ({total_steps}) must "
                f"be >= 0."
            )
        self.name = name
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.warmup_lr = float(warmup_lr)
        self.min_lr = float(min_lr)
        self.milestone_steps = [int(s) for s in milestone_steps]
        self.gamma = float(gamma)

    @classmethod
    def from_config(
        cls,
        schedule: ScheduleConfig,
        peak_lr: float,
        steps_per_epoch: int,
        epochs: int,
    ) -> LRSchedule:
        """The schedule of a config; epochs become ``int(epochs * steps_per_epoch)``.

        Args:
            schedule: The schedule section of the run config.
            peak_lr: The batch-size-scaled rate (:func:`scaled_lr`).
            steps_per_epoch: Optimiser steps per epoch (after accumulation).
            epochs: Length of the run in epochs.

        Returns:
            The schedule.
        """
        return cls(
            name=schedule.name,
            peak_lr=peak_lr,
            warmup_steps=int(schedule.warmup_epochs * steps_per_epoch),
            total_steps=epochs * steps_per_epoch,
            warmup_lr=schedule.warmup_lr,
            min_lr=schedule.min_lr,
            milestone_steps=[int(m * steps_per_epoch) for m in schedule.milestones],
            gamma=schedule.gamma,
        )

    def lr(self, step: int) -> float:
        """The learning rate at optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.warmup_lr + (self.peak_lr - self.warmup_lr) * (
                step / self.warmup_steps
            )
        if self.name == "cosine":
            # max(1, ...): a run no longer than its warmup ends at min_lr right away.
            decay_steps = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / decay_steps)
            return self.min_lr + (self.peak_lr - self.min_lr) * 0.5 * (
                1.0 + math.cos(math.pi * progress)
            )
        if self.name == "multistep":
            reached = sum(step >= milestone for milestone in self.milestone_steps)
            return self.peak_lr * self.gamma**reached
        return self.peak_lr

    def __call__(self, step: int) -> float:
        """The factor ``lr(step) / peak_lr`` for ``LambdaLR``."""
        if self.peak_lr == 0.0:
            return 0.0
        return self.lr(step) / self.peak_lr


def timm_no_weight_decay(model: nn.Module, prefix: str) -> set[str]:
    """The names a timm model lists in its own ``no_weight_decay()``, prefixed.

    timm models name their position embeddings, class / register tokens and relative
    position tables there; a model without the method gives the empty set.

    Args:
        model: A timm model.
        prefix: The model's path inside the LightningModule, ending in ``"."``.

    Returns:
        Full parameter names.
    """
    listed = getattr(model, "no_weight_decay", None)
    if not callable(listed):
        return set()
    return {f"{prefix}{name}" for name in listed()}


class PretrainMethod(pl.LightningModule, ABC):
    """A self-supervised pretraining method behind the interface the loop uses.

    Subclasses set :attr:`Settings`, implement :meth:`build_encoder`,
    :meth:`_build_modules`, :meth:`_method_loss`, :meth:`forward`,
    :attr:`feature_dim`, :meth:`default_transform` and :meth:`timm_encoder`, and may
    override :meth:`reconstruct_batch` and :meth:`_no_weight_decay`. They do not
    override ``__init__``: it checks the shared arguments, calls
    :meth:`_build_modules` and then adds the online classifier, whose width needs the
    method's :attr:`feature_dim`.

    Args:
        encoder: The model from :meth:`build_encoder`.
        settings: An instance of :attr:`Settings`; None = the paper's defaults.
        optim: Optimiser settings; the rate is scaled with ``global_batch_size``.
        schedule: Learning-rate schedule, applied per optimiser step.
        input_size: Side of the (square) training images in pixels.
        in_chans: Image channels, 1 or 3.
        mean: Per-channel normalisation mean, ``in_chans`` values; None together with
            ``std`` = ImageNet statistics (3 channels only).
        std: Per-channel normalisation std.
        num_classes: Classes of the labels; None = no labels, no online classifier.
        global_batch_size: Images per optimiser step over all devices, nodes and
            accumulated batches (for the learning-rate scaling).
        steps_per_epoch: Optimiser steps per epoch (after gradient accumulation).
        epochs: Length of the run; with ``steps_per_epoch`` it fixes the end of the
            schedules.
        seed: Base seed of the method's own random draws (masks); each rank derives
            its own stream from it (:func:`lightly_simmim.masking.process_seed`).

    Attributes:
        mean: The resolved per-channel mean (ImageNet's if None was given).
        std: The resolved per-channel std.
        online_classifier: lightly's ``OnlineLinearClassifier`` or None.

    Raises:
        TypeError: If ``settings`` is not a :attr:`Settings` instance.
        ValueError: On impossible sizes, statistics or counts (naming the values).
    """

    Settings: ClassVar[type[Any]]
    """Dataclass of the method's own options, defaults = the paper's."""

    settings: Any
    online_classifier: OnlineLinearClassifier | None

    def __init__(
        self,
        encoder: nn.Module,
        settings: Any,
        optim: OptimConfig,
        schedule: ScheduleConfig,
        *,
        input_size: int,
        in_chans: int,
        mean: list[float] | None,
        std: list[float] | None,
        num_classes: int | None,
        global_batch_size: int,
        steps_per_epoch: int,
        epochs: int,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if settings is None:
            settings = self.Settings()
        if not isinstance(settings, self.Settings):
            raise TypeError(
                f"{type(self).__name__} takes settings of type "
                f"{self.Settings.__name__}, got {type(settings).__name__}."
            )
        for name, value in (
            ("input_size", input_size),
            ("global_batch_size", global_batch_size),
            ("steps_per_epoch", steps_per_epoch),
            ("epochs", epochs),
            ("optim.base_batch_size", optim.base_batch_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        if in_chans not in (1, 3):
            # The transforms convert PIL images to "L" or "RGB"; nothing else.
            raise ValueError(f"in_chans must be 1 or 3, got {in_chans}.")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}.")
        self.settings = settings
        self.optim_config = optim
        self.schedule_config = schedule
        self.input_size = input_size
        self.in_chans = in_chans
        self.mean, self.std = self._resolve_statistics(mean, std, in_chans)
        self.num_classes = num_classes
        self.global_batch_size = global_batch_size
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.seed = seed
        self._check_optimizer(optim.optimizer)
        # Random generators of the method's own draws, one per device; created on
        # first use, when the process knows its rank.
        self._generators: dict[str, torch.Generator] = {}
        self._stream_seed = seed  # see reseed_masks

        self._build_modules(encoder)

        self.online_classifier = None
        if num_classes is not None:
            # top-5 accuracy needs at least 5 classes.
            topk = tuple(k for k in (1, 5) if k <= num_classes)
            self.online_classifier = OnlineLinearClassifier(
                feature_dim=self.feature_dim, num_classes=num_classes, topk=topk
            )

    # ----------------------------------------------------------------- interface

    @classmethod
    @abstractmethod
    def build_encoder(cls, name: str, kwargs: dict[str, Any]) -> nn.Module:
        """Creates the encoder this method takes, from a timm name.

        Args:
            name: A timm model name (derived names as in
                :func:`lightly_simmim.encoders.resolve_timm_name`).
            kwargs: ``timm.create_model`` keyword arguments (``in_chans``,
                ``img_size``, ...).

        Returns:
            The encoder to pass to the constructor.
        """

    @abstractmethod
    def _build_modules(self, encoder: nn.Module) -> None:
        """Creates the method's modules around ``encoder``; settings are set."""

    @abstractmethod
    def _method_loss(self, views: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        """The method's loss of one batch.

        Args:
            views: One (B, C, H, W) tensor per view of ``default_transform()``.

        Returns:
            (scalar loss, pooled features (B, feature_dim) of ``views[0]`` if the
            method computed them anyway, else None).
        """

    @property
    @abstractmethod
    def feature_dim(self) -> int:
        """Width of the pooled features from :meth:`forward`."""

    @abstractmethod
    def forward(self, images: Tensor) -> Tensor:
        """Pooled features of unmasked images, for kNN / linear evaluation.

        Args:
            images: (B, in_chans, input_size, input_size), normalised.

        Returns:
            (B, feature_dim).
        """

    @abstractmethod
    def default_transform(self) -> Callable[[Any], list[Tensor]]:
        """The method's pretraining transform: PIL image -> list of (C, H, W) views."""

    @abstractmethod
    def timm_encoder(self) -> nn.Module:
        """The plain timm model inside (shared, not a copy), for export."""

    def reconstruct_batch(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        """Masks and reconstructs images for a PNG grid; None = not a masked method.

        Call it in eval mode. The masks come from a generator seeded with ``seed``
        anew on every call (the same masks for the same images every time, and
        the training mask stream is left alone).

        Args:
            images: (B, C, H, W) normalised images.

        Returns:
            (images, bool token mask (B, h, w) with True = masked,
            reconstruction (B, C, H, W) in the normalised pixel space), or None.
        """
        return None

    def eval_transform(self) -> Callable[[Any], Tensor]:
        """Resize + centre crop to ``input_size``, to tensor, normalise.

        Returns:
            An :class:`EvalTransform`: PIL image -> (in_chans, H, W).
        """
        return EvalTransform(self.input_size, self.in_chans, self.mean, self.std)

    # ----------------------------------------------------------------- training

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Method loss plus the online classifier's loss; logs both.

        Args:
            batch: (views, labels), see :data:`Batch`.
            batch_idx: Index of the batch in the epoch.

        Returns:
            The scalar loss to minimise. ``train_loss`` logs the method's loss only,
            so it is comparable with and without labels.
        """
        views, labels = batch
        batch_size = len(views[0])
        loss, features = self._method_loss(views)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch_size)
        trainer = self._trainer  # None when called outside a Trainer
        if trainer is not None and trainer.optimizers:
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            self.log("lr", lr, batch_size=batch_size)
        if self.online_classifier is not None:
            if features is None:
                # Masked methods never see the whole image in training; one extra
                # forward (no backward) gives the features evaluation will use.
                with torch.no_grad():
                    features = self.forward(views[0])
            loss = loss + self._online_classifier_loss(features.detach(), labels)
        return loss

    def _online_classifier_loss(self, features: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of the online classifier on labelled samples (label >= 0)."""
        assert self.online_classifier is not None
        known = labels >= 0
        if bool(known.all()):
            cls_loss: Tensor
            cls_loss, log = self.online_classifier.training_step((features, labels), 0)
            self.log_dict(log, batch_size=len(labels))
            return cls_loss
        if not bool(known.any()):
            # Zero loss that still touches the classifier, so every parameter gets a
            # (zero) gradient and DDP does not wait for one that never comes.
            logits: Tensor = self.online_classifier.classification_head(features[:1])
            return 0.0 * logits.sum()
        cls_loss, log = self.online_classifier.training_step(
            (features[known], labels[known]), 0
        )
        self.log_dict(log, batch_size=int(known.sum()))
        return cls_loss

    def mask_seed(self, step: int) -> int:
        """Seed of the random streams of a run (re)started at optimiser ``step``.

        A fresh run uses ``seed`` itself; a resumed run derives another from its
        step, so it does not replay the masks of the first steps (the streams'
        state is per rank and not in the checkpoint, which rank 0 writes alone).
        """
        return self.seed if step == 0 else self.seed + 1_000_003 * step

    def reseed_masks(self, step: int) -> None:
        """Restarts the method's random streams for a run starting at ``step``."""
        self._generators.clear()
        self._stream_seed = self.mask_seed(step)

    def on_train_start(self) -> None:
        """Reseeds the random streams from the step the run starts (or resumes) at."""
        self.reseed_masks(int(self.trainer.global_step))

    def _generator(self, device: torch.device) -> torch.Generator:
        """This process's generator on ``device``, seeded from (seed, rank)."""
        key = str(device)
        if key not in self._generators:
            generator = torch.Generator(device=device)
            generator.manual_seed(process_seed(self._stream_seed))
            self._generators[key] = generator
        return self._generators[key]

    def _fixed_generator(self, device: torch.device) -> torch.Generator:
        """A fresh generator seeded with ``seed``, for reproducible image grids."""
        generator = torch.Generator(device=device)
        generator.manual_seed(self.seed)
        return generator

    # ---------------------------------------------------------------- optimiser

    @property
    def learning_rate(self) -> float:
        """Peak rate: ``base_lr * global_batch_size / base_batch_size``."""
        return scaled_lr(self.optim_config, self.global_batch_size)

    @property
    def total_steps(self) -> int:
        """Optimiser steps of the whole run, ``epochs * steps_per_epoch``."""
        return self.epochs * self.steps_per_epoch

    def lr_schedule(self) -> LRSchedule:
        """The per-step learning-rate schedule of this run."""
        return LRSchedule.from_config(
            self.schedule_config, self.learning_rate, self.steps_per_epoch, self.epochs
        )

    def no_weight_decay(self) -> set[str]:
        """Full names of parameters without weight decay.

        timm's optimiser factory reads this; it also leaves out 1-D parameters and
        biases itself. Includes the online classifier (a probe, not regularised).
        """
        names = self._no_weight_decay()
        if self.online_classifier is not None:
            names |= {
                f"online_classifier.{name}"
                for name, _ in self.online_classifier.named_parameters()
            }
        return names

    def _no_weight_decay(self) -> set[str]:
        """The method's own no-decay names (mask tokens, position tables, ...)."""
        return set()

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """timm optimiser on the trainable parameters and a per-step LambdaLR.

        Frozen parameters (momentum encoders, fixed position embeddings) are left
        out by timm's factory. betas / eps / momentum are passed only to optimisers
        that take them (``adamw``, ``lars``, ``sgd``, ... all work).

        Returns:
            Lightning's optimiser + scheduler dict, scheduler stepped every step.
        """
        optim = self.optim_config
        info = timm.optim.get_optimizer_info(optim.optimizer.lower().split("_")[-1])
        extra: dict[str, Any] = {}
        if info.has_betas:
            extra["betas"] = tuple(optim.betas)
        if info.has_eps:
            extra["eps"] = optim.eps
        optimizer = timm.optim.create_optimizer_v2(
            self,
            opt=optim.optimizer,
            lr=self.learning_rate,
            weight_decay=optim.weight_decay,
            momentum=optim.momentum,
            **extra,
        )
        scheduler = LambdaLR(optimizer, lr_lambda=self.lr_schedule())
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": "step",
                "frequency": 1,
            },
        }

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def _resolve_statistics(
        mean: Sequence[float] | None, std: Sequence[float] | None, in_chans: int
    ) -> tuple[list[float], list[float]]:
        if (mean is None) != (std is None):
            raise ValueError("Give both mean and std, or neither (ImageNet's).")
        if mean is None or std is None:
            if in_chans != 3:
                raise ValueError(
                    f"mean/std default to ImageNet statistics, which have 3 channels, "
                    f"but in_chans={in_chans}; give per-channel statistics of your "
                    f"data, e.g. mean=[0.286], std=[0.353] for Fashion-MNIST."
                )
            return list(IMAGENET_NORMALIZE["mean"]), list(IMAGENET_NORMALIZE["std"])
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(
                f"mean has {len(mean)} and std {len(std)} values but in_chans="
                f"{in_chans}; give one value per channel."
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"std values must be > 0, got {list(std)}.")
        return [float(m) for m in mean], [float(s) for s in std]

    @staticmethod
    def _check_optimizer(name: str) -> None:
        # Fail when the method is built, not after the data has been loaded.
        try:
            timm.optim.get_optimizer_info(name.lower().split("_")[-1])
        except ValueError as error:
            known = ", ".join(str(n) for n in timm.optim.list_optimizers())
            raise ValueError(
                f"optim.optimizer={name!r} is not a timm optimiser. Known: {known}."
            ) from error

    @property
    def normalize(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` in lightly's transform format."""
        return {"mean": list(self.mean), "std": list(self.std)}
