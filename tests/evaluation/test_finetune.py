"""Tests for fine-tuning: layer decay, schedule, and learning a tiny task."""

import dataclasses
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightly_simmim.encoders import from_timm
from lightly_simmim.evaluation import (
    FinetuneModule,
    FinetuneRecipe,
    classification_transforms,
    drop_path_rate,
    finetune,
    finetune_optimizer,
    resolve_layer_decay,
    timm_classifier,
)
from lightly_simmim.optim import create_optimizer

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*isinstance\\(treespec, LeafSpec\\).*",
)

# The shared tiny models (conftest.py) on 16 px images (ConvNeXt: any size), with two
# blocks (or a stage of two) so that layer decay has layers to decay over.
SHAPES: dict[str, dict[str, Any]] = {
    "vit": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2},
    "beit": {"img_size": 16, "patch_size": 4},
    "swin": {"img_size": 16, "depths": (2, 1), "window_size": 2},
    "convnext": {"depths": (1, 2, 1, 1)},
}
# tiny_model(family, **overrides) -> a tiny timm model of SHAPES[family]
TinyModel = Callable[..., nn.Module]


@pytest.fixture
def tiny_model(tiny_timm_model: TinyModel) -> TinyModel:
    def create(family: str, **overrides: Any) -> nn.Module:
        return tiny_timm_model(family, **{**SHAPES[family], **overrides})

    return create


def _color_task(num: int, size: int = 16, seed: int = 0) -> TensorDataset:
    """4 classes: channel 0, 1 or 2 is brighter than the others, or none is.

    Separable after any global pooling (the channel means), so a from-scratch
    depth-1 model learns it in a few dozen steps; chance is 25 %.
    """
    gen = torch.Generator().manual_seed(seed)
    images = 0.5 * torch.rand(num, 3, size, size, generator=gen)
    labels = torch.randint(0, 4, (num,), generator=gen)
    for i, label in enumerate(labels.tolist()):
        if label < 3:
            images[i, label] += 0.5
    return TensorDataset(images, labels)


# A plain recipe (no mixing, no head init scale) that learns the colour task fast.
SHORT = FinetuneRecipe(
    epochs=3,
    warmup_epochs=1,
    batch_size=32,
    base_lr=0.05,
    mixup_alpha=0.0,
    cutmix_alpha=0.0,
    head_init_scale=1.0,
)


# ------------------------------------------------------------------- layer decay


def _expected_layer_ids(family: str, names: list[str]) -> tuple[dict[str, int], int]:
    """Layer id of every parameter, written out from the BEiT / SimMIM convention.

    Layer 0: patch embedding / stem and the tokens added to it; layers 1..L: the
    blocks in order (Swin / ConvNeXt: every block of every stage, a stage's
    downsampling with its first block); L + 1: the classifier (and fc_norm /
    the head norm). timm groups the final norm with the last block.

    Returns:
        (name -> layer id, L).
    """
    blocks: list[str] = []  # block prefixes in forward order
    for name in names:
        found = re.match(
            r"^(blocks\.\d+|layers\.\d+\.blocks\.\d+|stages\.\d+\.blocks\.\d+)\.", name
        )
        if found and found[1] not in blocks:
            blocks.append(found[1])
    last = len(blocks)
    ids = {}
    for name in names:
        stage_down = re.match(r"^(layers|stages)\.(\d+)\.downsample\.", name)
        if name.startswith(("head.", "fc_norm.")):
            ids[name] = last + 1
        elif name.startswith("norm."):
            ids[name] = last
        elif stage_down:
            first = f"{stage_down[1]}.{stage_down[2]}.blocks.0"
            ids[name] = blocks.index(first) + 1
        elif any(name.startswith(block + ".") for block in blocks):
            ids[name] = 1 + next(
                i for i, b in enumerate(blocks) if name.startswith(b + ".")
            )
        else:  # patch_embed / stem / cls_token / pos_embed / rel_pos_bias
            ids[name] = 0
    return ids, last


def _finetune_optimizer(model: nn.Module, **kwargs: Any) -> torch.optim.Optimizer:
    # timm's weight-decay choice for the tables, to compare with create_optimizer
    # (tests/evaluation/test_paper_vit.py checks the official one).
    return finetune_optimizer(
        model, betas=(0.9, 0.999), eps=1e-8, rel_pos_weight_decay=False, **kwargs
    )


@pytest.mark.parametrize("factory", [create_optimizer, _finetune_optimizer])
@pytest.mark.parametrize("family", sorted(SHAPES))
def test_create_optimizer__layer_scales_match_decay_formula(
    family: str, factory: Callable[..., torch.optim.Optimizer], tiny_model: TinyModel
) -> None:
    decay = 0.7
    # Through the adapter, as finetune does: the wrapped timm model plus a new head.
    model = timm_classifier(from_timm(tiny_model(family)), num_classes=5)
    optimizer = factory(model, lr=1e-3, weight_decay=0.05, layer_decay=decay)
    names = {id(p): n for n, p in model.named_parameters()}
    ids, last = _expected_layer_ids(family, list(names.values()))
    assert last >= 2  # the models have several blocks to decay over
    seen = set()
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            seen.add(name)
            num_layers = last + 1  # blocks + head, as in BEiT's `num_layers + 1`
            expected = decay ** (num_layers - ids[name])
            assert group["lr_scale"] == pytest.approx(expected), name
            # SimMIM's recipe: no decay on 1-D parameters, tokens, position tables.
            no_decay = (
                param.ndim <= 1
                or name in {"cls_token", "pos_embed"}
                or "relative_position_bias_table" in name
            )
            assert group["weight_decay"] == (0.0 if no_decay else 0.05), name
    assert seen == set(names.values())  # every parameter is optimised
    # The head is undecayed, the stem decayed the most.
    head_scales = {
        g["lr_scale"]
        for g in optimizer.param_groups
        for p in g["params"]
        if names[id(p)].startswith("head")
    }
    assert head_scales == {1.0}


def test_create_optimizer__no_layer_decay_is_one_scale(tiny_model: TinyModel) -> None:
    model = timm_classifier(tiny_model("vit"), num_classes=3)
    for decay in (None, 1.0):
        optimizer = create_optimizer(model, lr=1e-3, layer_decay=decay)
        assert all(g.get("lr_scale", 1.0) == 1.0 for g in optimizer.param_groups)


@pytest.mark.parametrize(
    ("family", "expected"),
    [("vit", 0.65), ("beit", 0.65), ("swin", 0.9), ("convnext", 0.9)],
)
def test_resolve_layer_decay__auto_is_the_papers_per_family(
    family: str, expected: float, tiny_model: TinyModel
) -> None:
    encoder = from_timm(tiny_model(family))
    assert resolve_layer_decay(encoder, "auto") == expected
    assert resolve_layer_decay(encoder, 0.5) == 0.5


class _StepRates(pl.Callback):
    """The learning rate of every parameter (by name) at each optimiser step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: object
    ) -> None:
        assert isinstance(module, FinetuneModule)
        names = {id(p): n for n, p in module.model.named_parameters()}
        groups = trainer.optimizers[0].param_groups
        self.steps.append(
            {names[id(p)]: float(g["lr"]) for g in groups for p in g["params"]}
        )


def test_finetune_module__schedule_applies_layer_scales_per_step(
    tiny_model: TinyModel,
) -> None:
    recipe = FinetuneRecipe(epochs=2, warmup_epochs=1, batch_size=16, base_lr=0.1)
    module = FinetuneModule(timm_classifier(tiny_model("vit"), 4), 4, recipe)
    rates = _StepRates()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[rates],
    )
    loader = DataLoader(_color_task(64), batch_size=16)  # 4 steps per epoch
    trainer.fit(module, loader, loader)
    # Written out: lr = base * 16 / 512; 4 warmup steps (from warmup_lr) of 8 in
    # all, then the cosine from lr to min_lr over all 8 steps, warmup inside.
    lr, low = 0.1 * 16 / 512, 2.5e-7 * 16 / 512

    def expected(step: int) -> float:
        if step < 4:
            return low + (lr - low) * step / 4
        return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * step / 8))

    assert len(rates.steps) == 8
    ids, last = _expected_layer_ids("vit", list(rates.steps[0]))
    assert last == 2  # two blocks: layers 0 (stem) .. 3 (head)
    for step, by_name in enumerate(rates.steps):
        # Every parameter gets the schedule's rate x 0.65 ** (L + 1 - its layer).
        for name, param_lr in by_name.items():
            scale = 0.65 ** (last + 1 - ids[name])
            assert param_lr == pytest.approx(expected(step) * scale), (step, name)
    head_lr = expected(7)
    # Patch embedding: two blocks and the head above it.
    assert rates.steps[-1]["patch_embed.proj.weight"] == pytest.approx(
        head_lr * 0.65**3
    )
    assert module.history[1]["lr"] == pytest.approx(head_lr)  # the last step's
    assert set(module.history) == {0, 1}


# ---------------------------------------------------------------------- training


def test_finetune__vit_from_scratch_learns_and_is_deterministic(
    tmp_path: Path, tiny_model: TinyModel
) -> None:
    encoder = from_timm(tiny_model("vit"))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    run = {
        "train_dataset": _color_task(128),
        "val_dataset": _color_task(64, seed=1),
        "num_classes": 4,
        "recipe": SHORT,
        "train_transform": None,
        "eval_transform": None,
        "seed": 3,
    }
    result = finetune(encoder, output_dir=tmp_path, **run)
    assert result["top1"] >= 75.0  # chance: 25 %
    assert result["top5"] == 100.0  # 4 classes
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2]
    assert result["history"][-1]["top1"] == result["top1"]
    best = max(h["top1"] for h in result["history"])
    assert result["best_top1"] == best >= result["top1"]
    assert result["history"][result["best_epoch"]]["top1"] == best
    assert result["history"][0]["train_loss"] > result["history"][-1]["train_loss"]
    assert result["settings"]["layer_decay"] == 0.65
    assert result["settings"]["lr"] == pytest.approx(0.05 * 32 / 512)
    # The caller's encoder is untouched (a copy is fine-tuned).
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Written as JSON, and the same again with the same seed.
    assert json.loads((tmp_path / "finetune.json").read_text()) == json.loads(
        json.dumps(result)
    )
    again = finetune(encoder, **run)
    assert again["history"] == result["history"]


def test_finetune__a_nan_loss_is_an_error_and_nothing_is_written(
    tmp_path: Path, tiny_model: TinyModel
) -> None:
    """A fine-tune whose loss became NaN reported ~chance accuracy with exit 0 and
    replaced an earlier good finetune.json; now it stops before writing."""
    (tmp_path / "finetune.json").write_text('{"top1": 80.0}')
    recipe = dataclasses.replace(
        SHORT, epochs=2, warmup_epochs=0, base_lr=1e12, clip_grad=None
    )
    with pytest.raises(FloatingPointError, match="loss became NaN or infinite"):
        finetune(
            from_timm(tiny_model("vit")),
            _color_task(64),
            _color_task(32, seed=1),
            4,
            recipe,
            train_transform=None,
            eval_transform=None,
            output_dir=tmp_path,
        )
    assert json.loads((tmp_path / "finetune.json").read_text()) == {"top1": 80.0}


def test_finetune__convnext_default_transforms_and_mixup(tiny_model: TinyModel) -> None:
    # The official recipe's augmentation and mixing, on (C, H, W) tensor images.
    result = finetune(
        from_timm(tiny_model("convnext")),
        _color_task(64, size=32),
        _color_task(32, size=32, seed=1),
        4,
        FinetuneRecipe(epochs=1, warmup_epochs=0, batch_size=16, base_lr=0.1),
        input_size=32,  # ConvNeXt has no img_size to read it from
        normalize=None,
    )
    assert 0.0 <= result["top1"] <= 100.0 and len(result["history"]) == 1
    assert result["settings"]["mixup"] is True
    assert result["settings"]["layer_decay"] == 0.9


def test_finetune__reports_drop_path_set_at_creation(tiny_model: TinyModel) -> None:
    encoder = from_timm(tiny_model("vit", drop_path_rate=0.1))
    assert drop_path_rate(timm_classifier(encoder, 3)) == pytest.approx(0.1)
    assert drop_path_rate(tiny_model("vit")) == 0.0


def test_finetune__trains_an_encoder_handed_over_in_eval_mode(
    tiny_model: TinyModel,
) -> None:
    # load_run returns methods in eval mode; fine-tuning must still train with
    # drop path on (Lightning keeps each module's mode as it finds it).
    encoder = from_timm(tiny_model("vit", drop_path_rate=0.5)).eval()
    modes: list[bool] = []

    def record(module: nn.Module, args: object) -> None:
        modes.append(module.training)

    # The hook is copied along with the encoder into the fine-tuned model.
    drop_path = next(m for m in encoder.modules() if type(m).__name__ == "DropPath")
    drop_path.register_forward_pre_hook(record)
    finetune(
        encoder,
        _color_task(32),
        _color_task(16, seed=1),
        4,
        FinetuneRecipe(epochs=1, warmup_epochs=0, batch_size=16, base_lr=0.01),
        train_transform=None,
        eval_transform=None,
    )
    # 2 training steps in train mode, then the validation pass in eval mode.
    assert modes[:2] == [True, True] and modes[-1] is False


def test_timm_classifier__new_head_and_copy(tiny_model: TinyModel) -> None:
    encoder = from_timm(tiny_model("swin"))
    model = timm_classifier(encoder, num_classes=7)
    logits = model(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 7)
    assert model is not encoder.timm_model
    shared = timm_classifier(encoder, num_classes=7, copy_model=False)
    assert shared is encoder.timm_model


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 1}, ValueError, "at least 2"),
        (
            {"recipe": FinetuneRecipe(epochs=1, warmup_epochs=0, batch_size=998)},
            ValueError,
            "fewer than one batch",
        ),
        ({"train_transform": "auto"}, ValueError, "callable, 'default' or None"),
    ],
)
def test_finetune__invalid_arguments_raise(
    kwargs: dict, error: type[Exception], match: str, tiny_model: TinyModel
) -> None:
    run = {
        "encoder": from_timm(tiny_model("vit")),
        "train_dataset": _color_task(32),
        "val_dataset": _color_task(8),
        "num_classes": 4,
        "recipe": FinetuneRecipe(epochs=1, warmup_epochs=0, batch_size=8),
        **kwargs,
    }
    with pytest.raises(error, match=match):
        finetune(**run)


def test_finetune__default_transforms_need_input_size_for_convnext(
    tiny_model: TinyModel,
) -> None:
    with pytest.raises(ValueError, match="pass input_size"):
        finetune(
            from_timm(tiny_model("convnext")),
            _color_task(32),
            _color_task(8),
            4,
            FinetuneRecipe(epochs=1, warmup_epochs=0, batch_size=8),
        )


def test_finetune__rejects_non_timm_module() -> None:
    with pytest.raises(TypeError, match="timm model"):
        finetune(
            nn.Flatten(),
            _color_task(32),
            _color_task(8),
            4,
            FinetuneRecipe(epochs=1, warmup_epochs=0, batch_size=8),
        )


def test_finetune_recipe__invalid_settings_raise() -> None:
    with pytest.raises(ValueError, match="warmup_epochs"):
        FinetuneRecipe(epochs=5)  # default warmup of 20 epochs is longer
    with pytest.raises(ValueError, match="layer_decay"):
        FinetuneRecipe(layer_decay=1.5)
    with pytest.raises(ValueError, match="crop_min_scale"):
        FinetuneRecipe(crop_min_scale=0.0)


def test_finetune__default_train_crop_uses_the_recipes_min_scale() -> None:
    for scale in (0.08, 0.5):
        recipe = FinetuneRecipe(crop_min_scale=scale, train_crop="resized")
        train, _ = classification_transforms(64, 3, None, recipe)
        crops = [
            step
            for step in _steps(train)
            if type(step).__name__ == "RandomResizedCropAndInterpolation"
        ]
        assert [c.scale for c in crops] == [(scale, 1.0)]


def _steps(transform: Any) -> list[Any]:
    """Every leaf step of nested ``Compose`` transforms, in order."""
    inner = getattr(transform, "transforms", None)
    if inner is None:
        return [transform]
    return [step for part in inner for step in _steps(part)]
