"""A third-party distribution's loss and dataset, picked by name in a config, train.

The distribution is real (if tiny): a ``*.dist-info`` folder with ``entry_points.txt``
and a module on ``sys.path``, found through ``importlib.metadata`` exactly as an
installed package would be; nothing in this package names it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lightly_simmim import registry
from lightly_simmim.build import build_method
from lightly_simmim.config import ConfigError, load_config
from lightly_simmim.train import pretrain

PLUGIN = '''
import torch
from PIL import Image
from torch import nn


class CountingL2(nn.Module):
    """Mean squared error on masked pixels; counts its calls in a class attribute."""

    calls = 0

    def forward(self, reconstruction, images, mask):
        CountingL2.calls += 1
        side = images.shape[-1] // mask.shape[-1]
        pixels = mask.repeat_interleave(side, 1).repeat_interleave(side, 2)
        weight = pixels.unsqueeze(1).to(images.dtype)
        return ((reconstruction - images) ** 2 * weight).sum() / weight.sum()


class Stripes:
    """Two classes of 28x28 grayscale images: horizontal or vertical stripes."""

    description = "stripes: 2 classes, 40 images per split"

    def num_classes(self, root):
        return 2

    def __call__(self, root, split, transform, options):
        return StripesDataset(transform)


class StripesDataset(torch.utils.data.Dataset):
    classes = ["horizontal", "vertical"]

    def __init__(self, transform):
        self.transform = transform

    def __len__(self):
        return 40

    def __getitem__(self, index):
        label = index % 2
        grid = torch.arange(28).view(1, 28) % 4 < 2
        stripes = grid.expand(28, 28) if label else grid.t().expand(28, 28)
        image = Image.fromarray((stripes * 255).to(torch.uint8).numpy(), mode="L")
        return (self.transform(image) if self.transform else image), label


stripes = Stripes()
'''

ENTRY_POINTS = """
[lightly.losses]
counting-l2 = stripes_plugin:CountingL2

[lightly.datasets]
stripes = stripes_plugin:stripes
"""


@pytest.fixture
def stripes_plugin(install_plugin: Callable[[str, str, dict[str, str]], Path]) -> None:
    install_plugin("stripes-plugin", ENTRY_POINTS, {"stripes_plugin": PLUGIN})


TINY = [
    "data.dataset=stripes",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.limit_eval=16",
    "trainer.epochs=1",
    "trainer.max_steps=2",
    "trainer.progress_bar=false",
    "trainer.reconstruction_every_n_epochs=0",
    "encoder.kwargs.depth=1",
    "encoder.kwargs.embed_dim=32",
]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_plugin__loss_and_dataset_by_name_train_a_step(
    stripes_plugin: None, tmp_path: Path
) -> None:
    config = load_config(
        "fashion_mnist_cpu",
        [*TINY, "method.loss=counting-l2", f"output_dir={tmp_path}"],
    )
    assert "stripes" in registry.list_names("datasets")
    method = build_method(config)
    loss_cls = registry.get("losses", "counting-l2")
    assert isinstance(method.model.loss, loss_cls)  # type: ignore[union-attr]
    assert method.online_classifier is not None  # sized by the plugin's num_classes

    folder = pretrain(config)

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["global_step"] == 2
    assert loss_cls.calls >= 2  # the plugin's loss trained the steps
    assert metrics["knn"]["train_images"] == 40  # kNN on the plugin's data
    assert torch.isfinite(torch.tensor(metrics["knn"]["top1"]))
    assert "loss: counting-l2" in (folder / "config.yaml").read_text()


def test_plugin__unknown_loss_name_lists_the_known_ones(
    stripes_plugin: None,
) -> None:
    config = load_config("fashion_mnist_cpu", [*TINY, "method.loss=counting-l1"])
    with pytest.raises(ValueError, match="Did you mean 'counting-l2'"):
        build_method(config)


def test_plugin__method_without_a_pluggable_head_refuses_one() -> None:
    config = load_config(
        "fashion_mnist_cpu",
        ["method={name: mae, decoder_dim: 16, decoder_depth: 1}", "method.head=simmim"],
    )
    with pytest.raises(ValueError, match="has no pluggable head"):
        build_method(config, with_classes=False)
    with pytest.raises(ConfigError, match=r"'method.head' = 3 must be str or null"):
        load_config("fashion_mnist_cpu", ["method.head=3"])
