"""Tests for the encoder adapters and ``from_timm``.

Every encoder family registered by this package in the ``lightly.encoders`` entry
points runs the same contract tests on a tiny CPU model (32 px, depth 1-2, widths
8-32): the ``tiny_timm_model`` fixture of ``tests/conftest.py``, where a new family
needs an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from lightly_simmim import registry
from lightly_simmim.encoders import (
    BEiTEncoder,
    ConvNeXtEncoder,
    EncoderBuildError,
    MaskedEncoder,
    SwinEncoder,
    SwinV2Encoder,
    TimmMaskedEncoder,
    ViTEncoder,
    adapter_for,
    from_timm,
    resolve_timm_name,
    simmim_vit,
)
from lightly_simmim.masking import SimMIMMaskGenerator

ImgSize = tuple[int, int]
# tiny_timm_model(family, *, img_size=32, in_chans=3, **overrides) -> timm model
TinyModel = Callable[..., nn.Module]
# tiny_timm_kwargs(family, *, img_size=32, in_chans=3, **overrides) -> (name, kwargs)
TinyKwargs = Callable[..., tuple[str, dict[str, Any]]]
# make_encoder(family, size=(32, 32), in_chans=None) -> MaskedEncoder
MakeEncoder = Callable[..., MaskedEncoder]

# Beyond the shared tiny models (conftest.py): a register token besides the class
# token, so the ViT adapter has two prefix tokens to drop (DeiT distilled has its
# distillation token).
EXTRA = {"vit": {"reg_tokens": 1}}

# Input channels used by the single-configuration tests: both cases are covered.
IN_CHANS = {"vit": 3, "deit": 1, "beit": 3, "swin": 1, "swinv2": 3, "convnext": 1}

EXPECTED_ADAPTER: dict[str, type[MaskedEncoder]] = {
    "vit": ViTEncoder,
    "deit": ViTEncoder,
    "beit": BEiTEncoder,
    "swin": SwinEncoder,
    "swinv2": SwinV2Encoder,
    "convnext": ConvNeXtEncoder,
}

OWN_FAMILIES = sorted(
    name
    for name, _, value in registry.describe("encoders")
    if value.startswith("lightly_simmim.")
)
FAMILIES = registry.list_names("encoders")


@pytest.fixture
def build(tiny_timm_model: TinyModel) -> TinyModel:
    """``(family, size=(32, 32), in_chans=None) -> tiny timm model`` in eval mode,
    seeded; ``in_chans`` None is the family's in ``IN_CHANS``."""

    def create(
        family: str, size: ImgSize = (32, 32), in_chans: int | None = None
    ) -> nn.Module:
        chans = IN_CHANS.get(family, 3) if in_chans is None else in_chans
        torch.manual_seed(0)
        model = tiny_timm_model(
            family, img_size=size, in_chans=chans, **EXTRA.get(family, {})
        )
        return model.eval()

    return create


@pytest.fixture
def make_encoder(build: TinyModel) -> MakeEncoder:
    """``(family, size=(32, 32), in_chans=None) -> from_timm(build(...))``, eval."""

    def create(
        family: str, size: ImgSize = (32, 32), in_chans: int | None = None
    ) -> MaskedEncoder:
        return from_timm(build(family, size, in_chans)).eval()

    return create


def _mask(encoder: MaskedEncoder, batch: int, size: ImgSize, seed: int = 0) -> Tensor:
    generator = SimMIMMaskGenerator(
        input_size=size, mask_patch_size=16, model_patch_size=encoder.patch_size
    )
    return generator(batch, generator=torch.Generator().manual_seed(seed))


def _pixel_mask(mask: Tensor, patch_size: int) -> Tensor:
    # (B, h, w) token mask -> (B, 1, h * p, w * p) pixel mask.
    pixels = mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
    return pixels.unsqueeze(1)


def _timm_features_to_map(family: str, model: nn.Module, features: Tensor) -> Tensor:
    """timm's ``forward_features`` output as (B, C, h, w), per family layout."""
    if family in ("swin", "swinv2"):
        return features.permute(0, 3, 1, 2)  # NHWC -> NCHW
    if family == "convnext":
        return features
    tokens = features[:, model.num_prefix_tokens :]  # (B, h * w, D)
    side = int(tokens.shape[1] ** 0.5)
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


def test_registry__every_own_family_has_a_tiny_model(build: TinyModel) -> None:
    assert set(OWN_FAMILIES) <= set(FAMILIES)  # all of them import
    for family in OWN_FAMILIES:
        assert isinstance(build(family), nn.Module)  # fails the test if missing


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_masked__feature_map_shape(
    family: str, in_chans: int, make_encoder: MakeEncoder
) -> None:
    encoder = make_encoder(family, in_chans=in_chans)
    images = torch.randn(2, in_chans, 32, 32)
    mask = _mask(encoder, 2, (32, 32))
    # The generator's mask covers the whole token grid.
    assert mask.shape == (2, 32 // encoder.patch_size, 32 // encoder.patch_size)
    out = encoder.forward_masked(images, mask)
    stride = encoder.encoder_stride
    assert encoder.in_chans == in_chans
    assert out.shape == (2, encoder.num_features, 32 // stride, 32 // stride)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_forward__pooled_shape(family: str, make_encoder: MakeEncoder) -> None:
    encoder = make_encoder(family)
    pooled = encoder(torch.randn(2, encoder.in_chans, 32, 32))
    assert pooled.shape == (2, encoder.num_features)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_masked__no_mask_matches_timm_forward_features(
    family: str, make_encoder: MakeEncoder
) -> None:
    encoder = make_encoder(family)
    assert isinstance(encoder, TimmMaskedEncoder)
    model = encoder.timm_model
    images = torch.randn(2, encoder.in_chans, 32, 32)
    with torch.no_grad():
        expected = _timm_features_to_map(family, model, model.forward_features(images))
        out = encoder.forward_masked(images)
        # An all-False mask is the same as no mask.
        unmasked = torch.zeros(2, 32 // encoder.patch_size, 32 // encoder.patch_size)
        out_all_false = encoder.forward_masked(images, unmasked.bool())
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out_all_false, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_backward__reaches_every_parameter(
    family: str, make_encoder: MakeEncoder
) -> None:
    encoder = make_encoder(family).train()
    images = torch.randn(2, encoder.in_chans, 32, 32)
    mask = _mask(encoder, 2, (32, 32))
    assert mask.any()
    features = encoder.forward_masked(images, mask)
    pooled = encoder(images)
    # Random weights so that no gradient cancels by symmetry.
    loss = (features * torch.randn_like(features)).sum()
    loss = loss + (pooled * torch.randn_like(pooled)).sum()
    loss.backward()
    missing = [
        name
        for name, param in encoder.named_parameters()
        if param.requires_grad and param.grad is None
    ]
    assert not missing
    assert encoder.mask_token.grad is not None
    assert encoder.mask_token.grad.abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_masked__masked_pixels_do_not_matter(
    family: str, make_encoder: MakeEncoder
) -> None:
    encoder = make_encoder(family)
    images = torch.randn(2, encoder.in_chans, 32, 32)
    mask = _mask(encoder, 2, (32, 32))
    pixels = _pixel_mask(mask, encoder.patch_size)  # (B, 1, H, W)
    # New values at masked pixels only.
    changed = torch.where(pixels, torch.randn_like(images) * 10, images)
    assert not torch.equal(changed, images)
    with torch.no_grad():
        out = encoder.forward_masked(images, mask)
        out_changed = encoder.forward_masked(changed, mask)
    torch.testing.assert_close(out_changed, out)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_masked__unmasked_pixel_matters(
    family: str, make_encoder: MakeEncoder
) -> None:
    encoder = make_encoder(family)
    images = torch.randn(2, encoder.in_chans, 32, 32)
    mask = _mask(encoder, 2, (32, 32))
    pixels = _pixel_mask(mask, encoder.patch_size)
    row, col = (~pixels[0, 0]).nonzero()[0].tolist()  # an unmasked pixel of image 0
    changed = images.clone()
    changed[0, :, row, col] += 5.0
    with torch.no_grad():
        out = encoder.forward_masked(images, mask)
        out_changed = encoder.forward_masked(changed, mask)
    assert not torch.allclose(out_changed[0], out[0])
    torch.testing.assert_close(out_changed[1], out[1])  # images are independent


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_masked__wrong_inputs_raise(
    family: str, make_encoder: MakeEncoder
) -> None:
    encoder = make_encoder(family)
    images = torch.randn(2, encoder.in_chans, 32, 32)
    grid = 32 // encoder.patch_size
    with pytest.raises(ValueError, match="model_patch_size"):
        encoder.forward_masked(images, torch.zeros(2, grid * 2, grid, dtype=torch.bool))
    with pytest.raises(ValueError, match="model_patch_size"):
        encoder.forward_masked(images, torch.zeros(3, grid, grid, dtype=torch.bool))
    with pytest.raises(ValueError, match="Expected images"):
        encoder.forward_masked(torch.randn(2, encoder.in_chans + 1, 32, 32))


@pytest.mark.parametrize("family", FAMILIES)
def test_no_weight_decay__names_are_parameters(
    family: str, make_encoder: MakeEncoder
) -> None:
    encoder = make_encoder(family)
    names = encoder.no_weight_decay()
    params = dict(encoder.named_parameters(remove_duplicate=False))
    assert "mask_token" in names
    assert names <= set(params)
    # Everything timm itself excludes is excluded here too, under this module's names.
    assert isinstance(encoder, TimmMaskedEncoder)
    model = encoder.timm_model
    timm_names = (
        set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    )
    excluded = {id(params[name]) for name in names}
    for name, param in model.named_parameters():
        if name in timm_names:
            assert id(param) in excluded, name
    # Ordinary weights still decay.
    assert any(p.ndim >= 2 and id(p) not in excluded for p in params.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_masked__non_square_images(
    family: str, make_encoder: MakeEncoder
) -> None:
    # Fixed-size models are built for the non-square size (see the adapters' docs).
    encoder = make_encoder(family, size=(32, 64))
    images = torch.randn(2, encoder.in_chans, 32, 64)
    mask = _mask(encoder, 2, (32, 64))
    out = encoder.forward_masked(images, mask)
    stride = encoder.encoder_stride
    assert out.shape == (2, encoder.num_features, 32 // stride, 64 // stride)
    assert encoder(images).shape == (2, encoder.num_features)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_for__picks_the_family_adapter(family: str, build: TinyModel) -> None:
    model = build(family)
    expected = EXPECTED_ADAPTER.get(family)
    if expected is None:
        pytest.skip(f"no expected adapter for third-party family {family!r}")
    assert adapter_for(model) is expected
    # No other adapter of this package claims the model (a Beit is no ViT, ...).
    others = {cls for cls in EXPECTED_ADAPTER.values() if cls is not expected}
    assert not [cls for cls in others if cls.supports(model)]


def test_from_timm__instance_is_wrapped_not_copied(tiny_timm_model: TinyModel) -> None:
    model = tiny_timm_model("vit", num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items() if "head" not in k}
    encoder = from_timm(model)
    assert isinstance(encoder, ViTEncoder)
    assert encoder.timm_model is model
    # The classifier is removed; every other weight is kept as it was (no re-init).
    assert model.num_classes == 0
    assert isinstance(model.head, nn.Identity)
    after = model.state_dict()
    assert before.keys() == {k for k in after if "head" not in k}
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("family", sorted(EXPECTED_ADAPTER))
def test_from_timm__by_name(family: str, tiny_timm_kwargs: TinyKwargs) -> None:
    name, kwargs = tiny_timm_kwargs(family, in_chans=1)
    encoder = from_timm(name, **kwargs)
    assert type(encoder) is EXPECTED_ADAPTER[family]
    assert encoder.in_chans == 1
    assert getattr(encoder.timm_model, "num_classes", None) == 0


@pytest.mark.parametrize(
    ("name", "base", "overrides"),
    [
        (
            "swin_base_patch4_window6_192",
            "swin_base_patch4_window7_224",
            {"window_size": 6, "img_size": 192},
        ),
        (
            "swin_tiny_patch4_window6_192",
            "swin_tiny_patch4_window7_224",
            {"window_size": 6, "img_size": 192},
        ),
        # Nearest registered image size wins: window12_192 over window8_256.
        (
            "swinv2_base_window6_192",
            "swinv2_base_window12_192",
            {"window_size": 6, "img_size": 192},
        ),
        ("vit_base_patch16_192", "vit_base_patch16_224", {"img_size": 192}),
        ("vit_base_patch16_224", "vit_base_patch16_224", {}),
        ("vit_base_patch16_224.augreg_in21k", "vit_base_patch16_224.augreg_in21k", {}),
    ],
)
def test_resolve_timm_name__registered_and_derived_names(
    name: str, base: str, overrides: dict[str, int]
) -> None:
    assert resolve_timm_name(name) == (base, overrides)


def test_from_timm__derived_window_name_builds_that_model(
    tiny_timm_kwargs: TinyKwargs,
) -> None:
    # Tiny widths; image and window size are the name's.
    _, kwargs = tiny_timm_kwargs("swin", img_size=None, window_size=None)
    encoder = from_timm("swin_tiny_patch4_window6_192", **kwargs)
    model = encoder.timm_model
    assert isinstance(encoder, SwinEncoder)
    assert tuple(model.patch_embed.img_size) == (192, 192)
    assert tuple(model.layers[0].blocks[0].window_size) == (6, 6)
    mask = torch.zeros(1, 48, 48, dtype=torch.bool)
    out = encoder.forward_masked(torch.randn(1, 3, 192, 192), mask)
    assert out.shape == (1, encoder.num_features, 24, 24)  # two stages: stride 8


def test_from_timm__unknown_name_raises() -> None:
    with pytest.raises(ValueError, match=r"'not_a_model_7'.*timm\.list_models"):
        from_timm("not_a_model_7")
    with pytest.raises(ValueError, match="no_such_family_patch4_window6_192"):
        resolve_timm_name("no_such_family_patch4_window6_192")


_TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1}


@pytest.mark.parametrize(
    ("kwargs", "cause", "reason"),
    [
        ({"dept": 2}, TypeError, "unexpected keyword argument 'dept'"),
        ({"depth": "abc"}, TypeError, "unsupported operand"),
        ({"num_heads": 5}, AssertionError, "divisible by num_heads"),
        ({"num_heads": 0}, ZeroDivisionError, "modulo by zero"),
        ({"img_size": [32]}, IndexError, "out of range"),
        ({"global_pool": "bogus"}, AssertionError, "pooling"),
    ],
    ids=[
        "misspelt",
        "wrong-type",
        "heads-do-not-divide",
        "zero-heads",
        "short-size",
        "unknown-pool",
    ],
)
def test_from_timm__arguments_timm_rejects_raise_one_error(
    kwargs: dict[str, Any], cause: type[Exception], reason: str
) -> None:
    """Whatever timm's constructor raises for the user's arguments becomes one
    EncoderBuildError (a ValueError: a usage error for the CLI) naming them."""
    arguments = {**_TINY_VIT, **kwargs}
    with pytest.raises(EncoderBuildError) as caught:
        from_timm("vit_tiny_patch16_224", **arguments)
    message = str(caught.value)
    assert "timm cannot build 'vit_tiny_patch16_224'" in message
    assert repr(arguments) in message and reason in message
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value.__cause__, cause)


def test_from_timm__conflicting_size_kwarg_raises() -> None:
    with pytest.raises(ValueError, match="img_size=192"):
        from_timm("swin_tiny_patch4_window6_192", img_size=224)


def test_from_timm__kwargs_with_an_instance_raise(
    build: TinyModel,
) -> None:
    model = build("convnext")
    with pytest.raises(ValueError, match="in_chans"):
        from_timm(model, in_chans=1)


def test_from_timm__unsupported_model_lists_families(
    tiny_timm_model: TinyModel,
) -> None:
    model = tiny_timm_model("resnet")
    with pytest.raises(ValueError, match="ResNet") as info:
        from_timm(model)
    for family in OWN_FAMILIES:
        assert family in str(info.value)


def test_vit_encoder__dynamic_img_size_square_only(
    tiny_timm_kwargs: TinyKwargs,
) -> None:
    name, kwargs = tiny_timm_kwargs("vit", dynamic_img_size=True)  # 8 px patches
    encoder = from_timm(name, **kwargs)
    assert encoder.num_features == 16
    images = torch.randn(1, 3, 64, 64)
    out = encoder.forward_masked(images, torch.ones(1, 8, 8).bool())
    assert out.shape == (1, 16, 8, 8)
    # The position embedding is resampled as timm does it.
    with torch.no_grad():
        expected = encoder.timm_model.forward_features(images)[:, 1:]  # (1, 64, 16)
        out = encoder.forward_masked(images)
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), expected)
    with pytest.raises(ValueError, match="square"):
        encoder.forward_masked(torch.randn(1, 3, 32, 64))
    # timm's own pooled forward handles any size.
    assert encoder(torch.randn(1, 3, 32, 64)).shape == (1, 16)


@pytest.mark.parametrize("family", ["vit", "beit", "swin"])
def test_forward_masked__fixed_size_model_rejects_other_sizes(
    family: str, make_encoder: MakeEncoder
) -> None:
    encoder = make_encoder(family)
    with pytest.raises(ValueError, match="img_size"):
        encoder.forward_masked(torch.randn(1, encoder.in_chans, 64, 64))


def test_swin_encoder__dynamic_img_size_any_multiple_of_stride(
    tiny_timm_kwargs: TinyKwargs,
) -> None:
    name, kwargs = tiny_timm_kwargs("swin", dynamic_img_size=True)  # built for 32
    encoder = from_timm(name, **kwargs)
    out = encoder.forward_masked(
        torch.randn(1, 3, 48, 64), torch.ones(1, 12, 16).bool()
    )
    assert out.shape == (1, encoder.num_features, 6, 8)  # stride 8


def test_simmim_vit__builds_the_paper_architecture() -> None:
    encoder = simmim_vit(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2)
    model = encoder.timm_model
    assert model.pos_embed is None
    assert model.rel_pos_bias is not None
    assert all(
        block.attn.relative_position_bias_table is None for block in model.blocks
    )
    torch.testing.assert_close(model.blocks[0].gamma_1, torch.full((16,), 0.1))
    assert encoder.forward_masked(torch.randn(1, 3, 32, 32)).shape == (1, 16, 4, 4)


@pytest.mark.parametrize("family", ["vit", "beit", "swin", "convnext"])
def test_set_grad_checkpointing__same_output_and_gradients(
    family: str, make_encoder: MakeEncoder
) -> None:
    encoder = make_encoder(family)
    assert isinstance(encoder, TimmMaskedEncoder)
    images = torch.randn(2, encoder.in_chans, 32, 32)
    mask = _mask(encoder, 2, (32, 32))
    expected = encoder.forward_masked(images, mask)
    expected.sum().backward()
    grad = encoder.mask_token.grad.clone()
    encoder.zero_grad()
    encoder.set_grad_checkpointing(True)
    out = encoder.forward_masked(images, mask)
    out.sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(encoder.mask_token.grad, grad)
