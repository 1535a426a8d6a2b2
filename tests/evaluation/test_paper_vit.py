"""The paper's ViT in its fine-tuning form: per-block position tables, mean pooling,
and the official optimiser groups of those tables."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from timm.models.beit import Beit
from torch import nn

from lightly_simmim.encoders import from_timm
from lightly_simmim.evaluation import (
    finetune_optimizer,
    split_shared_rel_pos_bias,
    timm_classifier,
    use_mean_pooling,
)

TinyModel = Callable[..., nn.Module]


@pytest.fixture
def paper_vit(tiny_timm_model: TinyModel) -> Beit:
    """The tiny paper ViT (two blocks, shared bias, final norm on every token) with
    a random shared table: timm initialises it to zeros, which would hide a block
    that ignores it."""
    model = tiny_timm_model("beit", img_size=16, patch_size=4)
    assert isinstance(model, Beit) and model.rel_pos_bias is not None
    with torch.no_grad():
        model.rel_pos_bias.relative_position_bias_table.normal_()
    return model.eval()


def test_split_shared_rel_pos_bias__tables_start_equal_and_output_is_unchanged(
    paper_vit: Beit,
) -> None:
    shared = paper_vit.rel_pos_bias.relative_position_bias_table.detach().clone()
    original = copy.deepcopy(paper_vit)
    images = torch.randn(3, 3, 16, 16)
    assert split_shared_rel_pos_bias(paper_vit) is True
    assert paper_vit.rel_pos_bias is None
    tables = [block.attn.relative_position_bias_table for block in paper_vit.blocks]
    assert len(tables) == 2
    for table in tables:
        torch.testing.assert_close(table.detach(), shared, rtol=0, atol=0)
    # Separate parameters, each trained on its own.
    assert tables[0] is not tables[1]
    assert tables[0].data_ptr() != tables[1].data_ptr()
    names = {name for name, _ in paper_vit.named_parameters()}
    assert "blocks.1.attn.relative_position_bias_table" in names
    assert not any(name.startswith("rel_pos_bias.") for name in names)
    with torch.no_grad():
        torch.testing.assert_close(paper_vit(images), original(images))
    assert split_shared_rel_pos_bias(paper_vit) is False  # nothing left to split


def test_use_mean_pooling__fresh_fc_norm_after_the_mean_of_patch_tokens(
    paper_vit: Beit,
) -> None:
    eps = paper_vit.norm.eps
    with torch.no_grad():
        paper_vit.norm.weight.fill_(3.0)  # a trained final norm, to be dropped
    assert use_mean_pooling(paper_vit) is True
    assert isinstance(paper_vit.norm, nn.Identity)
    fc_norm = paper_vit.fc_norm
    assert isinstance(fc_norm, nn.LayerNorm) and fc_norm.eps == eps
    assert torch.equal(fc_norm.weight, torch.ones_like(fc_norm.weight))
    assert torch.equal(fc_norm.bias, torch.zeros_like(fc_norm.bias))
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        tokens = paper_vit.forward_features(images)  # (B, 1 + 16, D), no norm
        # Written out: the mean of the 16 patch tokens, then a LayerNorm.
        mean = tokens[:, 1:].mean(dim=1)
        expected = (mean - mean.mean(-1, keepdim=True)) / torch.sqrt(
            mean.var(-1, unbiased=False, keepdim=True) + eps
        )
        torch.testing.assert_close(
            paper_vit.forward_head(tokens, pre_logits=True), expected
        )
    assert use_mean_pooling(paper_vit) is False


def _groups_by_name(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g for g in optimizer.param_groups for p in g["params"]}


@pytest.mark.parametrize("decayed", [True, False])
def test_finetune_optimizer__per_block_tables_in_their_blocks_layer_groups(
    paper_vit: Beit, decayed: bool
) -> None:
    model = timm_classifier(
        from_timm(paper_vit), 10, rel_pos_per_block=True, mean_pooling=True
    )
    optimizer = finetune_optimizer(
        model,
        lr=1e-3,
        weight_decay=0.05,
        layer_decay=0.5,
        betas=(0.9, 0.999),
        eps=1e-8,
        rel_pos_weight_decay=decayed,
    )
    groups = _groups_by_name(model, optimizer)
    depth = 2  # layers: 0 stem, 1..2 blocks, 3 head; scale 0.5 ** (3 - layer)
    for block in range(depth):
        group = groups[f"blocks.{block}.attn.relative_position_bias_table"]
        assert group["lr_scale"] == pytest.approx(0.5 ** (depth - block))
        # The official optimiser decays them (its ViT exempts only pos_embed and
        # cls_token); timm's Beit would not.
        assert group["weight_decay"] == (0.05 if decayed else 0.0)
    assert groups["cls_token"]["weight_decay"] == 0.0
    assert groups["cls_token"]["lr_scale"] == pytest.approx(0.5**3)
    assert groups["fc_norm.weight"]["lr_scale"] == 1.0
    assert groups["head.weight"]["lr_scale"] == 1.0
    assert groups["head.weight"]["weight_decay"] == 0.05
