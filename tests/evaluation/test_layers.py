"""Per-layer probes (``lightly_simmim.evaluation.layers``): kNN and the linear probe
on every block, read against the one-layer pieces they are made of."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lightly_simmim.encoders import from_timm
from lightly_simmim.evaluation import FeatureExtractor, extract_features
from lightly_simmim.evaluation.knn import knn_accuracy
from lightly_simmim.evaluation.layers import best_layer, layer_probes
from lightly_simmim.evaluation.linear import linear_probe
from lightly_simmim.evaluation.recipes import LinearRecipe


def _split(count: int, seed: int) -> list[tuple[torch.Tensor, int]]:
    """Images whose label is the brightest quadrant (4 classes)."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for index in range(count):
        label = index % 4
        image = torch.rand(3, 16, 16, generator=generator)
        row, col = divmod(label, 2)
        image[:, 8 * row : 8 * row + 8, 8 * col : 8 * col + 8] += 1.0
        items.append((image, label))
    return items


def test_layer_probes__each_layer_is_the_one_layer_knn_and_probe(
    tiny_timm_model: Callable[..., nn.Module],
) -> None:
    torch.manual_seed(0)
    encoder = from_timm(
        tiny_timm_model("vit", img_size=16, patch_size=4, depth=3)
    ).eval()
    train, test = _split(48, seed=1), _split(24, seed=2)
    recipe = LinearRecipe(epochs=5, batch_size=16, lr=0.1)
    result = layer_probes(
        encoder, train, test, 4, recipe, knn_k=5, knn_temperature=0.1, seed=3
    )
    assert [layer["layer"] for layer in result["layers"]] == [0, 1, 2]
    assert [layer["module"] for layer in result["layers"]] == [
        "blocks.0",
        "blocks.1",
        "blocks.2",
    ]
    for index, layer in enumerate(result["layers"]):
        extractor = FeatureExtractor(encoder, layer=index, pooling="avg")
        (train_x, train_y), (test_x, test_y) = (
            extract_features(
                extractor,
                [(torch.stack([x for x, _ in s]), torch.tensor([y for _, y in s]))],
            )
            for s in (train, test)
        )
        knn = knn_accuracy(train_x, train_y, test_x, test_y, 4, k=5, temperature=0.1)
        linear = linear_probe(train_x, train_y, test_x, test_y, 4, recipe, seed=3)
        assert layer["knn_top1"] == knn["top1"], index
        assert abs(layer["linear_top1"] - linear["top1"]) <= 100 / 24 + 1e-9, index
    best = max(result["layers"], key=lambda layer: layer["linear_top1"])
    assert result["top1"] == best["linear_top1"]
    assert result["best_linear"]["linear_top1"] == best["linear_top1"]
    assert result["train_images"] == 48 and result["test_images"] == 24


def test_best_layer__highest_top1_and_the_deepest_on_a_tie() -> None:
    layers = [
        {"layer": 0, "knn_top1": 50.0, "linear_top1": 70.0},
        {"layer": 1, "knn_top1": 60.0, "linear_top1": 70.0},
        {"layer": 2, "knn_top1": 55.0, "linear_top1": 65.0},
    ]
    assert best_layer(layers, "knn")["layer"] == 1
    assert best_layer(layers, "linear")["layer"] == 1
