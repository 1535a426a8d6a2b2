"""Official checkpoints exported to timm: loaded by timm.create_model, same features."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from official_layout import (
    StateDict,
    config,
    official_swin,
    official_vit,
    save_official,
)
from safetensors.torch import load_file
from timm.data import IMAGENET_DEFAULT_MEAN

from lightly_simmim.convert import (
    export_official_to_timm,
    load_official_checkpoint,
    read_official_checkpoint,
    to_timm,
)

CASES: dict[str, Callable[[], StateDict]] = {
    "vit-pretrain": lambda: official_vit("pretrain"),
    "vit-finetune": lambda: official_vit("finetune"),
    "swin-finetune": lambda: official_swin("finetune"),
    "swinv2-pretrain": lambda: official_swin("pretrain", v2=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_official_to_timm__timm_loads_it_with_the_same_features(
    tmp_path: Path, case: str
) -> None:
    torch.manual_seed(0)
    checkpoint = save_official(
        tmp_path / "official.pth", CASES[case](), config("vit", 32)
    )

    written = export_official_to_timm(checkpoint, tmp_path / "export" / "model")

    assert written == tmp_path / "export" / "model.safetensors"
    info = json.loads(written.with_suffix(".json").read_text())
    model = timm.create_model(
        info["model_name"],
        pretrained=True,
        pretrained_cfg_overlay={"file": str(written), **info["pretrained_cfg"]},
        **info["kwargs"],
    ).eval()
    stored = load_file(written)
    # No missing keys: every tensor of the timm model is the file's.
    assert set(model.state_dict()) == set(stored)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, stored[key], rtol=0, atol=0)
    assert info["kwargs"]["num_classes"] == (5 if "finetune" in case else 0)
    assert info["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert model.pretrained_cfg["mean"] == list(IMAGENET_DEFAULT_MEAN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fine-tuning checkpoint's head is fresh
        encoder = load_official_checkpoint(checkpoint).encoder.eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(images), pre_logits=True)
        torch.testing.assert_close(pooled, encoder(images), rtol=0, atol=1e-6)


def test_to_timm__swin_finetuning_classifier(tmp_path: Path) -> None:
    official = official_swin("finetune", classes=5)
    checkpoint = read_official_checkpoint(
        save_official(tmp_path / "swin.pth", official, None)
    )

    name, kwargs, state = to_timm(checkpoint)
    _, headless_kwargs, headless = to_timm(checkpoint, include_classifier=False)

    assert name == "swin_base_patch4_window7_224"
    torch.testing.assert_close(state["head.fc.weight"], official["head.weight"])
    torch.testing.assert_close(state["head.fc.bias"], official["head.bias"])
    assert kwargs["num_classes"] == 5
    assert headless_kwargs["num_classes"] == 0
    assert set(state) - set(headless) == {"head.fc.weight", "head.fc.bias"}
    logits = timm.create_model(name, **kwargs)
    logits.load_state_dict(state)  # strict: the state dict is the whole model


def test_export_official_to_timm__refuses_to_overwrite(tmp_path: Path) -> None:
    checkpoint = save_official(tmp_path / "vit.pth", official_vit("pretrain"), None)
    written = export_official_to_timm(checkpoint, tmp_path / "vit.safetensors")
    before = written.read_bytes()

    with pytest.raises(FileExistsError, match="replace it with --overwrite"):
        export_official_to_timm(checkpoint, written)
    assert written.read_bytes() == before

    export_official_to_timm(checkpoint, written, overwrite=True, img_size=48)
    info = json.loads(written.with_suffix(".json").read_text())
    assert info["kwargs"]["img_size"] == 48


@pytest.mark.parametrize("family", ["vit", "swin", "swinv2"])
def test_export_official_to_timm__file_overlay_alone_loads_every_encoder_key(
    tmp_path: Path, family: str
) -> None:
    official = (
        official_vit("pretrain")
        if family == "vit"
        else official_swin("pretrain", v2=family == "swinv2")
    )
    checkpoint = save_official(tmp_path / "official.pth", official, None)
    written = export_official_to_timm(checkpoint, tmp_path / "model.safetensors")
    info = json.loads(written.with_suffix(".json").read_text())

    model = timm.create_model(
        info["model_name"],
        pretrained=True,
        pretrained_cfg_overlay={"file": str(written)},
        **info["kwargs"],
    )

    stored = load_file(written)
    assert set(model.state_dict()) == set(stored)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, stored[key], rtol=0, atol=0)
