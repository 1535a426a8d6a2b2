"""Tests for the linear probe on frozen features and the JSON results."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lightly_simmim.evaluation import (
    LinearRecipe,
    linear_eval,
    linear_probe,
    write_results,
)
from lightly_simmim.settings import SettingError

# Short schedules: the cached-feature probe is then a fraction of a second.
FAST = LinearRecipe(epochs=10, warmup_epochs=1, batch_size=64)


def _clusters(
    num_classes: int, per_class: int, dim: int = 32, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian clusters far apart (linearly separable), with a train / test split.

    The dimensions have very different scales (1e-3 to 1e3), as MIM features do,
    which the probe's parameter-free batch norm must handle.
    """
    gen = torch.Generator().manual_seed(seed)
    centers = 6.0 * torch.randn(num_classes, dim, generator=gen)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    features = centers[labels] + torch.randn(len(labels), dim, generator=gen)
    features = features * torch.logspace(-3, 3, dim)
    test = torch.arange(len(labels)) % 4 == 0
    return features[~test], labels[~test], features[test], labels[test]


def test_linear_probe__separable_clusters_reach_100() -> None:
    train_x, train_y, test_x, test_y = _clusters(num_classes=10, per_class=40)
    result = linear_probe(train_x, train_y, test_x, test_y, num_classes=10, recipe=FAST)
    assert result == {"top1": 100.0, "top5": 100.0}


@pytest.mark.parametrize("optimizer", ["lars", "adamw"])
def test_linear_probe__other_optimizers_separate_clusters(optimizer: str) -> None:
    train_x, train_y, test_x, test_y = _clusters(num_classes=6, per_class=40)
    lr = 0.01 if optimizer == "adamw" else 0.1
    recipe = LinearRecipe(epochs=10, warmup_epochs=1, batch_size=64, lr=lr)
    result = linear_probe(
        train_x, train_y, test_x, test_y, 6, replace(recipe, optimizer=optimizer)
    )
    assert result["top1"] == 100.0


def test_linear_probe__random_labels_are_chance() -> None:
    gen = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(400, 16, generator=gen), torch.randn(2000, 16)
    train_y = torch.randint(0, 4, (400,), generator=gen)
    test_y = torch.randint(0, 4, (2000,), generator=gen)
    result = linear_probe(train_x, train_y, test_x, test_y, num_classes=4, recipe=FAST)
    # Chance is 25 %; the binomial std over 2000 test samples is ~1 %.
    assert abs(result["top1"] - 25.0) < 6.0
    assert result["top5"] == 100.0  # 4 classes: top-5 is top-4, always a hit


def test_linear_probe__top5_counts_hits_in_five_best() -> None:
    # 10 classes and features that say nothing: top-5 ~ 50 %, top-1 ~ 10 %.
    gen = torch.Generator().manual_seed(2)
    train_x, test_x = torch.randn(300, 8, generator=gen), torch.randn(2000, 8)
    train_y = torch.randint(0, 10, (300,), generator=gen)
    test_y = torch.randint(0, 10, (2000,), generator=gen)
    result = linear_probe(train_x, train_y, test_x, test_y, 10, FAST)
    assert result["top1"] < result["top5"]
    assert abs(result["top5"] - 50.0) < 8.0


def test_linear_probe__two_classes_top5_is_100() -> None:
    train_x, train_y, test_x, test_y = _clusters(num_classes=2, per_class=20)
    result = linear_probe(train_x, train_y, test_x, test_y, 2, FAST)
    assert result == {"top1": 100.0, "top5": 100.0}


def test_linear_probe__seeded_and_keeps_global_rng() -> None:
    gen = torch.Generator().manual_seed(3)
    train_x, test_x = torch.randn(100, 8, generator=gen), torch.randn(50, 8)
    train_y = torch.randint(0, 3, (100,), generator=gen)
    test_y = torch.randint(0, 3, (50,), generator=gen)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = linear_probe(train_x, train_y, test_x, test_y, 3, FAST, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    second = linear_probe(train_x, train_y, test_x, test_y, 3, FAST, seed=7)
    assert first == second


def test_linear_probe__last_batch_of_one_is_skipped() -> None:
    # 65 = 64 + 1: the single leftover feature cannot go through batch norm.
    train_x, train_y, test_x, test_y = _clusters(num_classes=5, per_class=20)
    train_x, train_y = train_x[:65], train_y[:65]
    result = linear_probe(train_x, train_y, test_x, test_y, 5, FAST)
    assert result["top1"] == 100.0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"train_labels": torch.tensor([0, 1, 5])}, r"labels must lie in \[0, 3\)"),
        ({"train_labels": torch.tensor([0, 1])}, "must have shape"),
        ({"test_features": torch.zeros(2, 5)}, "dimensions"),
        ({"train_features": torch.zeros(0, 4)}, "non-empty"),
        ({"num_classes": 1}, "at least 2"),
    ],
)
def test_linear_probe__invalid_inputs_raise(change: dict, match: str) -> None:
    kwargs = {
        "train_features": torch.randn(3, 4),
        "train_labels": torch.tensor([0, 1, 2]),
        "test_features": torch.randn(2, 4),
        "test_labels": torch.tensor([0, 2]),
        "num_classes": 3,
        "recipe": LinearRecipe(epochs=2, warmup_epochs=0),
        **change,
    }
    with pytest.raises(ValueError, match=match):
        linear_probe(**kwargs)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"epochs": 2, "warmup_epochs": 3}, "'warmup_epochs' = 3 must be at most"),
        ({"epochs": 0}, "'epochs' = 0 must be >= 1"),
        ({"lr": float("nan")}, "'lr' = nan must be > 0"),
    ],
)
def test_linear_recipe__out_of_range_settings_raise(change: dict, match: str) -> None:
    with pytest.raises(SettingError, match=match):
        LinearRecipe(**change)


def test_linear_eval__encoder_and_datasets_write_json(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = _clusters(num_classes=3, per_class=30, dim=16)
    # An "encoder" that maps (B, 1, 4, 4) images to their 16 pixels.
    encoder = nn.Flatten()
    train_set = TensorDataset(train_x.view(-1, 1, 4, 4), train_y)
    test_set = TensorDataset(test_x.view(-1, 1, 4, 4), test_y)
    result = linear_eval(
        encoder, train_set, test_set, 3, FAST, output_dir=tmp_path / "eval"
    )
    assert result == {"top1": 100.0, "top5": 100.0}
    written = json.loads((tmp_path / "eval" / "linear.json").read_text())
    assert written["top1"] == 100.0 and written["top5"] == 100.0
    assert written["settings"]["feature_dim"] == 16
    assert written["settings"]["num_train"] == len(train_x)
    assert written["settings"]["pooling"] == "default"


def test_write_results__atomic_overwrite_and_no_leftovers(tmp_path: Path) -> None:
    path = write_results({"top1": 1.0, "top5": 2.0}, tmp_path / "new", "knn")
    assert path == tmp_path / "new" / "knn.json"
    write_results({"top1": 3.0, "top5": 4.0}, tmp_path / "new", "knn")
    assert json.loads(path.read_text()) == {"top1": 3.0, "top5": 4.0}
    assert [p.name for p in path.parent.iterdir()] == ["knn.json"]


def test_write_results__bad_input_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_results({"top1": object()}, tmp_path, "linear")
    assert list(tmp_path.iterdir()) == []
    for name in ("", "a/b", ".."):
        with pytest.raises(ValueError, match="plain file name"):
            write_results({}, tmp_path, name)
