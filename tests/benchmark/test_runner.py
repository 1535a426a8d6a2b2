"""The runner's pieces and its refusals, without a full benchmark (see test_smoke)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from lightly_simmim.benchmark import (
    BenchmarkConfig,
    BenchmarkError,
    RawPixels,
    load_benchmark_config,
    method_configs,
    run_benchmark,
)
from lightly_simmim.benchmark.runner import single_token_config
from lightly_simmim.config import ConfigError, dump_config, read_yaml
from lightly_simmim.data import DatasetNotFoundError

SMOKE = (
    Path(__file__).resolve().parents[2]
    / "benchmarks"
    / "configs"
    / "fashion_mnist_smoke.yaml"
)


def _smoke(tmp_path: Path, *overrides: str) -> BenchmarkConfig:
    return load_benchmark_config(SMOKE, [f"output_dir={tmp_path}", *overrides])


def test_raw_pixels__flattens_what_the_transform_gives() -> None:
    def transform(image: object) -> torch.Tensor:
        return torch.zeros(1, 4, 4)

    baseline = RawPixels(transform)
    assert baseline.eval_transform() is transform
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert torch.equal(baseline(images), images.reshape(2, 48))


def test_single_token_config__one_patch_masks(tmp_path: Path) -> None:
    config = method_configs(_smoke(tmp_path))["simmim"]
    ablation = single_token_config(config, patch_size=4, mask_ratio=0.75)
    assert ablation.method.options == {"mask_patch_size": 4, "mask_ratio": 0.75}
    assert config.method.options["mask_patch_size"] == 8  # the original is unchanged
    byol = method_configs(_smoke(tmp_path))["byol"]
    with pytest.raises(ConfigError, match="no mask_patch_size"):
        single_token_config(byol, patch_size=4, mask_ratio=0.75)


def test_run_benchmark__single_token_of_a_non_masked_row(tmp_path: Path) -> None:
    benchmark = _smoke(tmp_path, "baselines.single_token=byol")
    with pytest.raises(ConfigError, match="not a masked-image method row"):
        run_benchmark(benchmark)
    assert not (tmp_path / "runs").exists()  # refused before anything trained


@pytest.mark.parametrize("label", ["from-scratch", "raw-pixels", "simmim-single-token"])
def test_run_benchmark__a_method_row_named_as_a_baseline_is_refused(
    tmp_path: Path, label: str
) -> None:
    """Such a row shared the baseline's run folder and was averaged with it as if
    they were two seeds of one row (exit 0)."""
    benchmark = _smoke(
        tmp_path, f"methods.{label}={{method: {{name: simmim, mask_patch_size: 8}}}}"
    )
    with pytest.raises(ConfigError, match=f"methods.{label}: this benchmark adds"):
        run_benchmark(benchmark)
    assert not (tmp_path / "runs").exists()  # refused before anything trained


def test_run_benchmark__a_row_the_method_refuses_is_named(tmp_path: Path) -> None:
    benchmark = _smoke(tmp_path, "methods.simmim.method.mask_patch_size=32")
    with pytest.raises(ConfigError, match=r"^methods\.simmim: mask_ratio 0\.6 masks"):
        run_benchmark(benchmark)
    assert not (tmp_path / "runs").exists()


def test_run_benchmark__missing_data_names_the_benchmark_key(tmp_path: Path) -> None:
    benchmark = _smoke(
        tmp_path, "base.data.dataset=fashion-mnist", f"base.data.root={tmp_path}/no"
    )
    with pytest.raises(DatasetNotFoundError, match=r"base\.data\.root"):
        run_benchmark(benchmark)
    assert not (tmp_path / "runs").exists()


def test_run_benchmark__refuses_a_run_folder_of_another_config(tmp_path: Path) -> None:
    benchmark = _smoke(tmp_path)
    config = method_configs(benchmark)["simmim"]
    changed = replace(config, seed=config.seed + 1)
    dump_config(changed, tmp_path / "runs" / "simmim" / "config.yaml")
    # A usage error (the CLI exits with 2), not a failed pretraining.
    with pytest.raises(ConfigError, match="different config"):
        run_benchmark(benchmark)


@pytest.mark.slow
def test_run_benchmark__failed_pretraining_says_how_to_go_on(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # 10 images make no batch of 64: the pretrain child exits with status 2.
    benchmark = _smoke(tmp_path, "base.data.limit_train=10")
    failed = "'simmim' failed \\(exit status 2\\)"
    with pytest.raises(BenchmarkError, match=failed) as info:
        run_benchmark(benchmark)
    assert "make no full batch" in capfd.readouterr().err
    # The way on names the folder a config-changing fix must delete first.
    assert f"needs {str(tmp_path / 'runs' / 'simmim')!r} deleted first" in str(
        info.value
    )


def test_evaluation_sections__change_the_evaluation_not_the_run(
    tmp_path: Path,
) -> None:
    from lightly_simmim.benchmark.runner import _same_config

    config = method_configs(_smoke(tmp_path))["simmim"]
    folder = tmp_path / "runs" / "simmim"
    dump_config(config, folder / "config.yaml")
    evaluation = replace(
        config,
        finetune=replace(config.finetune, epochs=7, crop_min_scale=0.5),
        eval=replace(config.eval, knn_k=5, dataset=None),
    )
    assert _same_config(folder, evaluation)
    assert not _same_config(folder, replace(config, seed=config.seed + 1))


@pytest.mark.slow
def test_run_benchmark__seeds_and_per_layer_probes(tmp_path: Path) -> None:
    # The smoke benchmark cut to two rows on 128 images, two seeds, byol at one.
    config = read_yaml(SMOKE)
    config["methods"] = {
        "simmim": config["methods"]["simmim"],
        "byol": {**config["methods"]["byol"], "seeds": [0]},
    }
    config["base"]["data"].update(limit_train=128, limit_eval=64)
    config.update(output_dir=str(tmp_path), seeds=[0, 1], protocols=["knn", "layers"])
    config["baselines"]["raw_pixels"] = False
    config["linear"]["epochs"] = 2
    path = tmp_path / "benchmark.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_benchmark(load_benchmark_config(path))

    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == [
        "byol-seed0",
        "simmim-seed0",
        "simmim-seed1",
        "simmim-single-token-seed0",
        "simmim-single-token-seed1",
    ]
    assert (tmp_path / "baselines" / "from-scratch-seed1" / "eval").is_dir()
    # Each run trained at its own seed, so the two seeds differ.
    saved = {
        seed: json.loads(
            (
                tmp_path / "runs" / f"simmim-seed{seed}" / "eval" / "layers.json"
            ).read_text()
        )
        for seed in (0, 1)
    }
    assert saved[0]["layers"] != saved[1]["layers"]
    assert len(saved[0]["layers"]) == 2  # the smoke ViT's two blocks
    payload = json.loads((tmp_path / "results.json").read_text())
    assert [(r["label"], r["seed"]) for r in payload["rows"]] == [
        ("simmim", 0),
        ("simmim", 1),
        ("byol", 0),
        ("simmim-single-token", 0),
        ("simmim-single-token", 1),
        ("from-scratch", 0),
        ("from-scratch", 1),
    ]
    simmim = payload["summary"][0]
    knn = [r["knn_top1"] for r in payload["rows"][:2]]
    assert simmim["knn_top1"]["values"] == knn
    assert simmim["knn_top1"]["std"] == pytest.approx(abs(knn[0] - knn[1]) / 2**0.5)
    markdown = (tmp_path / "results.md").read_text()
    assert "| simmim | simmim | vit_tiny_patch16_224 | 1 | 64 | 0, 1 | " in markdown
    assert "(1 run)" in markdown  # byol's single seed
    assert (tmp_path / "layers.png").is_file()
