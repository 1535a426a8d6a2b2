"""Official SimMIM ViT checkpoints -> SimMIM(BEiTEncoder): tensors, forward, sizes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from official_forward import vit_forward
from official_layout import config, official_vit, save_official

from lightly_simmim.convert import (
    OfficialCheckpointError,
    convert_official_checkpoint,
    load_official_checkpoint,
)
from lightly_simmim.convert.interpolate import resize_bias_table
from lightly_simmim.encoders import BEiTEncoder


def _exact(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_load_official_checkpoint__vit_pretraining_every_tensor_lands(
    tmp_path: Path,
) -> None:
    official = official_vit("pretrain", depth=2)
    path = save_official(tmp_path / "vit.pth", official, config("vit", 32))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is fresh
        model = load_official_checkpoint(path)

    # Official name -> name in SimMIM. The backbone keeps timm Beit's (= the
    # official) names inside the adapter; the index buffer is recomputed by timm.
    expected = {
        f"encoder.model.{key.removeprefix('encoder.')}": key
        for key in official
        if key.startswith("encoder.")
        and key != "encoder.mask_token"
        and not key.endswith("relative_position_index")
    }
    expected |= {
        "encoder.mask_token": "encoder.mask_token",
        "head.conv.weight": "decoder.0.weight",
        "head.conv.bias": "decoder.0.bias",
    }
    state = model.state_dict()
    assert isinstance(model.encoder, BEiTEncoder)
    assert set(state) == set(expected)  # every parameter comes from the file
    for ours, theirs in expected.items():
        _exact(state[ours], official[theirs])


def test_convert_official_checkpoint__vit_finetuning(tmp_path: Path) -> None:
    official = official_vit("finetune", depth=2, classes=5)
    path = save_official(tmp_path / "vit.pth", official, config("vit", 32))

    conversion = convert_official_checkpoint(path)

    state = conversion.model.state_dict()
    for key, value in official.items():
        if key.startswith("head.") or key.endswith("relative_position_index"):
            continue  # classifier: not part of SimMIM; index: a buffer
        _exact(state[f"encoder.model.{key}"], value)
    assert conversion.kind == "finetune"
    assert conversion.target.timm_kwargs["use_fc_norm"]
    assert any("classifier head.* (5 classes)" in note for note in conversion.notes)
    assert len(conversion.fresh) == 2  # mask token and head
    with pytest.warns(UserWarning) as warned:
        load_official_checkpoint(path)
    assert [str(w.message).split(":")[1] for w in warned] == [" mask_token", " head"]


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "split"])
def test_load_official_checkpoint__vit_forward_matches_official(
    tmp_path: Path, shared: bool
) -> None:
    torch.manual_seed(0)
    official = official_vit("pretrain", depth=2, heads=2, patch=8, img=32)
    path = save_official(tmp_path / "vit.pth", official, config("vit", 32))
    model = load_official_checkpoint(path, split_rel_pos_bias=not shared).eval()
    images = torch.randn(3, 3, 32, 32)
    mask = torch.rand(3, 4, 4) < 0.6

    with torch.no_grad():
        features, reconstruction, loss = vit_forward(
            official, images, mask, patch=8, heads=2, depth=2
        )
        ours = model.encoder.forward_masked(images, mask)
        torch.testing.assert_close(ours, features, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            model.reconstruct(images, mask), reconstruction, rtol=0, atol=1e-5
        )
        torch.testing.assert_close(model(images, mask), loss, rtol=0, atol=1e-5)


def test_load_official_checkpoint__vit_split_tables_copy_the_shared_one(
    tmp_path: Path,
) -> None:
    official = official_vit("pretrain", depth=3)
    path = save_official(tmp_path / "vit.pth", official, config("vit", 32))

    model = load_official_checkpoint(path, split_rel_pos_bias=True)

    beit = model.encoder.timm_model  # type: ignore[union-attr]
    assert beit.rel_pos_bias is None
    for block in beit.blocks:
        _exact(
            block.attn.relative_position_bias_table,
            official["encoder.rel_pos_bias.relative_position_bias_table"],
        )


def test_load_official_checkpoint__vit_image_size_resizes_the_table(
    tmp_path: Path,
) -> None:
    official = official_vit("pretrain", patch=8, img=32)  # 4x4 tokens
    path = save_official(tmp_path / "vit.pth", official, config("vit", 32))
    table = official["encoder.rel_pos_bias.relative_position_bias_table"]

    model = load_official_checkpoint(path, img_size=48)  # 6x6 tokens

    resized = model.encoder.timm_model.rel_pos_bias.relative_position_bias_table  # type: ignore[union-attr]
    assert resized.shape == (11 * 11 + 3, 2)
    _exact(resized, resize_bias_table(table, (4, 4), (6, 6), extra_tokens=3))
    _exact(resized[-3:], table[-3:])  # class token rows kept
    _exact(resized[5 * 11 + 5], table[3 * 7 + 3])  # offset (0, 0) is a knot
    images = torch.randn(2, 3, 48, 48)
    assert model(images, torch.rand(2, 6, 6) < 0.5).isfinite()


def test_load_official_checkpoint__vit_one_channel(tmp_path: Path) -> None:
    official = official_vit("pretrain")
    path = save_official(tmp_path / "vit.pth", official, config("vit", 32))

    with pytest.warns(UserWarning, match="head: fresh"):
        model = load_official_checkpoint(path, in_chans=1)

    weight = model.encoder.timm_model.patch_embed.proj.weight  # type: ignore[union-attr]
    # timm's adapt_input_conv: RGB filters summed into one channel.
    torch.testing.assert_close(
        weight, official["encoder.patch_embed.proj.weight"].sum(1, keepdim=True)
    )
    assert model.head.conv.out_channels == 8 * 8  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "shape",
            r"shapes do not fit .*'encoder\.blocks\.1\.mlp\.fc1\.weight' \(70, 16\)",
        ),
        ("extra", r"tensors 'encoder\.blocks\.0\.attn\.k_bias' map to no parameter"),
        ("missing", r"parameters 'blocks\.1\.norm2\.weight' get no tensor"),
    ],
)
def test_convert_official_checkpoint__vit_mismatch_names_the_keys(
    tmp_path: Path, change: str, message: str
) -> None:
    official = official_vit("pretrain", depth=2)
    if change == "shape":
        official["encoder.blocks.1.mlp.fc1.weight"] = torch.zeros(70, 16)
    elif change == "extra":
        official["encoder.blocks.0.attn.k_bias"] = torch.zeros(16)
    else:
        del official["encoder.blocks.1.norm2.weight"]
    path = save_official(tmp_path / "vit.pth", official, config("vit", 32))

    with pytest.raises(OfficialCheckpointError, match=message) as error:
        convert_official_checkpoint(path)
    assert "\n" not in str(error.value)


def test_convert_official_checkpoint__vit_has_no_window(tmp_path: Path) -> None:
    path = save_official(tmp_path / "vit.pth", official_vit("pretrain"), None)

    with pytest.raises(OfficialCheckpointError, match="window_size applies to Swin"):
        convert_official_checkpoint(path, window_size=7)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"img_size": 0}, ValueError, r"img_size must be a positive int"),
        ({"drop_path_rate": 1.5}, ValueError, r"drop_path_rate must be in \[0, 1\)"),
        ({"img_size": 36}, OfficialCheckpointError, r"not a multiple of .* stride 8"),
    ],
)
def test_convert_official_checkpoint__bad_overrides(
    tmp_path: Path, overrides: dict[str, Any], error: type[Exception], message: str
) -> None:
    path = save_official(tmp_path / "vit.pth", official_vit("pretrain"), None)

    with pytest.raises(error, match=message):
        convert_official_checkpoint(path, **overrides)
