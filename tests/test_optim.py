"""Tests for lightly_simmim.optim: weight-decay exemptions, fused rule, clipping."""

import math

import pytest
import torch
from torch import nn

from lightly_simmim.optim import clip_gradients, create_optimizer, fused_allowed


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 4))
        self.table = nn.Parameter(torch.zeros(3, 4))
        self.linear = nn.Linear(4, 2)

    def no_weight_decay(self) -> set[str]:
        return {"token"}


def _decay_of(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, float]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(p)]: g["weight_decay"]
        for g in optimizer.param_groups
        for p in g["params"]
    }


@pytest.mark.parametrize("layer_decay", [None, 0.5])
def test_create_optimizer__explicit_exemptions_replace_the_models_own(
    layer_decay: float | None,
) -> None:
    model = _Net()
    own = _decay_of(create_optimizer(model, lr=1e-3, weight_decay=0.1), model)
    assert own == {"token": 0.0, "table": 0.1, "linear.weight": 0.1, "linear.bias": 0.0}
    explicit = create_optimizer(
        model,
        lr=1e-3,
        weight_decay=0.1,
        layer_decay=layer_decay,
        no_weight_decay={"table"},
    )
    assert _decay_of(explicit, model) == {
        "token": 0.1,
        "table": 0.0,
        "linear.weight": 0.1,
        "linear.bias": 0.0,
    }


def test_fused_allowed__only_fp16_with_clipping_forbids_fusing() -> None:
    assert fused_allowed("16-mixed", 1.0) is False
    assert fused_allowed("16-mixed", None) is None
    assert fused_allowed("bf16-mixed", 1.0) is None
    assert fused_allowed("32-true", 5.0) is None


def test_clip_gradients__norm_and_value_match_their_formulas() -> None:
    a, b, unused = (nn.Parameter(torch.zeros(2)) for _ in range(3))
    a.grad = torch.tensor([3.0, 0.0])
    b.grad = torch.tensor([0.0, 4.0])
    clip_gradients([a, b, unused], 1.0, None)  # unused has no gradient: skipped
    total = math.sqrt(3.0**2 + 4.0**2)
    assert torch.allclose(a.grad, torch.tensor([3.0, 0.0]) / total, atol=1e-6)
    assert torch.allclose(b.grad, torch.tensor([0.0, 4.0]) / total, atol=1e-6)
    a.grad = torch.tensor([3.0, -0.5])
    clip_gradients([a], 1.0, "value")
    assert a.grad.tolist() == [1.0, -0.5]
