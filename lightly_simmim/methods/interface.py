"""What the loop, evaluation, export, callbacks and the benchmark need of a method.

:class:`Method` is the one typed description of a pretraining method as the rest of the
package uses it; :class:`~lightly_simmim.methods.PretrainMethod` implements it for the
built-in methods, and a third-party ``lightly.methods`` entry point that subclasses
``PretrainMethod`` gets it for free. Code outside :mod:`lightly_simmim.methods` types
methods with these protocols, never with ``Any``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = [
    "FeatureModel",
    "ImageTransform",
    "Method",
    "MethodClass",
    "Reconstruction",
    "ViewTransform",
]

ViewTransform = Callable[[Any], list[Tensor]]
"""A pretraining transform: one image (PIL or tensor) -> a list of (C, H, W) views."""

ImageTransform = Callable[[Any], Tensor]
"""An evaluation transform: one image (PIL or tensor) -> a (C, H, W) tensor."""

Reconstruction = tuple[Tensor, Tensor, Tensor]
"""(images (B, C, H, W), bool token mask (B, h, w) with True = masked,
reconstruction (B, C, H, W) in the normalised pixel space)."""


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

    Attributes:
        Settings: Dataclass of the method's own options (defaults = the paper's).
        pluggable: Which of ``head`` / ``loss`` / ``transform`` the method takes as
            an entry point by name (``method.head`` etc. in a config).
    """

    Settings: ClassVar[type[Any]]
    pluggable: ClassVar[frozenset[str]]

    def build_encoder(self, name: str, kwargs: dict[str, Any]) -> nn.Module:
        """Creates the encoder the method takes from a timm name and kwargs."""
        ...

    def __call__(self, encoder: nn.Module, settings: Any, **kwargs: Any) -> Method:
        """Builds the method around ``encoder`` (see ``PretrainMethod``)."""
        ...
