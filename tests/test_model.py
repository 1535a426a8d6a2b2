import pytest
import torch

from lightly_simmim import SimMIM, SimMIMLoss, SimMIMMaskGenerator, SimMIMPredictionHead
from lightly_simmim.encoders import from_timm
from lightly_simmim.visualize import save_reconstruction_grid


def _tiny_swin() -> SimMIM:
    encoder = from_timm(
        "swin_tiny_patch4_window7_224",
        img_size=32,
        window_size=2,
        embed_dim=8,
        depths=(1, 1),
        num_heads=(1, 1),
    )
    return SimMIM(encoder)


def test_simmim__loss_backward_and_reconstruction() -> None:
    torch.manual_seed(0)
    model = _tiny_swin()
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


def test_simmim__default_head_matches_encoder() -> None:
    model = _tiny_swin()
    assert isinstance(model.head, SimMIMPredictionHead)
    assert model.head.encoder_stride == model.encoder.encoder_stride
    assert model.head.out_channels == model.encoder.in_chans
    assert "encoder.mask_token" in model.no_weight_decay()


def test_simmim__wrong_mask_grid_raises() -> None:
    model = _tiny_swin()
    with pytest.raises(ValueError, match="model_patch_size=4"):
        model(torch.randn(2, 3, 32, 32), torch.zeros(2, 4, 4, dtype=torch.bool))


def test_reconstruction_grid__writes_png(tmp_path) -> None:
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
    from PIL import Image

    with Image.open(path) as png:
        # 3 rows (original, masked, reconstruction) x 3 images of 16 px, 2 px padding.
        assert png.size == (3 * 18 + 2, 3 * 18 + 2)
