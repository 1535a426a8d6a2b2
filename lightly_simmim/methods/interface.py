"""What the loop, evaluation, export, callbacks and the benchmark need of a method.

:class:`Method` is the one typed description of a pretraining method as the rest of the
package uses it; :class:`~lightly_simmim.methods.PretrainMethod` implements it for the
built-in methods, and a third-party ``lightly.methods`` entry point that subclasses
``PretrainMethod`` gets it for free. Code outside :mod:`lightly_simmim.methods` types
methods with these protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from lightly_simmim.encoders.factory import TimmKwargs
from lightly_simmim.optim import OptimizerSettings
from lightly_simmim.schedule import ScheduleSettings
from lightly_simmim.transforms import ImageInput

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "FeatureModel",
    "HeadFactory",
    "ImageTransform",
    "LossFactory",
    "Method",
    "MethodClass",
    "Reconstruction",
    "TransformFactory",
    "ViewTransform",
]

ViewTransform = Callable[[ImageInput], list[Tensor]]
"""A pretraining transform: one image (PIL or tensor) -> a list of (C, H, W) views."""

ImageTransform = Callable[[ImageInput], Tensor]
"""An evaluation transform: one image (PIL or tensor) -> a (C, H, W) tensor."""

Reconstruction = tuple[Tensor, Tensor, Tensor]
"""(images (B, C, H, W), bool token mask (B, h, w) with True = masked,
reconstruction (B, C, H, W) in the normalised pixel space)."""


class HeadFactory(Protocol):
    """A prediction head class picked by entry point name (``method.head``).

    Called with the encoder's geometry, as
    :class:`~lightly_simmim.SimMIMPredictionHead` is.
    """

    def __call__(
        self, *, in_channels: int, encoder_stride: int, out_channels: int
    ) -> nn.Module:
        """A head: feature map (B, in_channels, h, w) -> (B, out_channels, H, W)."""
        ...


class LossFactory(Protocol):
    """A loss class picked by entry point name (``method.loss``), called with no
    arguments; the loss takes ``(reconstruction, images, mask)``."""

    def __call__(self) -> nn.Module:
        """A loss module."""
        ...


class TransformFactory(Protocol):
    """A pretraining transform class picked by entry point name
    (``method.transform``), as lightly's ``MAETransform``."""

    def __call__(
        self, *, input_size: int, normalize: dict[str, list[float]]
    ) -> ViewTransform:
        """A transform making views of ``input_size``, normalised as given."""
        ...


@runtime_checkable
class FeatureModel(Protocol):
    """What kNN needs of a model: its evaluation transform and pooled features.

    Every :class:`Method` is one; so is the benchmark's raw-pixel baseline.
    """

    def eval_transform(self) -> ImageTransform:
        """The evaluation transform (resize, crop, normalise)."""
        ...

    def __call__(self, images: Tensor) -> Tensor:
        """Pooled features (B, D) of normalised images."""
        ...


@runtime_checkable
class Method(FeatureModel, Protocol):
    """A pretraining method, as the loop and everything after it see it.

    Attributes:
        input_size: Side of the (square) training images in pixels.
        in_chans: Image channels, 1 or 3.
        mean: Per-channel normalisation mean of the images it was trained on.
        std: Per-channel normalisation std.
    """

    input_size: int
    in_chans: int
    mean: list[float]
    std: list[float]
    training: bool

    @property
    def feature_dim(self) -> int:
        """Width of the pooled features of :meth:`__call__`."""
        ...

    @property
    def normalize(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` in lightly's transform format."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the method's parameters are."""
        ...

    def default_transform(self) -> ViewTransform:
        """The pretraining transform (image -> views)."""
        ...

    def timm_encoder(self) -> nn.Module:
        """The timm model inside (shared, not a copy), for export and fine-tune."""
        ...

    def reconstruct_batch(self, images: Tensor) -> Reconstruction | None:
        """Masks and reconstructs images for a PNG grid; None = not a masked method."""
        ...

    def to(self, device: torch.device | str) -> Method:
        """Moves the method's parameters (``nn.Module.to``)."""
        ...

    def eval(self) -> Method:
        """Evaluation mode (``nn.Module.eval``)."""
        ...

    def train(self, mode: bool = True) -> Method:
        """Training mode (``nn.Module.train``)."""
        ...


class MethodClass(Protocol):
    """The class-level side of a method: its options and how it builds an encoder.

    A ``PretrainMethod`` subclass (the class object itself) is one.
    """

    @property
    def Settings(self) -> type[DataclassInstance]:  # noqa: N802 (a class attribute)
        """Dataclass of the method's own options (defaults = the paper's)."""
        ...

    @property
    def pluggable(self) -> frozenset[str]:
        """Which of ``head`` / ``loss`` / ``transform`` the method takes as an entry
        point by name (``method.head`` etc. in a config)."""
        ...

    def build_encoder(self, name: str, kwargs: TimmKwargs) -> nn.Module:
        """Creates the encoder the method takes from a timm name and kwargs."""
        ...

    def __call__(
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
    ) -> Method:
        """Builds the method around ``encoder`` (see ``PretrainMethod``)."""
        ...
