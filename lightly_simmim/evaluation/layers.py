"""Per-layer probes: kNN and a linear probe on every block / stage of an encoder.

The last layer of a pixel-regressing encoder is its least semantic one; SimMIM's
authors probe an intermediate block for their linear numbers. :func:`layer_probes`
extracts the features of **every** layer timm's ``forward_intermediates`` returns
(one per transformer block for ViT / DeiT / BEiT, one per stage for Swin /
ConvNeXt) in one pass over each split, pools each layer the same way for every
method (``pooling="avg"`` of :class:`~lightly_simmim.evaluation.pooling.
FeatureExtractor`: the mean over spatial positions of the tokens, with the model's
final norm where timm applies it), and runs the kNN classifier and the linear probe
on each layer's cached features.

The result names the best layer of each probe; the last layer here is pooled
``"avg"`` and can differ slightly from the ``knn`` / ``linear`` protocols' default
pooling (the encoder's own ``forward``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightly_simmim.evaluation.features import predict_train_test
from lightly_simmim.evaluation.knn import knn_accuracy
from lightly_simmim.evaluation.linear import linear_probe
from lightly_simmim.evaluation.pooling import num_layers, timm_model_of
from lightly_simmim.evaluation.recipes import LinearRecipe
from lightly_simmim.evaluation.results import JsonDict
from lightly_simmim.evaluation.trainers import TrainerFactory

__all__ = ["LayerFeatures", "best_layer", "layer_probes"]


class LayerFeatures(nn.Module):
    """Every layer's average-pooled features in one forward pass, concatenated.

    Args:
        encoder: A SimMIM encoder adapter or a timm model (``forward_intermediates``).
        norm: Apply the model's final norm as timm's ``forward_intermediates`` does.

    Raises:
        ValueError: If ``encoder`` is not (and does not wrap) a timm model.
    """

    def __init__(self, encoder: nn.Module, norm: bool = True) -> None:
        super().__init__()
        model = timm_model_of(encoder)
        if model is None:
            raise ValueError(
                f"Per-layer probes need a timm model (or a SimMIM encoder adapter "
                f"wrapping one), got {type(encoder).__name__}."
            )
        self.encoder = encoder
        self.norm = norm
        info: Any = model.feature_info
        count = num_layers(model)
        #: Channels of each layer, in order: how :meth:`split` cuts the features.
        self.widths = [int(info[i]["num_chs"]) for i in range(count)]
        #: timm's module name of each layer (``blocks.3``, ``layers.1``, ...).
        self.names = [str(info[i].get("module", f"layer {i}")) for i in range(count)]

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, sum of the layers' channels), layer after layer."""
        model: Any = timm_model_of(self.encoder)  # forward_intermediates is untyped
        maps: list[Tensor] = model.forward_intermediates(
            images,
            indices=len(self.widths),
            norm=self.norm,
            intermediates_only=True,
        )
        return torch.cat([feature_map.mean(dim=(2, 3)) for feature_map in maps], 1)

    def split(self, features: Tensor) -> tuple[Tensor, ...]:
        """(N, sum of widths) -> one (N, width_i) tensor per layer."""
        return torch.split(features, self.widths, dim=1)


def best_layer(layers: Sequence[JsonDict], probe: str) -> JsonDict:
    """The layer whose ``<probe>_top1`` is highest (the deepest one on a tie)."""
    index = max(range(len(layers)), key=lambda i: (layers[i][f"{probe}_top1"], i))
    return dict(layers[index])


def layer_probes(
    encoder: nn.Module,
    train_dataset: Dataset[tuple[Any, int]],
    test_dataset: Dataset[tuple[Any, int]],
    num_classes: int,
    recipe: LinearRecipe | None = None,
    *,
    knn_k: int = 20,
    knn_temperature: float = 0.07,
    transform: Callable[[Any], Any] | None = None,
    extract_batch_size: int = 256,
    num_workers: int = 0,
    trainer: TrainerFactory | None = None,
    seed: int = 0,
) -> JsonDict:
    """kNN and the linear probe on each layer's average-pooled features.

    Args:
        encoder: A SimMIM encoder adapter or a timm model.
        train_dataset: ``(image, label)`` pairs: the kNN memory bank and the probe's
            training set.
        test_dataset: ``(image, label)`` pairs both are evaluated on.
        num_classes: Number of classes.
        recipe: The linear probe (its ``layer`` / ``pooling`` are not used: every
            layer is probed, average-pooled); None = the defaults.
        knn_k: Neighbours of the kNN classifier.
        knn_temperature: Temperature of its votes.
        transform: Applied to each image (the evaluation transform).
        extract_batch_size: Images per process and forward pass.
        num_workers: Data loader workers during extraction.
        trainer: Makes the Trainer that extracts the features; None = one device.
        seed: Seed of every layer's linear probe.

    Returns:
        ``{"layers": [{"layer", "module", "knn_top1", "knn_top5", "linear_top1",
        "linear_top5"}, ...], "best_knn": <a layer>, "best_linear": <a layer>,
        "top1", "top5"}``; ``top1`` / ``top5`` are the best layer's linear probe.

    Raises:
        ValueError: See :class:`LayerFeatures` and :func:`linear_probe`.
    """
    recipe = recipe or LinearRecipe()
    features = LayerFeatures(encoder)
    extractor, (train_x, train_y), (test_x, test_y) = predict_train_test(
        features,
        train_dataset,
        test_dataset,
        trainer,
        transform=transform,
        batch_size=extract_batch_size,
        num_workers=num_workers,
    )
    device = extractor.strategy.root_device
    layers = []
    splits = zip(features.split(train_x), features.split(test_x), strict=True)
    for index, (train_layer, test_layer) in enumerate(splits):
        knn = knn_accuracy(
            train_layer,
            train_y,
            test_layer,
            test_y,
            num_classes=num_classes,
            k=knn_k,
            temperature=knn_temperature,
        )
        linear = linear_probe(
            train_layer,
            train_y,
            test_layer,
            test_y,
            num_classes,
            recipe,
            seed=seed,
            device=device,
        )
        layers.append(
            {
                "layer": index,
                "module": features.names[index],
                "knn_top1": knn["top1"],
                "knn_top5": knn["top5"],
                "linear_top1": linear["top1"],
                "linear_top5": linear["top5"],
            }
        )
    best = best_layer(layers, "linear")
    return {
        "layers": layers,
        "best_knn": best_layer(layers, "knn"),
        "best_linear": best,
        "top1": best["linear_top1"],
        "top5": best["linear_top5"],
        "pooling": "avg",
        "k": knn_k,
        "temperature": knn_temperature,
        "train_images": len(train_y),
        "test_images": len(test_y),
    }
