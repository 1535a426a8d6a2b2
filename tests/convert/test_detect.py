"""Family and architecture read from official tensor names and shapes."""

from __future__ import annotations

import pytest
from official_layout import official_swin, official_vit

from lightly_simmim.convert import (
    OfficialCheckpointError,
    detect_architecture,
    detect_family,
)


def _backbone(state: dict) -> dict:  # type: ignore[type-arg]
    """The pretraining encoder's tensors without the ``encoder.`` prefix."""
    return {
        k.removeprefix("encoder."): v
        for k, v in state.items()
        if k.startswith("encoder.")
    }


def test_detect_architecture__vit_pretraining() -> None:
    state = _backbone(
        official_vit("pretrain", dim=16, depth=2, heads=2, patch=8, img=32)
    )

    arch = detect_architecture(state)

    assert arch.family == "vit"
    assert arch.timm_name == "beit_base_patch16_224"
    assert arch.num_classes == 0
    assert dict(arch.timm_kwargs) == {
        "img_size": 32,
        "patch_size": 8,
        "in_chans": 3,
        "embed_dim": 16,
        "depth": 2,
        "num_heads": 2,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "init_values": 0.1,
        "use_abs_pos_emb": False,
        "use_rel_pos_bias": False,
        "use_shared_rel_pos_bias": True,
        "use_fc_norm": False,
    }


def test_detect_architecture__vit_finetuning() -> None:
    state = official_vit(
        "finetune", dim=16, depth=3, heads=4, patch=8, img=48, classes=7
    )

    arch = detect_architecture(state)

    assert arch.num_classes == 7
    kwargs = arch.timm_kwargs
    assert (kwargs["img_size"], kwargs["depth"], kwargs["num_heads"]) == (48, 3, 4)
    assert kwargs["use_rel_pos_bias"] and not kwargs["use_shared_rel_pos_bias"]
    assert kwargs["use_fc_norm"]


def test_detect_architecture__swin_window_and_image_size_from_buffers() -> None:
    # 64 px / 4 = a 16x16 map, window 4: stages of 16, 8, 4 tokens a side; the last
    # is one window without shift. No config: size and window come from the buffers.
    state = _backbone(
        official_swin("pretrain", dim=8, depths=(2, 2, 2), heads=(1, 2, 4), img=64)
    )

    arch = detect_architecture(state)

    assert arch.family == "swin"
    assert arch.timm_name == "swin_base_patch4_window7_224"
    assert dict(arch.timm_kwargs) == {
        "img_size": 64,
        "patch_size": 4,
        "in_chans": 3,
        "embed_dim": 8,
        "depths": (2, 2, 2),
        "num_heads": (1, 2, 4),
        "window_size": 4,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
    }


def test_detect_architecture__swin_clamped_last_stage_tells_image_size() -> None:
    # Like Swin-L at 192 px with window 12: the last stage's map (2) is smaller than
    # the window (4), so its tables are for a 2x2 window; stage 0 has depth 1 and no
    # shifted block, so no attention mask either.
    state = official_swin("finetune", dim=8, depths=(1, 1, 2), heads=(1, 1, 1), img=32)

    kwargs = detect_architecture(state).timm_kwargs

    assert (kwargs["img_size"], kwargs["window_size"]) == (32, 4)


def test_detect_architecture__swinv2_pretrained_window_sizes_from_coords() -> None:
    state = official_swin(
        "finetune", v2=True, dim=8, window=8, img=64, pretrained_windows=(6, 4)
    )

    arch = detect_architecture(state)

    assert arch.family == "swinv2"
    assert arch.timm_name == "swinv2_base_window8_256"
    assert arch.timm_kwargs["window_size"] == 8
    assert arch.timm_kwargs["pretrained_window_sizes"] == (6, 4)


def test_detect_architecture__image_size_unknown_asks_for_it() -> None:
    # Depth-1 stages (no attention masks), nothing clamped, no config.
    state = official_swin("finetune", depths=(1, 1), img=64)

    with pytest.raises(OfficialCheckpointError, match="pass img_size"):
        detect_architecture(state)
    assert detect_architecture(state, img_size=64).timm_kwargs["img_size"] == 64
    config = {"DATA": {"IMG_SIZE": 64}}
    assert detect_architecture(state, config).timm_kwargs["img_size"] == 64


def test_detect_family__not_official() -> None:
    assert detect_family({}) is None
    with pytest.raises(OfficialCheckpointError, match="not an official ViT, Swin"):
        detect_architecture({"conv1.weight": official_vit("finetune")["cls_token"]})
