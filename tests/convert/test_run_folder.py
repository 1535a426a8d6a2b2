"""``lightly-simmim convert``: to timm, and to a run folder evaluate / export /
pretrain --init-from take (real processes on tiny official-layout checkpoints)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from official_layout import config, official_vit, save_official

from lightly_simmim.convert.run_folder import fit_mask_patch, write_run_folder
from lightly_simmim.runs import load_run

Cli = Callable[..., subprocess.CompletedProcess[str]]

# The converted ViT is 3-channel at 32 px; the embedded (grayscale) images are
# converted to RGB and ImageNet-normalised for it.
EMBEDDED = [
    "data.dataset=fashion-mnist-embedded",
    "data.root=null",
    "data.limit_train=32",
    "data.limit_eval=16",
    "data.batch_size=16",
    "data.num_workers=0",
]


@pytest.fixture
def official_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    official = official_vit("pretrain", dim=16, depth=2, heads=2, patch=8, img=32)
    return save_official(
        tmp_path / "simmim_pretrain__vit.pth", official, config("vit", 32)
    )


def test_write_run_folder__config_and_weights_rebuild_the_model(
    official_file: Path, tmp_path: Path
) -> None:
    folder, conversion = write_run_folder(official_file, tmp_path / "runs" / "vit")
    written = yaml.safe_load((folder / "config.yaml").read_text())
    assert written["encoder"]["name"] == conversion.target.timm_name
    # The file's DATA section has 32 px cells: one on these 32 px images, all
    # masked, so the folder masks the largest cells that leave some visible.
    assert written["method"]["mask_patch_size"] == 16
    assert any("mask_patch_size 32 does not tile 32 px" in n for n in conversion.notes)
    assert written["data"]["input_size"] == 32 and written["data"]["mean"] is None
    _, method, _, _ = load_run(folder)
    ours = method.state_dict()
    for key, value in conversion.model.state_dict().items():
        assert torch.equal(ours[f"model.{key}"], value), key
    with pytest.raises(FileExistsError, match="not an empty folder"):
        write_run_folder(official_file, folder)


@pytest.mark.slow
def test_convert_cli__run_folder_evaluates_exports_and_pretrains_further(
    run_cli: Cli,
    assert_user_error: Callable[..., str],
    official_file: Path,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "runs" / "official"
    converted = run_cli(
        "convert", str(official_file), "--to", "run", "--output", str(folder)
    )
    assert converted.returncode == 0, converted.stderr
    assert "--init-from" in converted.stdout
    evaluated = run_cli("evaluate", str(folder), "--set", *EMBEDDED)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((folder / "eval" / "knn.json").read_text())["top1"] >= 0
    assert run_cli("export", str(folder)).returncode == 0
    # A converted folder holds weights, not a training state: --resume says so.
    err = assert_user_error(run_cli("pretrain", "--resume", str(folder)), 2)
    assert "converted from an official SimMIM checkpoint" in err
    # Continued pretraining from its weights, with a new optimiser and schedule.
    further = run_cli(
        "pretrain",
        "--config",
        str(folder / "config.yaml"),
        "--init-from",
        str(folder),
        "--set",
        *EMBEDDED,
        f"output_dir={tmp_path / 'runs'}",
        "name=further",
        "trainer.epochs=1",
        "trainer.progress_bar=false",
        "trainer.reconstruction_every_n_epochs=0",
    )
    assert further.returncode == 0, further.stderr
    assert f"initialised from {folder / 'checkpoints' / 'last.ckpt'}" in further.stdout


def test_convert_cli__timm_prints_how_to_load(
    run_main: Callable[..., object], official_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "vit.safetensors"
    result = run_main(
        "convert", str(official_file), "--to", "timm", "--output", str(output)
    )
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    assert "timm.create_model('beit_" in result.stdout  # type: ignore[attr-defined]
    assert output.is_file() and output.with_suffix(".json").is_file()


@pytest.mark.parametrize(
    ("official", "side", "patch", "expected"),
    [
        (32, 192, 4, 32),  # the paper's Swin cells fit: kept
        (32, 224, 16, 32),  # the paper's ViT cells fit: kept
        (32, 32, 4, 16),  # one cell: 2 x 2 of 16 px instead
        (32, 48, 16, 16),  # 48 / 32 does not divide: 3 x 3 of 16 px
        (32, 16, 16, 32),  # nothing smaller fits: kept, the method names it
    ],
)
def test_fit_mask_patch__keeps_or_shrinks_the_official_cells(
    official: int, side: int, patch: int, expected: int
) -> None:
    assert fit_mask_patch(official, side, patch) == expected
