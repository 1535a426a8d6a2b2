"""``lightly-simmim export --format timm``: timm loads the encoder of a run."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vit", "convnext"])
def test_export__timm_loads_the_encoder_with_no_missing_keys(
    tmp_path: Path,
    pretrained_run: Callable[[str], Path],
    run_cli: RunCli,
    family: str,
) -> None:
    out = tmp_path / f"{family}.safetensors"
    run = pretrained_run(family)
    export = run_cli("export", str(run), "--format", "timm", "--output", str(out))
    assert export.returncode == 0, export.stderr
    info = json.loads(out.with_suffix(".json").read_text())
    model = timm.create_model(
        info["model_name"],
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(out)),
        num_classes=10,
        **info["kwargs"],
    )
    exported = load_file(out)
    classifier = model.pretrained_cfg["classifier"]
    missing = [
        key
        for key in model.state_dict()
        if key not in exported and not key.startswith(f"{classifier}.")
    ]
    assert missing == []
    state = model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in exported.items())
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_export__missing_run_exits_2(
    tmp_path: Path,
    run_main: Callable[..., tuple[int, str, str]],
    assert_user_error: Callable[..., str],
) -> None:
    result = run_main("export", str(tmp_path / "nope"), "--format", "timm")
    err = assert_user_error(result, 2)
    assert "lightly-simmim export: error: " in err
    assert "neither a run folder nor a checkpoint" in err
