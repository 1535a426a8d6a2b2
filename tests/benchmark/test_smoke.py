"""The whole benchmark, end to end, through the real CLI in a subprocess."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "benchmarks" / "configs" / "fashion_mnist_smoke.yaml"

FINETUNE_LEVEL = 60.0  # percent top-1; chance is 10

ROWS = {
    # row label -> the protocols it must report
    "simmim": ("knn", "linear", "finetune"),
    "mae": ("knn", "linear", "finetune"),
    "byol": ("knn", "linear", "finetune"),
    "simmim-single-token": ("knn", "linear", "finetune"),
    "from-scratch": ("knn", "linear", "finetune"),
    "raw-pixels": ("knn",),
}


@pytest.mark.slow
def test_benchmark__smoke_config_end_to_end_then_resumes(
    tmp_path: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    args = ("benchmark", "--config", str(SMOKE), "--output-dir", str(tmp_path))
    result = run_cli(*args, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    payload = json.loads((tmp_path / "results.json").read_text())
    rows = {row["label"]: row for row in payload["rows"]}
    assert set(rows) == set(ROWS)
    chance = 100 / 10  # Fashion-MNIST has 10 balanced classes
    for label, protocols in ROWS.items():
        for protocol in ("knn", "linear", "finetune"):
            value = rows[label][f"{protocol}_top1"]
            if protocol not in protocols:
                assert value is None, (label, protocol)
                continue
            assert math.isfinite(value) and value > chance, (label, protocol, value)
    # The fine-tune learns: every row, from scratch included, at least 60 % on the
    # 500 test images (a protocol that learns nothing stays near 10 %; 1-epoch
    # pretraining is too short to help much), and above the row's frozen-feature
    # protocols, as in the papers.
    for label, protocols in ROWS.items():
        if "finetune" not in protocols:
            continue
        tuned = rows[label]["finetune_top1"]
        assert tuned >= FINETUNE_LEVEL, (label, tuned)
        assert tuned > max(rows[label]["knn_top1"], rows[label]["linear_top1"]), label
    saved = json.loads(
        (tmp_path / "baselines" / "from-scratch" / "eval" / "finetune.json").read_text()
    )
    assert saved["best_top1"] >= saved["top1"] and len(saved["history"]) == 10
    for label in ("simmim", "mae", "byol", "simmim-single-token"):
        row = rows[label]
        assert row["method"] == label.split("-")[0] and row["pretrain_epochs"] == 1
        assert row["pretrain_seconds"] > 0 and row["peak_memory_mb"] > 0
        assert row["batch_size"] == 64
    # The ablation really masked single 4 px tokens at ratio 0.75.
    ablation = (tmp_path / "runs" / "simmim-single-token" / "config.yaml").read_text()
    assert "mask_patch_size: 4" in ablation and "mask_ratio: 0.75" in ablation

    markdown = (tmp_path / "results.md").read_text()
    assert "| simmim-single-token | simmim |" in markdown
    assert f"--config {SMOKE}" in markdown
    for name in ("accuracy.png", "loss_curves.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
    assert (tmp_path / "runs" / "mae" / "eval" / "finetune.json").is_file()

    # The same command again trains and evaluates nothing, except a run killed
    # after its last checkpoint (no metrics.json yet), which resumes.
    shutil.rmtree(tmp_path / "runs" / "mae" / "eval")
    (tmp_path / "runs" / "mae" / "metrics.json").unlink()
    again = run_cli(*args, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already pretrained") == 3
    assert "[benchmark] mae: resuming" in again.stdout
    assert again.stdout.count("already evaluated") == 3 * 2 + 3 + 1
    assert "pretraining (" not in again.stdout
    rerun = {
        r["label"]: r
        for r in json.loads((tmp_path / "results.json").read_text())["rows"]
    }
    assert rerun["mae"]["resumed"] is True
    for label, row in rows.items():
        same = {k: v for k, v in rerun[label].items() if "seconds" not in k}
        if label == "mae":
            same.pop("resumed")
            same.pop("peak_memory_mb")
        assert same.items() <= row.items(), label  # the same accuracies
