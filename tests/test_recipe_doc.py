"""docs/recipe.md against the shipped paper configs, and the paper ViT's pretraining
form (a LayerNorm on every token right before the prediction head)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor, nn

from lightly_simmim.build import build_method
from lightly_simmim.config import load_config, to_dict

DOC = Path(__file__).resolve().parents[1] / "docs" / "recipe.md"
PAPER_CONFIGS = ("simmim_vit_base_800ep", "simmim_swin_base_192_100ep")


def _tables() -> dict[str, list[tuple[str, str]]]:
    """Config name (a ``## name`` heading) -> its table rows' (key, value) cells."""
    rows: dict[str, list[tuple[str, str]]] = {}
    section = None
    for line in DOC.read_text().splitlines():
        heading = re.fullmatch(r"## (\S+)", line)
        if heading:
            section = heading[1]
            rows[section] = []
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if section is None or not line.startswith("|") or len(cells) != 4:
            continue
        key, value = cells[0], cells[1]
        if key in ("key", "---"):
            continue  # header and separator rows
        rows[section].append((key.strip("`"), value.strip("`")))
    return rows


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        assert isinstance(values, dict) and part in values, dotted
        values = values[part]
    return values


def test_recipe_doc__every_paper_config_has_a_table() -> None:
    tables = _tables()
    assert set(tables) == set(PAPER_CONFIGS)
    for name, rows in tables.items():
        keys = [key for key, _ in rows]
        assert len(keys) == len(set(keys)), name  # each value once
        # Both halves of the recipe are there.
        assert sum(key.startswith("finetune.") for key in keys) >= 25, name
        assert sum(not key.startswith("finetune.") for key in keys) >= 20, name


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_recipe_doc__shipped_config_holds_every_documented_value(name: str) -> None:
    config = to_dict(load_config(name))
    for key, text in _tables()[name]:
        documented = yaml.safe_load(text)
        assert _lookup(config, key) == documented, (name, key)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_recipe_doc__documents_every_finetune_setting(name: str) -> None:
    documented = {key for key, _ in _tables()[name]}
    fields = {f"finetune.{field}" for field in to_dict(load_config(name))["finetune"]}
    if name.startswith("simmim_swin"):
        # BEiT-only settings, and the padding of a crop used only up to 32 px.
        fields -= {
            "finetune.rel_pos_per_block",
            "finetune.rel_pos_weight_decay",
            "finetune.mean_pooling",
            "finetune.crop_padding",
        }
    assert fields <= documented


def test_paper_vit__pretrains_with_a_layernorm_right_before_the_head() -> None:
    # The paper config, made tiny: 32 px images of 2 x 2 tokens, one block.
    config = load_config(
        "simmim_vit_base_800ep",
        [
            "encoder.kwargs.img_size=32",
            "encoder.kwargs.embed_dim=32",
            "encoder.kwargs.depth=1",
            "encoder.kwargs.num_heads=2",
            "data.input_size=32",
            "data.batch_size=2",
            # The paper's 32 px cells would mask the whole 32 px image (refused).
            "method.mask_patch_size=16",
        ],
    )
    model = build_method(config, with_classes=False).model
    beit = model.encoder.timm_model
    assert isinstance(beit.norm, nn.LayerNorm)  # official USE_MEAN_POOLING: False
    assert isinstance(beit.fc_norm, nn.Identity)
    seen: dict[str, Tensor] = {}
    beit.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("norm", o))
    model.head.register_forward_pre_hook(lambda m, i: seen.__setitem__("head", i[0]))
    images = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[:, 0] = True
    model.eval()
    with torch.no_grad():
        model(images, mask)
    # The head sees exactly the normalised patch tokens (class token dropped):
    # (B, 1 + 4, D) -> (B, 4, D) -> (B, D, 2, 2).
    tokens = seen["norm"][:, 1:]
    torch.testing.assert_close(
        seen["head"], tokens.transpose(1, 2).reshape(2, 32, 2, 2), rtol=0, atol=0
    )
    # And they are normalised per token (LayerNorm with its initial affine).
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 4), atol=1e-5, rtol=0)
