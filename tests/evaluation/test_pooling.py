"""Tests for layer / pooling selection of frozen features (FeatureExtractor)."""

from collections.abc import Callable

import pytest
import timm
import torch
from torch import nn

from lightly_simmim.encoders import SIMMIM_VIT_KWARGS, TimmMaskedEncoder, from_timm
from lightly_simmim.evaluation import FeatureExtractor, extract_features

# Tiny encoders, one per family, with their image size and per-layer widths
# (blocks for ViT / BEiT, stages for Swin / ConvNeXt).
TINY: dict[str, tuple[Callable[[], nn.Module], int, list[int]]] = {
    "vit": (
        lambda: timm.create_model(
            "vit_tiny_patch16_224",
            img_size=16,
            patch_size=4,
            embed_dim=16,
            depth=3,
            num_heads=2,
            reg_tokens=1,  # class + register token: the class token is prefix[0]
            num_classes=0,
        ),
        16,
        [16, 16, 16],
    ),
    "beit": (
        lambda: timm.create_model(
            "beit_base_patch16_224",
            img_size=16,
            patch_size=4,
            embed_dim=16,
            depth=2,
            num_heads=2,
            num_classes=0,
            **SIMMIM_VIT_KWARGS,
        ),
        16,
        [16, 16],
    ),
    "swin": (
        lambda: timm.create_model(
            "swin_tiny_patch4_window7_224",
            img_size=16,
            embed_dim=8,
            depths=(1, 1),
            num_heads=(1, 2),
            window_size=2,
            num_classes=0,
        ),
        16,
        [8, 16],
    ),
    "convnext": (
        lambda: timm.create_model(
            "convnext_atto", dims=(8, 12, 16, 24), depths=(1, 1, 1, 1), num_classes=0
        ),
        32,
        [8, 12, 16, 24],
    ),
}


def _encoder(family: str) -> tuple[TimmMaskedEncoder, torch.Tensor, list[int]]:
    build, size, widths = TINY[family]
    torch.manual_seed(0)
    encoder = from_timm(build()).eval()
    assert isinstance(encoder, TimmMaskedEncoder)
    return encoder, torch.randn(2, 3, size, size), widths


@pytest.mark.parametrize("family", sorted(TINY))
def test_feature_extractor__shapes_per_family(family: str) -> None:
    encoder, images, widths = _encoder(family)
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
def test_feature_extractor__vit_last_layer_avg_is_mean_of_normed_patch_tokens() -> None:
    encoder, images, _ = _encoder("vit")
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
def test_feature_extractor__vit_intermediate_layer_uses_final_norm() -> None:
    encoder, images, _ = _encoder("vit")
    vit = encoder.timm_model
    tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
    tokens = vit.blocks[1](vit.blocks[0](tokens))  # output of block 1 of 3
    normed = vit.norm(tokens)
    got = FeatureExtractor(encoder, layer=1, pooling="avg")(images)
    torch.testing.assert_close(got, normed[:, vit.num_prefix_tokens :].mean(dim=1))
    raw = FeatureExtractor(encoder, layer=-2, pooling="avg", norm=False)(images)
    torch.testing.assert_close(raw, tokens[:, vit.num_prefix_tokens :].mean(dim=1))


@torch.no_grad()
def test_feature_extractor__default_is_encoder_forward_for_last_layer() -> None:
    encoder, images, _ = _encoder("swin")
    expected = encoder(images)
    for layer in (None, -1, 1):
        got = FeatureExtractor(encoder, layer=layer, pooling="default")(images)
        torch.testing.assert_close(got, expected)


@torch.no_grad()
def test_feature_extractor__swin_last_stage_avg_matches_forward_masked() -> None:
    encoder, images, _ = _encoder("swin")
    got = FeatureExtractor(encoder, layer=-1, pooling="avg")(images)
    torch.testing.assert_close(got, encoder.forward_masked(images).mean(dim=(2, 3)))


def test_feature_extractor__timm_model_without_adapter_works() -> None:
    build, size, widths = TINY["convnext"]
    model = build().eval()  # a bare timm model, no SimMIM adapter
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
    family: str, layer: int | None, pooling: str, match: str
) -> None:
    encoder, _, _ = _encoder(family)
    with pytest.raises(ValueError, match=match):
        FeatureExtractor(encoder, layer=layer, pooling=pooling)  # type: ignore[arg-type]


def test_feature_extractor__plain_module_only_default() -> None:
    module = nn.Flatten()
    assert FeatureExtractor(module)(torch.ones(2, 1, 2, 2)).shape == (2, 4)
    with pytest.raises(ValueError, match="need a timm model"):
        FeatureExtractor(module, pooling="avg")
    with pytest.raises(ValueError, match="need a timm model"):
        FeatureExtractor(module, layer=-1)


def test_extract_features__layer_and_pooling_restore_mode() -> None:
    encoder, images, widths = _encoder("convnext")
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
