"""Tests for lightly_simmim.optim: weight-decay exemptions, fused rule, clipping."""

import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import FSDPStrategy
from torch import nn

from lightly_simmim.optim import (
    clip_gradients,
    clip_in_hook,
    create_optimizer,
    fused_allowed,
)


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


class _FSDPRoot(nn.Module):
    """Stands in for the FSDP-wrapped root (FSDP needs GPUs): records its clipping."""

    def __init__(self) -> None:
        super().__init__()
        self.norms: list[float] = []

    def clip_grad_norm_(self, max_norm: float) -> None:
        self.norms.append(max_norm)


def _module_under_fsdp(root: nn.Module) -> pl.LightningModule:
    strategy = FSDPStrategy()
    strategy.model = root
    module = pl.LightningModule()
    module.layer = nn.Linear(3, 2)
    module._trainer = SimpleNamespace(strategy=strategy)  # type: ignore[assignment]
    return module


def test_clip_in_hook__fsdp_norm_goes_to_the_root_value_clips_the_shards() -> None:
    # Lightning's FSDP precision plugin refuses norm clipping; the root FSDP module's
    # clip_grad_norm_ is the one that sees every shard.
    root = _FSDPRoot()
    module = _module_under_fsdp(root)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    params = list(module.parameters())
    for param in params:
        param.grad = torch.full_like(param, 3.0)
    clip_in_hook(module, optimizer, params, 5.0, "norm")
    clip_in_hook(module, optimizer, params, 5.0, None)  # Lightning's default: norm
    assert root.norms == [5.0, 5.0]
    assert all(bool((p.grad == 3.0).all()) for p in params)  # left to the root
    clip_in_hook(module, optimizer, params, 1.0, "value")  # elementwise: local
    assert all(bool((p.grad == 1.0).all()) for p in params)
    clip_in_hook(module, optimizer, params, 0.0, "norm")  # 0: no clipping at all
    assert root.norms == [5.0, 5.0]


def test_clip_in_hook__fsdp_without_a_wrapped_root_is_a_clear_error() -> None:
    module = _module_under_fsdp(nn.Linear(1, 1))
    with pytest.raises(TypeError, match="FSDP-wrapped root"):
        clip_in_hook(
            module, torch.optim.SGD([nn.Parameter(torch.ones(1))]), [], 1.0, None
        )
