"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020).

Built from lightly's parts: ``BYOLProjectionHead``, ``BYOLPredictionHead``,
``NegativeCosineSimilarity``, ``deactivate_requires_grad`` / ``update_momentum`` and
``cosine_schedule``, and the two asymmetric views of ``BYOLTransform``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform
from lightly.utils.scheduler import cosine_schedule
from pytorch_lightning.core.optimizer import LightningOptimizer
from torch import Tensor, nn
from torch.optim import Optimizer

from lightly_simmim.encoders import TimmKwargs, create_timm_model
from lightly_simmim.methods.base import PretrainMethod
from lightly_simmim.methods.interface import ViewTransform
from lightly_simmim.methods.optimization import timm_no_weight_decay
from lightly_simmim.settings import Checked, setting
from lightly_simmim.transforms import ConvertChannels


@dataclass
class BYOLSettings(Checked):
    """BYOL's options; the defaults are the paper's."""

    #: Hidden width of the projection MLP.
    projection_hidden_dim: int = setting(4096, ge=1)
    #: Output width of the projection (and of the prediction).
    projection_dim: int = setting(256, ge=1)
    #: Hidden width of the prediction MLP.
    prediction_hidden_dim: int = setting(4096, ge=1)
    #: Momentum of the target network at step 0; it rises to 1 on a cosine over
    #: the run.
    momentum_base: float = setting(0.99, ge=0, le=1)


class BYOLMethod(PretrainMethod):
    """BYOL: predict a slow-moving target network's projection of the other view.

    The online network is backbone -> projection -> prediction; the target network
    is a momentum (exponential moving average) copy of backbone -> projection,
    updated after every optimiser step with momentum ``cosine_schedule(step,
    total_steps, momentum_base, 1.0)``. The loss is lightly's negative cosine
    similarity, symmetrised over the two views (range [-1, 1]; the paper's ``2 - 2
    cos`` is the same objective shifted and scaled).

    The backbone can be any timm model created with ``num_classes=0`` (ResNet-50 in
    the paper); pooled features (:meth:`forward`) are its output, and the online
    classifier reuses the online backbone's features of the first view.

    The paper trains with LARS (base lr 0.2 per 256 images, weight decay 1.5e-6,
    biases and norm parameters excluded from decay and adaptation): set
    ``optim.optimizer: lars`` (timm's LARS adapts only groups with weight decay, so
    the same exclusions hold). The default config uses AdamW like the other methods.

    Raises:
        ValueError: If ``momentum_base`` is outside [0, 1].
    """

    Settings = BYOLSettings
    settings: BYOLSettings

    @classmethod
    def build_encoder(cls, name: str, kwargs: TimmKwargs) -> nn.Module:
        """A timm model with ``num_classes=0``: its output is pooled features."""
        return create_timm_model(name, **kwargs)

    def _build_modules(self, encoder: nn.Module) -> None:
        settings = self.settings
        if not 0.0 <= settings.momentum_base <= 1.0:
            raise ValueError(
                f"momentum_base must be in [0, 1], got {settings.momentum_base}."
            )
        if getattr(encoder, "num_classes", 0):
            # A classifier would give logits, not features, and never a gradient.
            reset_classifier: object = getattr(encoder, "reset_classifier", None)
            if not callable(reset_classifier):
                raise ValueError(
                    f"byol needs a backbone that outputs features; create "
                    f"{type(encoder).__name__} with num_classes=0."
                )
            reset_classifier(0)
        self.backbone = encoder
        self._feature_dim = self._pooled_width(encoder)
        self.projection_head = BYOLProjectionHead(
            self._feature_dim, settings.projection_hidden_dim, settings.projection_dim
        )
        self.prediction_head = BYOLPredictionHead(
            settings.projection_dim,
            settings.prediction_hidden_dim,
            settings.projection_dim,
        )
        # Target network: copies that only move by momentum updates.
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()

    @staticmethod
    def _pooled_width(model: nn.Module) -> int:
        # timm models with a pre-logits layer pool to head_hidden_size features.
        width = getattr(model, "head_hidden_size", None) or getattr(
            model, "num_features", None
        )
        if not isinstance(width, int):
            raise ValueError(
                f"Cannot tell the feature width of {type(model).__name__}; byol takes "
                f"timm models (with num_features)."
            )
        return width

    @property
    def feature_dim(self) -> int:
        """The backbone's pooled width (2048 for ResNet-50)."""
        return self._feature_dim

    def forward(self, images: Tensor) -> Tensor:
        """Online backbone features (B, feature_dim) of (B, C, H, W) images."""
        features: Tensor = self.backbone(images)
        return features.flatten(start_dim=1)

    @property
    def momentum(self) -> float:
        """Target momentum at the current optimiser step."""
        step = min(self.global_step, self.total_steps)  # no warning past the end
        base = self.settings.momentum_base
        return float(cosine_schedule(step, self.total_steps, base, 1.0))

    def _target(self, images: Tensor) -> Tensor:
        """Target projection (B, projection_dim), no gradient."""
        with torch.no_grad():
            features = self.backbone_momentum(images).flatten(start_dim=1)
            projection: Tensor = self.projection_head_momentum(features)
        return projection

    def method_loss(self, views: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        if len(views) < 2:
            raise ValueError(
                f"byol needs two views per image (BYOLTransform), got {len(views)}."
            )
        view_0, view_1 = views[0], views[1]  # (B, C, H, W) each
        features_0 = self.forward(view_0)  # (B, F)
        prediction_0 = self.prediction_head(self.projection_head(features_0))
        prediction_1 = self.prediction_head(self.projection_head(self.forward(view_1)))
        # Each view's prediction regresses the other view's target: (B, P) pairs.
        loss = 0.5 * (
            self.criterion(prediction_0, self._target(view_1))
            + self.criterion(prediction_1, self._target(view_0))
        )
        return loss, features_0

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Optimizer | LightningOptimizer,
        optimizer_closure: Callable[[], object] | None = None,
    ) -> None:
        """Steps the online network, then moves the target towards it.

        Here rather than in ``training_step`` so the target moves once per optimiser
        step, also with gradient accumulation.
        """
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        momentum = self.momentum
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)

    def _own_transform(self) -> ViewTransform:
        """lightly's ``BYOLTransform``: two asymmetric views (blur / solarisation)."""
        transform = byol_transform(self.input_size, self.normalize)
        return ConvertChannels(transform, self.in_chans)  # type: ignore[arg-type]

    def timm_encoder(self) -> nn.Module:
        """The online backbone (the network BYOL evaluates and keeps)."""
        return self.backbone

    def _no_weight_decay(self) -> set[str]:
        # 1-D parameters (norms, biases) are excluded by timm's factory already.
        return timm_no_weight_decay(self.backbone, "backbone.")


def byol_transform(
    input_size: int = 224, normalize: dict[str, list[float]] | None = None
) -> BYOLTransform:
    """lightly's ``BYOLTransform`` at ``input_size``: the ``byol`` transform plugin.

    lightly's class takes its size per view; this gives it the ``(input_size=...,
    normalize=...)`` constructor every ``lightly.transforms`` entry point has here.

    Args:
        input_size: Side of both views.
        normalize: ``{"mean", "std"}``; None = lightly's default (ImageNet).

    Returns:
        The two-view transform.
    """
    if normalize is None:
        return BYOLTransform(
            view_1_transform=BYOLView1Transform(input_size=input_size),
            view_2_transform=BYOLView2Transform(input_size=input_size),
        )
    return BYOLTransform(
        view_1_transform=BYOLView1Transform(input_size=input_size, normalize=normalize),
        view_2_transform=BYOLView2Transform(input_size=input_size, normalize=normalize),
    )
