"""The scripts in ``examples/`` run as printed, on a few steps."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_plain_pytorch_simmim__trains_evaluates_and_writes_png(tmp_path: Path) -> None:
    # 64 images in batches of 16 are 4 steps per epoch; 2 epochs capped at 3 steps.
    command = [
        sys.executable,
        str(EXAMPLES / "plain_pytorch_simmim.py"),
        "--epochs=2",
        "--max-steps=3",
        "--batch-size=16",
        "--limit-train=64",
        "--limit-eval=32",
        "--log-every=1",
        f"--output-dir={tmp_path}",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    losses = [float(x) for x in re.findall(r"^step \d/3  loss (\S+)$", out, re.M)]
    assert len(losses) == 3  # --max-steps wins over 2 epochs x 4 steps
    # Masked L1 of a fresh model on normalised pixels: finite, well above zero.
    assert all(0.05 < loss < 5.0 for loss in losses), losses
    accuracies = re.findall(r"kNN top-1 (?:before|after) [^:]*: ([\d.]+)%", out)
    assert len(accuracies) == 2
    # 32 queries (--limit-eval): accuracy is a multiple of 100 / 32 %, printed
    # to 2 decimals.
    for accuracy in map(float, accuracies):
        assert 0.0 <= accuracy <= 100.0
        assert abs(accuracy * 32 / 100 - round(accuracy * 32 / 100)) < 0.01
    png = tmp_path / "reconstruction.png"
    with Image.open(png) as image:
        # 8 columns x 3 rows (original, masked, reconstruction) of 32 px tiles,
        # 2 px padding around each (torchvision's make_grid).
        assert image.size == (8 * 34 + 2, 3 * 34 + 2)


@pytest.mark.slow  # a few seconds to import torch and timm
def test_plain_pytorch_simmim__too_few_images_is_a_usage_error(
    tmp_path: Path, assert_user_error: Callable[..., str]
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "plain_pytorch_simmim.py"),
            "--limit-train=8",
            "--batch-size=16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    stderr = assert_user_error(result, 2)
    assert "--limit-train 8 is smaller than --batch-size 16" in stderr
