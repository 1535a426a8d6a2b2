from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from lightly_simmim import SimMIM, SimMIMLoss, SimMIMMaskGenerator, SimMIMPredictionHead
from lightly_simmim.encoders import from_timm
from lightly_simmim.loss import normalize_target
from lightly_simmim.visualize import save_reconstruction_grid


@pytest.fixture
def tiny_swin(tiny_timm_model: Callable[..., nn.Module]) -> SimMIM:
    """SimMIM on a two-stage Swin (4 px patches, stride 8) for 32 px RGB images."""
    torch.manual_seed(0)
    return SimMIM(from_timm(tiny_timm_model("swin")))


def test_simmim__loss_backward_and_reconstruction(tiny_swin: SimMIM) -> None:
    model = tiny_swin
    assert model.encoder.encoder_stride == 8  # two stages: 4 * 2
    images = torch.randn(2, 3, 32, 32)
    mask = SimMIMMaskGenerator(32, 8, model.encoder.patch_size, 0.6)(2)
    loss = model(images, mask)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.encoder.mask_token.grad is not None
    rec = model.reconstruct(images, mask)
    assert rec.shape == images.shape
    # forward is exactly head + loss on the reconstruction (eval: no drop path).
    model.eval()
    with torch.no_grad():
        expected = SimMIMLoss()(model.reconstruct(images, mask), images, mask)
        assert torch.allclose(model(images, mask), expected, atol=1e-6)


def _reference_loss(
    model: SimMIM, images: torch.Tensor, mask: torch.Tensor, window: int | None
) -> torch.Tensor:
    """The paper's formulation, written out: the head on the whole feature map,
    PixelShuffle to the image, the token mask upsampled to pixels, masked L1."""
    features = model.encoder.forward_masked(images, mask)  # (B, D, h, w)
    reconstruction = nn.functional.pixel_shuffle(
        model.head.conv(features), model.encoder.encoder_stride
    )  # (B, C, H, W)
    patch = images.shape[-1] // mask.shape[-1]
    pixels = mask.repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    weight = pixels.unsqueeze(1).float()  # (B, 1, H, W)
    target = images
    if window is not None:
        target = normalize_target(images, window)
    error = (target - reconstruction).abs() * weight
    return error.sum() / (weight.sum() + 1e-5) / images.shape[1]


@pytest.mark.parametrize("family", ["vit", "swin", "convnext"])
@pytest.mark.parametrize("window", [None, 5])
def test_simmim__masked_positions_path_equals_the_reference(
    family: str, window: int | None, tiny_timm_model: Callable[..., nn.Module]
) -> None:
    torch.manual_seed(0)
    model = SimMIM(from_timm(tiny_timm_model(family)), loss=SimMIMLoss("l1", window))
    model.eval()  # no drop path: the two computations see the same network
    stride = model.encoder.encoder_stride
    # Mask cells of one or two strides: every feature position wholly masked or not.
    cell = 2 * stride if 2 * stride < 32 else stride
    generator = SimMIMMaskGenerator(32, cell, model.encoder.patch_size, 0.6)
    images, mask = torch.randn(3, 3, 32, 32), generator(3)
    num_masked = generator.num_masked_cells * (cell // stride) ** 2
    parameters = [p for p in model.parameters() if p.requires_grad]
    fast = model(images, mask, num_masked=num_masked)
    fast_grads = torch.autograd.grad(fast, parameters, allow_unused=True)
    reference = _reference_loss(model, images, mask, window)
    reference_grads = torch.autograd.grad(reference, parameters, allow_unused=True)
    assert torch.allclose(fast, reference, atol=1e-5, rtol=0)
    for mine, theirs in zip(fast_grads, reference_grads, strict=True):
        if theirs is None:
            assert mine is None or not mine.any()
            continue
        assert mine is not None
        assert torch.allclose(mine, theirs, atol=1e-5, rtol=1e-4)
    # And the default path (no count given) is the reference too.
    assert torch.allclose(model(images, mask), reference, atol=1e-6)


def test_simmim__plugin_loss_sees_the_whole_reconstruction() -> None:
    seen: list[tuple[int, ...]] = []

    class Recording(nn.Module):
        def forward(
            self, reconstruction: torch.Tensor, images: torch.Tensor, mask: torch.Tensor
        ) -> torch.Tensor:
            seen.append(tuple(reconstruction.shape))
            return reconstruction.mean()

    encoder = from_timm(
        "vit_tiny_patch16_224",
        img_size=16,
        patch_size=4,
        embed_dim=16,
        depth=1,
        num_heads=2,
    )
    model = SimMIM(encoder, loss=Recording())
    mask = SimMIMMaskGenerator(16, 8, 4, 0.5)(2)
    model(torch.randn(2, 3, 16, 16), mask, num_masked=4)
    assert seen == [(2, 3, 16, 16)]


def test_simmim__default_head_matches_encoder(tiny_swin: SimMIM) -> None:
    model = tiny_swin
    assert isinstance(model.head, SimMIMPredictionHead)
    assert model.head.encoder_stride == model.encoder.encoder_stride
    assert model.head.out_channels == model.encoder.in_chans
    assert "encoder.mask_token" in model.no_weight_decay()


def test_simmim__wrong_mask_grid_raises(tiny_swin: SimMIM) -> None:
    model = tiny_swin
    with pytest.raises(ValueError, match="model_patch_size=4"):
        model(torch.randn(2, 3, 32, 32), torch.zeros(2, 4, 4, dtype=torch.bool))


def test_reconstruction_grid__writes_png(tmp_path: Path) -> None:
    images = torch.rand(3, 1, 16, 16)
    mask = torch.zeros(3, 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    path = save_reconstruction_grid(
        tmp_path / "sub" / "rec.png",
        images,
        mask,
        torch.zeros_like(images),
        [0.5],
        [0.5],
    )
    with Image.open(path) as png:
        # 3 rows (original, masked, reconstruction) x 3 images of 16 px, 2 px padding.
        assert png.size == (3 * 18 + 2, 3 * 18 + 2)
