"""From a run config to its objects (``lightly_simmim.build``): the method and its
components by entry point name, and the datasets of a run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import Subset

from lightly_simmim import registry
from lightly_simmim.build import (
    build_method,
    dataset_splits,
    method_class,
    method_settings,
    subset,
)
from lightly_simmim.config import Config, ConfigError, load_config
from lightly_simmim.data import DatasetNotFoundError, build_dataset
from lightly_simmim.heads import SimMIMPredictionHead
from lightly_simmim.loss import SimMIMLoss
from lightly_simmim.registry import UnknownComponentError

Installer = Callable[[str, str, dict[str, str]], Path]

# The CPU default's ViT at depth 1 and 16 wide: built in milliseconds.
TINY = ["encoder.kwargs.depth=1", "encoder.kwargs.embed_dim=16"]


def _config(*overrides: str) -> Config:
    return load_config("fashion_mnist_cpu", [*TINY, *overrides])


def test_build_method__the_methods_own_components_by_default() -> None:
    method = build_method(_config())
    assert type(method) is registry.get("methods", "simmim")
    assert type(method.model.head) is SimMIMPredictionHead  # type: ignore[union-attr]
    assert type(method.model.loss) is SimMIMLoss  # type: ignore[union-attr]
    # The online classifier is sized by the dataset: Fashion-MNIST's 10 classes.
    assert method.online_classifier is not None
    assert method.online_classifier.classification_head.out_features == 10
    assert build_method(_config(), with_classes=False).online_classifier is None


def test_build_method__components_by_entry_point_name() -> None:
    # lightly's MAETransform through the `lightly.transforms` entry point "mae".
    method = build_method(_config("method.transform=mae", "method.head=simmim"))
    assert method.transform_factory is registry.get("transforms", "mae")
    assert method.head_factory is SimMIMPredictionHead
    image = Image.fromarray(np.zeros((28, 28), dtype=np.uint8))  # grayscale PIL
    views = method.default_transform()(image)
    assert [tuple(view.shape) for view in views] == [(1, 32, 32)]


def test_build_method__unknown_component_suggests_the_nearest() -> None:
    with pytest.raises(UnknownComponentError, match="Did you mean 'simmim'"):
        build_method(_config("method.head=simim"))


def test_method_class__third_party_method_by_name(install_plugin: Installer) -> None:
    install_plugin(
        "tiny-methods",
        """
        [lightly.methods]
        quiet-simmim = tiny_methods:QuietSimMIM
        not-a-method = tiny_methods:NotAMethod
        """,
        {
            "tiny_methods": """
            from lightly_simmim.methods.simmim import SimMIMMethod

            class QuietSimMIM(SimMIMMethod):
                pass

            class NotAMethod:
                pass
            """
        },
    )
    config = _config("method.name=quiet-simmim", "method.mask_patch_size=8")
    method = build_method(config, with_classes=False)
    assert type(method).__name__ == "QuietSimMIM"
    assert type(method).__module__ == "tiny_methods"
    with pytest.raises(
        ConfigError, match=r"not a lightly_simmim\.methods\.PretrainMethod"
    ):
        method_class(_config("method.name=not-a-method"))


def test_method_settings__options_checked_against_the_settings_class() -> None:
    settings = method_settings(_config("method.mask_ratio=0.5"))
    assert isinstance(settings, method_class(_config()).Settings)
    assert settings.mask_ratio == 0.5
    with pytest.raises(ConfigError, match="Did you mean 'mask_ratio'"):
        method_settings(_config("method.mask_ratoi=0.5"))


def test_subset__evenly_spaced_indices() -> None:
    dataset = build_dataset("fashion-mnist-embedded", train=False)  # 2,000 images
    picked = subset(dataset, 3)
    assert isinstance(picked, Subset)
    # floor(i * 2000 / 3) for i = 0..2, written out.
    assert picked.indices == [0, 666, 1333]
    assert subset(dataset, None) is dataset
    assert subset(dataset, 2_000) is dataset and subset(dataset, 9_999) is dataset


def test_dataset_splits__limits_spread_over_each_split() -> None:
    splits = dataset_splits(_config("data.limit_train=20", "data.limit_eval=8"))
    assert set(splits) == {"train", "memory", "test"}
    train, test = splits["train"], splits["test"]
    assert isinstance(train, Subset) and isinstance(test, Subset)
    assert train.indices == [i * 10_000 // 20 for i in range(20)]
    assert test.indices == [i * 2_000 // 8 for i in range(8)]
    # The kNN memory bank is the training subset itself, built once.
    assert splits["memory"] is train
    full = build_dataset("fashion-mnist-embedded", train=False)
    assert [test[i][1] for i in range(8)] == [full[i * 250][1] for i in range(8)]
    # Evaluation only: no pretraining split.
    assert set(dataset_splits(_config(), train=False)) == {"memory", "test"}


def test_dataset_splits__missing_data_says_how_to_point_the_config(
    tmp_path: Path,
) -> None:
    config = _config("data.dataset=cifar10", f"data.root={tmp_path / 'none'}")
    with pytest.raises(DatasetNotFoundError, match=r"--set data\.root=PATH"):
        dataset_splits(config)
