"""Reading official checkpoints: nothing from the file runs, and wrong files say so."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from official_layout import CfgNode, config, official_swin, official_vit, save_official

from lightly_simmim.convert import OfficialCheckpointError, read_official_checkpoint


class _ExecPayload:
    """Unpickling this with plain pickle would run ``exec`` and write the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


class _SystemPayload:
    """Unpickling this with plain pickle would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_read_official_checkpoint__pretraining_vit(tmp_path: Path) -> None:
    state = official_vit("pretrain")
    path = save_official(tmp_path / "ckpt.pth", state, config("vit", 32, DEPTH=2))
    assert "yacs" not in sys.modules  # the reader never needs yacs

    checkpoint = read_official_checkpoint(path)

    assert checkpoint.kind == "pretrain"
    assert checkpoint.epoch == 99
    assert checkpoint.config == {
        "DATA": {"IMG_SIZE": 32, "MASK_PATCH_SIZE": 32},
        "MODEL": {"TYPE": "vit", "VIT": {"DEPTH": 2}},
        "TRAIN": {"OPTIMIZER": {"BETAS": (0.9, 0.999)}},
    }
    assert set(checkpoint.state_dict) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(checkpoint.state_dict[key], value, rtol=0, atol=0)
    assert set(checkpoint.decoder_state) == {"0.weight", "0.bias"}
    assert "mask_token" in checkpoint.encoder_state
    assert not any(key.startswith("encoder.") for key in checkpoint.encoder_state)


def test_read_official_checkpoint__finetuning_swin_without_config(
    tmp_path: Path,
) -> None:
    path = save_official(tmp_path / "ckpt.pth", official_swin("finetune"), None)

    checkpoint = read_official_checkpoint(path)

    assert checkpoint.kind == "finetune"
    assert checkpoint.config is None
    assert checkpoint.decoder_state == {}
    assert "head.weight" in checkpoint.encoder_state


def test_read_official_checkpoint__bare_model_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "model_only.pth"
    torch.save(official_vit("finetune"), path)

    checkpoint = read_official_checkpoint(path)

    assert checkpoint.kind == "finetune"
    assert checkpoint.config is None


def test_read_official_checkpoint__exec_payload_in_config_never_runs(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "payload_ran"
    cfg = config("vit", 32)
    cfg["EXTRA"] = _ExecPayload(marker)
    state = official_vit("pretrain")
    path = save_official(tmp_path / "ckpt.pth", state, cfg)

    checkpoint = read_official_checkpoint(path)

    assert not marker.exists()
    assert checkpoint.config is not None
    assert checkpoint.config["EXTRA"] == "<not unpickled: builtins.exec>"
    assert checkpoint.config["DATA"]["IMG_SIZE"] == 32
    torch.testing.assert_close(
        checkpoint.state_dict["encoder.cls_token"], state["encoder.cls_token"]
    )


def test_read_official_checkpoint__system_call_payload_is_refused(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "payload_ran"
    cfg = config("vit", 32)
    cfg["EXTRA"] = _SystemPayload(marker)
    path = save_official(tmp_path / "ckpt.pth", official_vit("pretrain"), cfg)

    with pytest.raises(OfficialCheckpointError) as error:
        read_official_checkpoint(path)

    assert not marker.exists()
    message = _one_line(error)
    assert "system" in message and "nothing from the file was run" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not a checkpoint at all", "torch.load cannot read it"),
        # 'h' is a pickle opcode: torch's weights-only unpickler fails with KeyError.
        (b"hello\n", "torch.load cannot read it (KeyError"),
        (None, "no 'model' state dict (it looks like a PyTorch Lightning"),
        ([1, 2, 3], "it holds a list"),
        ({"model": {"fc.weight": torch.zeros(2, 2)}}, "not an official ViT, Swin"),
    ],
    ids=["bytes", "text-keyerror", "lightning", "list", "resnet-like"],
)
def test_read_official_checkpoint__not_official_is_one_line(
    tmp_path: Path, content: object, expected: str
) -> None:
    path = tmp_path / "file.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:
        torch.save({"state_dict": {}, "pytorch-lightning_version": "2.4"}, path)
    else:
        torch.save(content, path)

    with pytest.raises(OfficialCheckpointError) as error:
        read_official_checkpoint(path)

    message = _one_line(error)
    assert expected in message
    assert str(path) in message


def test_read_official_checkpoint__stray_key_in_pretraining_checkpoint(
    tmp_path: Path,
) -> None:
    state = {**official_vit("pretrain"), "projector.weight": torch.zeros(2)}
    path = save_official(tmp_path / "ckpt.pth", state, CfgNode())

    with pytest.raises(OfficialCheckpointError, match=r"'projector\.weight'"):
        read_official_checkpoint(path)


def test_read_official_checkpoint__data_parallel_prefix(tmp_path: Path) -> None:
    state = official_vit("finetune")
    wrapped = {f"module.{key}": value for key, value in state.items()}
    path = save_official(tmp_path / "ckpt.pth", wrapped, None)

    checkpoint = read_official_checkpoint(path)

    assert set(checkpoint.state_dict) == set(state)


def test_read_official_checkpoint__truncated_file(tmp_path: Path) -> None:
    whole = save_official(tmp_path / "whole.pth", official_vit("pretrain"), None)
    path = tmp_path / "truncated.pth"
    path.write_bytes(whole.read_bytes()[:4000])

    with pytest.raises(OfficialCheckpointError) as error:
        read_official_checkpoint(path)

    assert "torch.load cannot read it" in _one_line(error)


def test_read_official_checkpoint__missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_official_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="is a folder; convert takes"):
        read_official_checkpoint(tmp_path)
