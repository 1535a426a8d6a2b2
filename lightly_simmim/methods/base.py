"""The base class every pretraining method derives from, and what they share.

A method is a ``LightningModule`` subclass of :class:`PretrainMethod` registered in
the ``lightly.methods`` entry point group. The training loop never imports a method:
it looks the class up by name, builds the encoder with
:meth:`PretrainMethod.build_encoder` and then the method, from plain typed arguments.
This module owns what is the same for every method, so that a benchmark compares
methods and not their plumbing:

- the optimiser, the learning rate scaled by the global batch and the per-step
  schedule, sized from the Trainer (:mod:`.optimization`);
- the online linear classifier on detached features, and the logging;
- the per-rank random streams of the method's own draws (masks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from lightly.utils.benchmarking import OnlineLinearClassifier
from torch import Tensor, nn

from lightly_simmim.batch_transforms import BatchRandomResizedCrop
from lightly_simmim.encoders.factory import TimmKwargs
from lightly_simmim.methods.interface import (
    HeadFactory,
    ImageTransform,
    LossFactory,
    Reconstruction,
    TransformFactory,
    ViewTransform,
)
from lightly_simmim.methods.optimization import OptimizedModule
from lightly_simmim.methods.streams import SeededStreams
from lightly_simmim.optim import OptimizerSettings
from lightly_simmim.schedule import ScheduleSettings
from lightly_simmim.transforms import ConvertChannels, EvalTransform, resolve_normalize

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["Batch", "PretrainMethod"]

Batch = tuple[list[Tensor], Tensor]
"""What ``training_step`` receives: (views, labels). ``views`` is the default-collated
output of ``default_transform()``: a list with one (B, C, H, W) tensor per view;
``labels`` is long (B,), -1 where a sample has no label."""


class PretrainMethod(OptimizedModule, SeededStreams, ABC):
    """A self-supervised pretraining method (implements :class:`Method`).

    Subclasses set :attr:`Settings`, implement :meth:`build_encoder`,
    :meth:`_build_modules`, :meth:`method_loss`, :meth:`forward`,
    :attr:`feature_dim`, :meth:`_own_transform` and :meth:`timm_encoder`, and may
    override :meth:`reconstruct_batch` and :meth:`_no_weight_decay`. They do not
    override ``__init__``: it checks the shared arguments, calls
    :meth:`_build_modules` and then adds the online classifier, whose width needs the
    method's :attr:`feature_dim`.

    The optimiser, learning-rate scaling and schedule come from
    :class:`~lightly_simmim.methods.optimization.OptimizedModule`.

    Args:
        encoder: The model from :meth:`build_encoder`.
        settings: An instance of :attr:`Settings`; None = the paper's defaults.
        input_size: Side of the (square) training images in pixels.
        in_chans: Image channels, 1 or 3.
        batch_size_per_device: Images per device and step (see
            :class:`OptimizedModule`).
        mean: Per-channel normalisation mean, ``in_chans`` values; None together with
            ``std`` = ImageNet statistics (3 channels only).
        std: Per-channel normalisation std.
        num_classes: Classes of the labels; None = no labels, no online classifier.
        optimizer: Optimiser settings (defaults: AdamW, SimMIM's).
        schedule: Learning-rate schedule, applied per optimiser step.
        seed: Base seed of the method's own random draws (masks); each rank derives
            its own stream from it (:func:`lightly_simmim.masking.process_seed`).
        head: A head class by entry point (``method.head``), for methods that list
            ``"head"`` in :attr:`pluggable`; None = the method's own.
        loss: A loss class likewise (``"loss"``).
        transform: A pretraining transform class likewise (``"transform"``), called
            as ``transform(input_size=..., normalize=...)``.

    Attributes:
        mean: The resolved per-channel mean (ImageNet's if None was given).
        std: The resolved per-channel std.
        online_classifier: lightly's ``OnlineLinearClassifier`` or None.

    Raises:
        TypeError: If ``settings`` is not a :attr:`Settings` instance.
        ValueError: On impossible sizes, statistics or components (naming them).
    """

    Settings: ClassVar[type[DataclassInstance]]
    """Dataclass of the method's own options, defaults = the paper's."""

    pluggable: ClassVar[frozenset[str]] = frozenset({"transform"})
    """Which of head / loss / transform the method takes by entry point name."""

    settings: object  # a Settings instance; subclasses declare their own type
    online_classifier: OnlineLinearClassifier | None

    def __init__(
        self,
        encoder: nn.Module,
        settings: object = None,
        *,
        input_size: int,
        in_chans: int,
        batch_size_per_device: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        num_classes: int | None = None,
        optimizer: OptimizerSettings | None = None,
        schedule: ScheduleSettings | None = None,
        seed: int = 0,
        head: HeadFactory | None = None,
        loss: LossFactory | None = None,
        transform: TransformFactory | None = None,
    ) -> None:
        super().__init__(batch_size_per_device, optimizer, schedule)
        settings = self.Settings() if settings is None else settings
        if not isinstance(settings, self.Settings):
            raise TypeError(
                f"{type(self).__name__} takes settings of type "
                f"{self.Settings.__name__}, got {type(settings).__name__}."
            )
        self._check_sizes(input_size, in_chans, num_classes)
        self._check_components(head=head, loss=loss, transform=transform)
        self.settings = settings
        self.input_size = input_size
        self.in_chans = in_chans
        normalize = resolve_normalize(mean, std, in_chans)
        self.mean, self.std = normalize["mean"], normalize["std"]
        self.num_classes = num_classes
        self.seed = seed
        self.head_factory, self.loss_factory = head, loss
        self.transform_factory = transform
        self._augment: BatchRandomResizedCrop | None = None
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

    @staticmethod
    def _check_sizes(input_size: int, in_chans: int, num_classes: int | None) -> None:
        if input_size < 1:
            raise ValueError(f"input_size must be >= 1, got {input_size}.")
        if in_chans not in (1, 3):
            # The transforms convert PIL images to "L" or "RGB"; nothing else.
            raise ValueError(f"in_chans must be 1 or 3, got {in_chans}.")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}.")

    def _check_components(self, **given: object) -> None:
        for kind, factory in given.items():
            if factory is not None and kind not in self.pluggable:
                takes = ", ".join(sorted(self.pluggable)) or "none"
                raise ValueError(
                    f"{type(self).__name__} has no pluggable {kind} (it takes: "
                    f"{takes}); remove method.{kind} from the config."
                )

    # ----------------------------------------------------------------- interface

    @classmethod
    @abstractmethod
    def build_encoder(cls, name: str, kwargs: TimmKwargs) -> nn.Module:
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
    def method_loss(self, views: list[Tensor]) -> tuple[Tensor, Tensor | None]:
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
    def _own_transform(self) -> ViewTransform:
        """The method's pretraining transform: PIL image -> list of (C, H, W) views."""

    @abstractmethod
    def timm_encoder(self) -> nn.Module:
        """The plain timm model inside (shared, not a copy), for export."""

    def default_transform(self) -> ViewTransform:
        """The pretraining transform: ``method.transform``'s entry point, or the
        method's own (:meth:`_own_transform`)."""
        if self.transform_factory is None:
            return self._own_transform()
        made = self.transform_factory(
            input_size=self.input_size, normalize=self.normalize
        )
        return ConvertChannels(made, self.in_chans)

    def reconstruct_batch(self, images: Tensor) -> Reconstruction | None:
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

    def eval_transform(self) -> ImageTransform:
        """Resize (bicubic) to ``input_size``, to tensor, normalise.

        Returns:
            An :class:`EvalTransform`: PIL image -> (in_chans, H, W).
        """
        return EvalTransform(self.input_size, self.in_chans, self.mean, self.std)

    @property
    def normalize(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` in lightly's transform format."""
        return {"mean": list(self.mean), "std": list(self.std)}

    def batch_augmentation(self) -> BatchRandomResizedCrop | None:
        """The pretraining augmentation per batch on the device, or None.

        A method whose augmentation is a crop, a flip and a normalisation returns
        it here; the loop then holds an in-memory dataset as one uint8 tensor and
        augments each batch on the training device (:meth:`on_after_batch_transfer`).
        None (the default, and BYOL's colour augmentations) keeps the per-image
        :meth:`default_transform` in data loader workers.
        """
        return None

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing in the timm encoder's blocks, where it has any."""
        setter = getattr(self.timm_encoder(), "set_grad_checkpointing", None)
        if callable(setter):
            setter(enable)

    def on_after_batch_transfer(self, batch: object, dataloader_idx: int) -> object:
        """Augments an in-memory batch on its device: uint8 images -> one view.

        Batches of the per-image path (lists of views) pass unchanged.
        """
        if not isinstance(batch, (tuple, list)):
            return batch
        images = batch[0]
        if not isinstance(images, Tensor) or images.dtype != torch.uint8:
            return batch
        if self._augment is None:
            self._augment = self.batch_augmentation()
        if self._augment is None:
            raise TypeError(
                f"{type(self).__name__} got an in-memory uint8 batch but has no "
                "batch_augmentation(); use the per-image data path."
            )
        views = [self._augment(images, self._generator(images.device))]
        return views, batch[1]

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
        loss, features = self.method_loss(views)
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
        """Cross-entropy of the online classifier on labelled samples (label >= 0).

        lightly's head, with its loss and top-k accuracy computed here as masked sums
        over the whole batch, so that no step waits for the device to learn which
        samples are labelled (lightly's ``training_step`` needs the labelled subset
        cut out first, a host synchronisation per step). On a fully labelled batch
        the values equal lightly's; a batch without labels gives a zero loss that
        still reaches every classifier parameter, so DDP never waits for a gradient.
        """
        classifier = self.online_classifier
        assert classifier is not None
        logits: Tensor = classifier(features)
        known = labels >= 0
        count = known.sum().clamp(min=1)
        per_sample = nn.functional.cross_entropy(
            logits, labels.clamp(min=0), reduction="none"
        )
        cls_loss = (per_sample * known).sum() / count
        predicted = logits.topk(max(classifier.topk), dim=1).indices
        log = {"train_online_cls_loss": cls_loss.detach()}
        for k in classifier.topk:
            # An unlabelled sample's -1 matches no class: it is never counted right.
            hits = (predicted[:, :k] == labels[:, None]).any(dim=1)
            log[f"train_online_cls_top{k}"] = hits.sum() / count
        self.log_dict(log, batch_size=len(labels))
        return cls_loss

    def on_train_start(self) -> None:
        """Reseeds the random streams and sets the rate of the (resumed) first step."""
        super().on_train_start()
        self.reseed_masks(int(self.trainer.global_step))

    def clipped_parameters(self) -> list[nn.Parameter]:
        """The model's own parameters: the official SimMIM code clips those; the
        online classifier is a probe whose gradients must not scale the step."""
        return [
            param
            for name, param in self.named_parameters()
            if not name.startswith("online_classifier.")
        ]

    def no_weight_decay(self) -> set[str]:
        """Full names of parameters without weight decay.

        The method's own (:meth:`_no_weight_decay`: mask tokens, position tables)
        and the online classifier's (a probe, not regularised).
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
