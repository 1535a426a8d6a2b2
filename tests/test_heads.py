import pytest
import torch

from lightly_simmim.heads import SimMIMPredictionHead


def _reference_head(features, weight, bias, stride, out_channels):
    # Written out from the paper: each position's linear map predicts its stride x
    # stride pixel block; channel k = c * s * s + i * s + j is pixel (i, j) of colour c.
    b, _, h, w = features.shape
    out = torch.zeros(b, out_channels, h * stride, w * stride, dtype=torch.float64)
    f = features.double()
    lin = (
        torch.einsum("kd,bdyx->bkyx", weight.double(), f) + bias.double()[:, None, None]
    )
    for c in range(out_channels):
        for i in range(stride):
            for j in range(stride):
                k = c * stride * stride + i * stride + j
                out[:, c, i::stride, j::stride] = lin[:, k]
    return out


@pytest.mark.parametrize("stride, out_channels", [(4, 3), (8, 1), (2, 2)])
def test_head__matches_reference(stride, out_channels) -> None:
    torch.manual_seed(0)
    head = SimMIMPredictionHead(
        in_channels=6, encoder_stride=stride, out_channels=out_channels
    )
    features = torch.randn(2, 6, 3, 5)
    out = head(features)
    assert out.shape == (2, out_channels, 3 * stride, 5 * stride)
    ref = _reference_head(
        features, head.conv.weight[:, :, 0, 0], head.conv.bias, stride, out_channels
    )
    assert torch.allclose(out.double(), ref, atol=1e-6)


def test_head__rejects_non_positive_sizes() -> None:
    with pytest.raises(ValueError, match="encoder_stride"):
        SimMIMPredictionHead(in_channels=8, encoder_stride=0)
