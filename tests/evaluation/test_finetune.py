"""Tests for fine-tuning: layer decay, schedule, and learning a tiny task."""

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import pytorch_lightning as pl
import timm
import torch
from timm.data import Mixup
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightly_simmim.encoders import SIMMIM_VIT_KWARGS, from_timm
from lightly_simmim.evaluation import (
    FinetuneModule,
    FinetuneRecipe,
    drop_path_rate,
    finetune,
    resolve_layer_decay,
    timm_classifier,
)
from lightly_simmim.optim import create_optimizer

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*isinstance\\(treespec, LeafSpec\\).*",
)

# Models of one or two blocks per stage on 16-32 px images.
BUILD: dict[str, Callable[[], nn.Module]] = {
    "vit": lambda: timm.create_model(
        "vit_tiny_patch16_224",
        img_size=16,
        patch_size=4,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=0,
    ),
    "beit": lambda: timm.create_model(
        "beit_base_patch16_224",
        img_size=16,
        patch_size=4,
        embed_dim=16,
        depth=2,
        num_heads=2,
        num_classes=0,
        **SIMMIM_VIT_KWARGS,
    ),
    "swin": lambda: timm.create_model(
        "swin_tiny_patch4_window7_224",
        img_size=16,
        embed_dim=8,
        depths=(2, 1),
        num_heads=(1, 2),
        window_size=2,
        num_classes=0,
    ),
    "convnext": lambda: timm.create_model(
        "convnext_atto", dims=(8, 8, 16, 16), depths=(1, 2, 1, 1), num_classes=0
    ),
}


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


SHORT = FinetuneRecipe(epochs=3, warmup_epochs=1, batch_size=32, base_lr=0.05)


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


@pytest.mark.parametrize("family", sorted(BUILD))
def test_create_optimizer__layer_scales_match_decay_formula(
    family: str,
) -> None:
    decay = 0.7
    # Through the adapter, as finetune does: the wrapped timm model plus a new head.
    model = timm_classifier(from_timm(BUILD[family]()), num_classes=5)
    optimizer = create_optimizer(model, lr=1e-3, weight_decay=0.05, layer_decay=decay)
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


def test_create_optimizer__no_layer_decay_is_one_scale() -> None:
    model = timm_classifier(BUILD["vit"](), num_classes=3)
    for decay in (None, 1.0):
        optimizer = create_optimizer(model, lr=1e-3, layer_decay=decay)
        assert all(g.get("lr_scale", 1.0) == 1.0 for g in optimizer.param_groups)


@pytest.mark.parametrize(
    ("family", "expected"),
    [("vit", 0.65), ("beit", 0.65), ("swin", 0.9), ("convnext", 0.9)],
)
def test_resolve_layer_decay__auto_is_the_papers_per_family(
    family: str, expected: float
) -> None:
    encoder = from_timm(BUILD[family]())
    assert resolve_layer_decay(encoder, "auto") == expected
    assert resolve_layer_decay(encoder, 0.5) == 0.5


class _StepRates(pl.Callback):
    """The (lr, lr_scale) of every parameter group in effect at each optimiser step."""

    def __init__(self) -> None:
        self.steps: list[list[tuple[float, float]]] = []

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: object
    ) -> None:
        groups = trainer.optimizers[0].param_groups
        self.steps.append([(g["lr"], g.get("lr_scale", 1.0)) for g in groups])


def test_finetune_module__schedule_applies_layer_scales_per_step() -> None:
    recipe = FinetuneRecipe(epochs=2, warmup_epochs=1, batch_size=16, base_lr=0.1)
    module = FinetuneModule(timm_classifier(BUILD["vit"](), 4), 4, recipe)
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
    for step, groups in enumerate(rates.steps):
        # Every group gets the head's rate times base x decay^(L - layer).
        for group_lr, scale in groups:
            assert group_lr == pytest.approx(expected(step) * scale), step
    head_lr = expected(7)
    groups = trainer.optimizers[0].param_groups
    # Patch embedding: two blocks and the head above it.
    assert min(g["lr_scale"] for g in groups) == pytest.approx(0.65**3)
    assert module.history[1]["lr"] == pytest.approx(head_lr)  # the last step's
    assert set(module.history) == {0, 1}


# ---------------------------------------------------------------------- training


def test_finetune__vit_from_scratch_learns_and_is_deterministic(
    tmp_path: Path,
) -> None:
    encoder = from_timm(BUILD["vit"]())
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    run = {
        "train_dataset": _color_task(128),
        "val_dataset": _color_task(64, seed=1),
        "num_classes": 4,
        "recipe": SHORT,
        "train_transform": None,
        "eval_transform": None,
        "accelerator": "cpu",
        "seed": 3,
    }
    result = finetune(encoder, output_dir=tmp_path, **run)
    assert result["top1"] >= 75.0  # chance: 25 %
    assert result["top5"] == 100.0  # 4 classes
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2]
    assert result["history"][-1]["top1"] == result["top1"]
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


def test_finetune__convnext_default_transforms_and_mixup() -> None:
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=4)
    result = finetune(
        from_timm(BUILD["convnext"]()),
        _color_task(64, size=32),
        _color_task(32, size=32, seed=1),
        4,
        FinetuneRecipe(epochs=1, warmup_epochs=0, batch_size=16, base_lr=0.1),
        input_size=32,  # ConvNeXt has no img_size to read it from
        normalize=None,
        mixup=mixup,
        accelerator="cpu",
    )
    assert 0.0 <= result["top1"] <= 100.0 and len(result["history"]) == 1
    assert result["settings"]["mixup"] is True
    assert result["settings"]["layer_decay"] == 0.9


def test_finetune__reports_drop_path_set_at_creation() -> None:
    encoder = from_timm(
        "vit_tiny_patch16_224",
        img_size=16,
        patch_size=8,
        embed_dim=16,
        depth=2,
        num_heads=2,
        drop_path_rate=0.1,
    )
    assert drop_path_rate(timm_classifier(encoder, 3)) == pytest.approx(0.1)
    assert drop_path_rate(BUILD["vit"]()) == 0.0


def test_finetune__trains_an_encoder_handed_over_in_eval_mode() -> None:
    # load_run returns methods in eval mode; fine-tuning must still train with
    # drop path on (Lightning keeps each module's mode as it finds it).
    encoder = from_timm(
        "vit_tiny_patch16_224",
        img_size=16,
        patch_size=8,
        embed_dim=16,
        depth=2,
        num_heads=2,
        drop_path_rate=0.5,
    ).eval()
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
        accelerator="cpu",
    )
    # 2 training steps in train mode, then the validation pass in eval mode.
    assert modes[:2] == [True, True] and modes[-1] is False


def test_timm_classifier__new_head_and_copy() -> None:
    encoder = from_timm(BUILD["swin"]())
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
            {"recipe": FinetuneRecipe(epochs=1, warmup_epochs=0, batch_size=999)},
            ValueError,
            "fewer than one batch",
        ),
        ({"train_transform": "auto"}, ValueError, "callable, 'default' or None"),
    ],
)
def test_finetune__invalid_arguments_raise(
    kwargs: dict, error: type[Exception], match: str
) -> None:
    run = {
        "encoder": from_timm(BUILD["vit"]()),
        "train_dataset": _color_task(32),
        "val_dataset": _color_task(8),
        "num_classes": 4,
        "recipe": FinetuneRecipe(epochs=1, warmup_epochs=0, batch_size=8),
        **kwargs,
    }
    with pytest.raises(error, match=match):
        finetune(**run)


def test_finetune__default_transforms_need_input_size_for_convnext() -> None:
    with pytest.raises(ValueError, match="pass input_size"):
        finetune(
            from_timm(BUILD["convnext"]()),
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
    from lightly_simmim.evaluation.finetune import _transforms

    model = BUILD["vit"]()
    for scale in (0.08, 0.5):
        train, _ = _transforms(model, "default", "default", None, None, scale)
        crops = [t for t in train.transforms if type(t).__name__ == "RandomResizedCrop"]
        assert [c.scale for c in crops] == [(scale, 1.0)]
