"""Official SimMIM Swin / SwinV2 checkpoints -> SimMIM(Swin adapters)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from official_forward import swin_forward
from official_layout import CfgNode, config, official_swin, save_official

from lightly_simmim.convert import (
    OfficialCheckpointError,
    convert_official_checkpoint,
    load_official_checkpoint,
)
from lightly_simmim.convert.interpolate import resize_bias_table
from lightly_simmim.encoders import SwinEncoder, SwinV2Encoder
from lightly_simmim.loss import SimMIMLoss

# Official patch merging ends a stage, timm's starts the next one.
MOVED = {
    "layers.0.downsample.reduction.weight": "layers.1.downsample.reduction.weight",
    "layers.0.downsample.norm.weight": "layers.1.downsample.norm.weight",
    "layers.0.downsample.norm.bias": "layers.1.downsample.norm.bias",
    "layers.1.downsample.reduction.weight": "layers.2.downsample.reduction.weight",
    "layers.1.downsample.norm.weight": "layers.2.downsample.norm.weight",
    "layers.1.downsample.norm.bias": "layers.2.downsample.norm.bias",
}
BUFFERS = ("relative_position_index", "attn_mask", "relative_coords_table")


def _exact(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize("v2", [False, True], ids=["swin", "swinv2"])
def test_load_official_checkpoint__swin_pretraining_every_tensor_lands(
    tmp_path: Path, v2: bool
) -> None:
    official = official_swin(
        "pretrain", v2=v2, dim=8, depths=(2, 2, 2), heads=(1, 2, 4), img=64
    )
    path = save_official(tmp_path / "swin.pth", official, config("swin", 64))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is fresh
        model = load_official_checkpoint(path)

    expected = {"encoder.mask_token": "encoder.mask_token"}
    expected |= {
        "head.conv.weight": "decoder.0.weight",
        "head.conv.bias": "decoder.0.bias",
    }
    for key in official:
        name = key.removeprefix("encoder.")
        buffer = name.endswith(BUFFERS)
        if key.startswith("encoder.") and name != "mask_token" and not buffer:
            expected[f"encoder.model.{MOVED.get(name, name)}"] = key
    state = model.state_dict()
    assert isinstance(model.encoder, SwinV2Encoder if v2 else SwinEncoder)
    assert set(state) == set(expected)  # every parameter comes from the file
    for ours, theirs in expected.items():
        _exact(state[ours], official[theirs])


def test_load_official_checkpoint__swinv2_old_rpe_mlp_names(tmp_path: Path) -> None:
    official = official_swin("finetune", v2=True)
    renamed = {key.replace(".cpb_mlp.", ".rpe_mlp."): v for key, v in official.items()}
    path = save_official(tmp_path / "swinv2.pth", renamed, None)

    model = convert_official_checkpoint(path).model

    weight = official["layers.1.blocks.0.attn.cpb_mlp.2.weight"]
    _exact(
        model.state_dict()["encoder.model.layers.1.blocks.0.attn.cpb_mlp.2.weight"],
        weight,
    )


@pytest.mark.parametrize(
    ("img", "depths"), [(32, (2, 2)), (64, (2, 2, 2))], ids=["2-stage", "3-stage"]
)
def test_load_official_checkpoint__swin_forward_matches_official(
    tmp_path: Path, img: int, depths: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    heads = (2,) * len(depths)
    official = official_swin("pretrain", dim=8, depths=depths, heads=heads, img=img)
    path = save_official(tmp_path / "swin.pth", official, config("swin", img))
    model = load_official_checkpoint(path).eval()
    images = torch.randn(2, 3, img, img)
    mask = torch.rand(2, img // 4, img // 4) < 0.6

    with torch.no_grad():
        features, reconstruction, loss = swin_forward(
            official, images, mask, patch=4, window=4, depths=depths, heads=heads
        )
        ours = model.encoder.forward_masked(images, mask)
        torch.testing.assert_close(ours, features, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            model.reconstruct(images, mask), reconstruction, rtol=0, atol=1e-5
        )
        torch.testing.assert_close(model(images, mask), loss, rtol=0, atol=1e-5)


def test_load_official_checkpoint__swin_window_change_resizes_tables(
    tmp_path: Path,
) -> None:
    # Like Swin-B 192 px window 6 -> 224 px window 7: here 64 px window 4 -> 96 px
    # window 6; the last stage (a 4x4 map, then 6x6) is one window in both.
    official = official_swin(
        "pretrain", dim=8, depths=(2, 2, 2), heads=(1, 2, 2), img=64
    )
    path = save_official(tmp_path / "swin.pth", official, config("swin", 64))

    conversion = convert_official_checkpoint(path, img_size=96, window_size=6)

    state = conversion.model.state_dict()
    for stage in range(3):
        key = f"layers.{stage}.blocks.1.attn.relative_position_bias_table"
        table = official[f"encoder.{key}"]
        resized = state[f"encoder.model.{key}"]
        assert resized.shape == (11 * 11, table.shape[1])
        _exact(resized, resize_bias_table(table, (4, 4), (6, 6)))
        _exact(resized[5 * 11 + 5], table[3 * 7 + 3])  # offset (0, 0) is a knot
    assert (
        "6 relative position bias tables resized bicubically from window 4x4 to 6x6"
        in conversion.notes
    )
    images = torch.randn(1, 3, 96, 96)
    assert conversion.model(images, torch.rand(1, 24, 24) < 0.5).isfinite()


def test_load_official_checkpoint__swinv2_window_change_sets_pretrained_windows(
    tmp_path: Path,
) -> None:
    # SwinV2-B 192 px window 12 -> 224 px window 14 is fine-tuned with
    # PRETRAINED_WINDOW_SIZES [12, 12, 12, 6]: the windows each stage had.
    official = official_swin(
        "pretrain", v2=True, dim=8, depths=(2, 2, 2), heads=(1, 2, 2), img=64
    )
    path = save_official(tmp_path / "swinv2.pth", official, config("swinv2", 64))

    conversion = convert_official_checkpoint(path, img_size=96, window_size=6)

    assert conversion.target.timm_kwargs["pretrained_window_sizes"] == (4, 4, 4)
    assert conversion.target.timm_kwargs["window_size"] == 6
    attention = conversion.model.encoder.timm_model.layers[0].blocks[0].attn  # type: ignore[union-attr]
    assert attention.pretrained_window_size == (4, 4)


def test_convert_official_checkpoint__swin_classifier_is_set_aside(
    tmp_path: Path,
) -> None:
    path = save_official(tmp_path / "swin.pth", official_swin("finetune"), None)

    conversion = convert_official_checkpoint(path)

    assert conversion.source.num_classes == 5
    assert not any(
        key.startswith("encoder.model.head") for key in conversion.model.state_dict()
    )
    assert any("classifier head.*" in note for note in conversion.notes)
    assert any("stored buffers dropped" in note for note in conversion.notes)


def test_convert_official_checkpoint__swin_shape_mismatch_names_the_key(
    tmp_path: Path,
) -> None:
    official = official_swin("pretrain")
    official["encoder.layers.0.downsample.reduction.weight"] = torch.zeros(32, 48)
    path = save_official(tmp_path / "swin.pth", official, config("swin", 32))

    with pytest.raises(OfficialCheckpointError) as error:
        convert_official_checkpoint(path)

    message = str(error.value)
    assert "\n" not in message
    assert "'encoder.layers.0.downsample.reduction.weight' (32, 48)" in message
    assert "'layers.1.downsample.reduction.weight' (32, 64)" in message


def test_convert_official_checkpoint__swin_absolute_position_embedding(
    tmp_path: Path,
) -> None:
    official = official_swin("pretrain")
    official["encoder.absolute_pos_embed"] = torch.zeros(1, 64, 16)
    path = save_official(tmp_path / "swin.pth", official, config("swin", 32))

    with pytest.raises(OfficialCheckpointError, match="absolute position embedding"):
        convert_official_checkpoint(path)


def test_convert_official_checkpoint__swinv2_config_sets_loss_and_drop_path(
    tmp_path: Path,
) -> None:
    # As in simmim_pretrain__swinv2_base__img192_window12__800ep.yaml.
    cfg = config("swinv2", 32)
    cfg["MODEL"]["DROP_PATH_RATE"] = 0.1
    cfg["MODEL"]["SIMMIM"] = CfgNode(
        {"NORM_TARGET": CfgNode({"ENABLE": True, "PATCH_SIZE": 47})}
    )
    path = save_official(tmp_path / "v2.pth", official_swin("pretrain", v2=True), cfg)

    conversion = convert_official_checkpoint(path)

    loss = conversion.model.loss
    assert isinstance(loss, SimMIMLoss) and loss.norm_target_window == 47
    last_block = conversion.model.encoder.timm_model.layers[-1].blocks[-1]  # type: ignore[union-attr]
    assert last_block.drop_path2.drop_prob == pytest.approx(0.1)
    assert conversion.drop_path_rate == pytest.approx(0.1)
    assert any("MODEL.SIMMIM.NORM_TARGET" in note for note in conversion.notes)
