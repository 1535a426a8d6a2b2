import numpy as np
import pytest
import torch

from lightly_simmim.loss import SimMIMLoss, normalize_target


def _reference_loss(rec, img, mask, l2=False):
    # Paper/official formula written out with loops in numpy:
    # sum over masked pixels of |x - x_rec| (all channels) / (#masked pixels + 1e-5) / C
    rec, img, mask = rec.double().numpy(), img.double().numpy(), mask.numpy()
    b, c, h, w = img.shape
    patch = h // mask.shape[1]
    total, count = 0.0, 0.0
    for n in range(b):
        for y in range(h):
            for x in range(w):
                if mask[n, y // patch, x // patch]:
                    count += 1
                    diff = img[n, :, y, x] - rec[n, :, y, x]
                    total += float(np.sum(diff**2 if l2 else np.abs(diff)))
    return total / (count + 1e-5) / c


@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("channels, size, patch", [(3, 16, 4), (1, 8, 2), (2, 12, 3)])
def test_loss__matches_reference(l2, channels, size, patch) -> None:
    torch.manual_seed(1)
    img = torch.randn(2, channels, size, size)
    rec = torch.randn(2, channels, size, size)
    mask = torch.rand(2, size // patch, size // patch) > 0.5
    loss = SimMIMLoss(loss_type="l2" if l2 else "l1")(rec, img, mask)
    assert abs(loss.item() - _reference_loss(rec, img, mask, l2)) < 1e-6


def test_loss__only_masked_pixels_count() -> None:
    img = torch.randn(1, 3, 8, 8)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, 0] = True
    rec = img.clone()
    rec[..., 2:, :] += 100.0  # garbage only where nothing is masked
    assert SimMIMLoss()(rec, img, mask).item() == 0.0


def test_loss__empty_mask_gives_zero_not_nan() -> None:
    img = torch.randn(2, 3, 8, 8)
    rec = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss = SimMIMLoss()(rec, img, torch.zeros(2, 4, 4, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(rec.grad).all()


def test_loss__norm_target_matches_reference() -> None:
    torch.manual_seed(2)
    img = torch.randn(1, 2, 7, 6)
    window = 3
    out = normalize_target(img, window)
    arr = img.double().numpy()
    for c in range(2):
        for y in range(7):
            for x in range(6):
                box = arr[0, c, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2]
                ref = (arr[0, c, y, x] - box.mean()) / np.sqrt(box.var(ddof=1) + 1e-6)
                assert abs(out[0, c, y, x].item() - ref) < 1e-5


def test_loss__norm_target_option_changes_target() -> None:
    img = torch.rand(1, 1, 8, 8) * 10
    mask = torch.ones(1, 2, 2, dtype=torch.bool)
    plain = SimMIMLoss()(torch.zeros_like(img), img, mask)
    normed = SimMIMLoss(norm_target_window=3)(torch.zeros_like(img), img, mask)
    expected = normalize_target(img, 3).abs().sum() / (64 + 1e-5)
    assert abs(normed.item() - expected.item()) < 1e-5
    assert plain.item() != pytest.approx(normed.item())


@pytest.mark.parametrize(
    "rec_shape, mask_shape, match",
    [
        ((1, 3, 8, 8), (1, 3, 4), "square tokens"),
        ((1, 3, 8, 4), (1, 4, 4), "same"),
        ((1, 3, 8, 8), (2, 4, 4), "batch size"),
    ],
)
def test_loss__bad_shapes_raise(rec_shape, mask_shape, match) -> None:
    img = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match=match):
        SimMIMLoss()(
            torch.zeros(rec_shape), img, torch.zeros(mask_shape, dtype=torch.bool)
        )


def test_loss__bad_options_raise() -> None:
    with pytest.raises(ValueError, match="loss_type"):
        SimMIMLoss(loss_type="huber")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="odd"):
        SimMIMLoss(norm_target_window=4)
