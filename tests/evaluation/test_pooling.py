"""Tests for layer / pooling selection of frozen features (FeatureExtractor)."""

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from lightly_simmim.encoders import TimmMaskedEncoder, from_timm
from lightly_simmim.evaluation import FeatureExtractor, extract_features
from lightly_simmim.evaluation.layers import LayerFeatures

# Per family: the tiny model's shape (beyond the shared one of conftest.py), the
# image size, and the feature width of each layer (blocks for ViT / BEiT, stages for
# Swin / ConvNeXt).
TINY: dict[str, tuple[dict[str, Any], int, list[int]]] = {
    # Class + register token: the class token is prefix[0]; three blocks to pick from.
    "vit": (
        {"img_size": 16, "patch_size": 4, "depth": 3, "reg_tokens": 1},
        16,
        [16] * 3,
    ),
    "beit": ({"img_size": 16, "patch_size": 4}, 16, [16, 16]),
    "swin": ({"img_size": 16, "window_size": 2}, 16, [16, 32]),
    # A different width per stage: a wrong stage cannot give the right shape.
    "convnext": ({"dims": (8, 12, 16, 24)}, 32, [8, 12, 16, 24]),
}

# make_encoder(family) -> (encoder in eval mode, 2 images, widths per layer)
MakeEncoder = Callable[[str], tuple[TimmMaskedEncoder, torch.Tensor, list[int]]]


@pytest.fixture
def make_encoder(tiny_timm_model: Callable[..., nn.Module]) -> MakeEncoder:
    """``(family) -> (encoder in eval mode, 2 images, widths per layer)``."""

    def create(family: str) -> tuple[TimmMaskedEncoder, torch.Tensor, list[int]]:
        shape, size, widths = TINY[family]
        torch.manual_seed(0)
        encoder = from_timm(tiny_timm_model(family, **shape)).eval()
        assert isinstance(encoder, TimmMaskedEncoder)
        return encoder, torch.randn(2, 3, size, size), widths

    return create


@pytest.mark.parametrize("family", sorted(TINY))
def test_feature_extractor__shapes_per_family(
    family: str, make_encoder: MakeEncoder
) -> None:
    encoder, images, widths = make_encoder(family)
    default = FeatureExtractor(encoder)
    assert default(images).shape == (2, encoder.num_features)
    assert default.num_features == encoder.num_features
    for layer, width in [*enumerate(widths), (-1, widths[-1]), (-2, widths[-2])]:
        extractor = FeatureExtractor(encoder, layer=layer, pooling="avg")
        assert extractor(images).shape == (2, width), layer
        assert extractor.num_features == width
    if family in ("vit", "beit"):
        cls = FeatureExtractor(encoder, layer=0, pooling="cls")
        assert cls(images).shape == (2, encoder.num_features)


@torch.no_grad()
def test_feature_extractor__vit_last_layer_avg_is_mean_of_normed_patch_tokens(
    make_encoder: MakeEncoder,
) -> None:
    encoder, images, _ = make_encoder("vit")
    vit = encoder.timm_model
    # Written out with timm's pieces: embed, blocks, final norm, drop the prefix
    # (class + register) tokens, average the patch tokens.
    tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
    tokens = vit.norm(vit.blocks(tokens))  # (2, 2 + 16, D)
    expected = tokens[:, vit.num_prefix_tokens :].mean(dim=1)
    got = FeatureExtractor(encoder, layer=-1, pooling="avg")(images)
    torch.testing.assert_close(got, expected)
    # The same as None, and as the feature map of an unmasked forward_masked.
    torch.testing.assert_close(FeatureExtractor(encoder, pooling="avg")(images), got)
    torch.testing.assert_close(
        encoder.forward_masked(images).mean(dim=(2, 3)), got, rtol=1e-5, atol=1e-5
    )
    # The class token of the same output is timm's token-pooled feature.
    cls = FeatureExtractor(encoder, layer=-1, pooling="cls")(images)
    torch.testing.assert_close(cls, tokens[:, 0])
    torch.testing.assert_close(encoder(images), cls)


@torch.no_grad()
def test_feature_extractor__vit_intermediate_layer_uses_final_norm(
    make_encoder: MakeEncoder,
) -> None:
    encoder, images, _ = make_encoder("vit")
    vit = encoder.timm_model
    tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
    tokens = vit.blocks[1](vit.blocks[0](tokens))  # output of block 1 of 3
    normed = vit.norm(tokens)
    got = FeatureExtractor(encoder, layer=1, pooling="avg")(images)
    torch.testing.assert_close(got, normed[:, vit.num_prefix_tokens :].mean(dim=1))
    raw = FeatureExtractor(encoder, layer=-2, pooling="avg", norm=False)(images)
    torch.testing.assert_close(raw, tokens[:, vit.num_prefix_tokens :].mean(dim=1))


@torch.no_grad()
def test_feature_extractor__default_is_encoder_forward_for_last_layer(
    make_encoder: MakeEncoder,
) -> None:
    encoder, images, _ = make_encoder("swin")
    expected = encoder(images)
    for layer in (None, -1, 1):
        got = FeatureExtractor(encoder, layer=layer, pooling="default")(images)
        torch.testing.assert_close(got, expected)


@torch.no_grad()
def test_feature_extractor__swin_last_stage_avg_matches_forward_masked(
    make_encoder: MakeEncoder,
) -> None:
    encoder, images, _ = make_encoder("swin")
    got = FeatureExtractor(encoder, layer=-1, pooling="avg")(images)
    torch.testing.assert_close(got, encoder.forward_masked(images).mean(dim=(2, 3)))


def test_feature_extractor__timm_model_without_adapter_works(
    tiny_timm_model: Callable[..., nn.Module],
) -> None:
    shape, size, widths = TINY["convnext"]
    model = tiny_timm_model("convnext", **shape).eval()  # no SimMIM adapter
    features = FeatureExtractor(model, layer=0, pooling="avg")(
        torch.randn(2, 3, size, size)
    )
    assert features.shape == (2, widths[0])


@pytest.mark.parametrize(
    ("family", "layer", "pooling", "match"),
    [
        ("vit", 3, "avg", "out of range"),
        ("vit", -4, "avg", "out of range"),
        ("vit", 0, "default", "only for the last layer"),
        ("swin", None, "cls", "class token"),
        ("convnext", -2, "cls", "class token"),
        ("vit", None, "max", "Unknown pooling"),
    ],
)
def test_feature_extractor__impossible_choice_raises(
    family: str, layer: int | None, pooling: str, match: str, make_encoder: MakeEncoder
) -> None:
    encoder, _, _ = make_encoder(family)
    with pytest.raises(ValueError, match=match):
        FeatureExtractor(encoder, layer=layer, pooling=pooling)  # type: ignore[arg-type]


def test_feature_extractor__plain_module_only_default() -> None:
    module = nn.Flatten()
    assert FeatureExtractor(module)(torch.ones(2, 1, 2, 2)).shape == (2, 4)
    with pytest.raises(ValueError, match="need a timm model"):
        FeatureExtractor(module, pooling="avg")
    with pytest.raises(ValueError, match="need a timm model"):
        FeatureExtractor(module, layer=-1)


def test_extract_features__layer_and_pooling_restore_mode(
    make_encoder: MakeEncoder,
) -> None:
    encoder, images, widths = make_encoder("convnext")
    batches = [(images, torch.tensor([0, 1]))] * 2
    encoder.train()
    features, labels = extract_features(encoder, batches, layer=1, pooling="avg")
    assert features.shape == (4, widths[1]) and labels.tolist() == [0, 1, 0, 1]
    assert encoder.training  # restored
    encoder.eval()
    extract_features(encoder, batches, layer=1, pooling="avg")
    assert not encoder.training  # an encoder in eval mode stays in eval mode
    # No drop path / batch statistics in play: the same as a direct eval forward.
    with torch.no_grad():
        direct = FeatureExtractor(encoder, layer=1, pooling="avg")(images)
    torch.testing.assert_close(features[:2], direct)


@pytest.mark.parametrize("family", sorted(TINY))
@torch.no_grad()
def test_layer_features__every_layer_is_that_layers_avg_extractor(
    family: str, make_encoder: MakeEncoder
) -> None:
    # One pass for all layers gives, layer by layer, what the one-layer extractor
    # computes on its own pass (stop_early there, the whole model here).
    encoder, images, widths = make_encoder(family)
    features = LayerFeatures(encoder)
    assert features.widths == widths
    assert len(set(features.names)) == len(widths)  # distinct timm module names
    parts = features.split(features(images))
    assert [part.shape for part in parts] == [(2, width) for width in widths]
    for layer, part in enumerate(parts):
        one = FeatureExtractor(encoder, layer=layer, pooling="avg")(images)
        torch.testing.assert_close(part, one, rtol=1e-5, atol=1e-5)


def test_layer_features__plain_module_is_refused() -> None:
    with pytest.raises(ValueError, match="timm model"):
        LayerFeatures(nn.Linear(3, 3))
