"""Recipe pieces of the fine-tune on tiny data: mixing and its loss, the head's
initialisation, best-epoch reporting."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightly_simmim.encoders import from_timm
from lightly_simmim.evaluation import (
    FinetuneModule,
    FinetuneRecipe,
    build_mixup,
    resolve_head_init_scale,
    timm_classifier,
)
from lightly_simmim.evaluation.finetune import _result

TinyModel = Callable[..., nn.Module]


def test_build_mixup__soft_targets_sum_to_one_and_mix_two_smoothed_labels() -> None:
    recipe = FinetuneRecipe()  # mixup 0.8, CutMix 1.0, switch 0.5, smoothing 0.1
    mixup = build_mixup(recipe, num_classes=10)
    assert mixup is not None

    def smoothed(labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, 10) * 0.9 + 0.1 / 10  # (B, 10)

    kinds = {"mixup": 0, "cutmix": 0}
    torch.manual_seed(0)
    for _ in range(20):
        images = torch.rand(8, 1, 16, 16)
        labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])  # each differs from its pair
        mixed, targets = mixup(images.clone(), labels)
        assert targets.shape == (8, 10)
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(8))
        # Written out: each image is mixed with the batch's mirror image at one
        # weight lam; the targets are lam x its smoothed label + (1 - lam) x its
        # partner's. lam read back from the first target.
        lam = (float(targets[0, 0]) - 0.01) / 0.9
        partner = images.flip(0)
        torch.testing.assert_close(
            targets, lam * smoothed(labels) + (1 - lam) * smoothed(labels.flip(0))
        )
        if torch.allclose(mixed, lam * images + (1 - lam) * partner):
            kinds["mixup"] += 1
        else:  # CutMix: a box of the partner, lam is the area kept
            assert bool(((mixed == images) | (mixed == partner)).all())
            pasted = float((mixed != images).float().mean())
            assert pasted == pytest.approx(1 - lam, abs=1e-6)
            kinds["cutmix"] += 1
    assert kinds["mixup"] > 0 and kinds["cutmix"] > 0  # switch prob 0.5


def test_build_mixup__none_without_mixing() -> None:
    assert build_mixup(FinetuneRecipe(mixup_alpha=0.0, cutmix_alpha=0.0), 10) is None
    assert build_mixup(FinetuneRecipe(mixup_prob=0.0), 10) is None


def test_finetune_module__loss_is_soft_target_ce_with_mixing_else_smoothed_ce(
    tiny_timm_model: TinyModel,
) -> None:
    model = timm_classifier(tiny_timm_model("vit"), 4)
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    soft = torch.softmax(torch.randn(6, 4), dim=1)
    mixing = FinetuneModule(model, 4, FinetuneRecipe())
    # Written out: the cross-entropy of soft targets, averaged over the batch.
    expected = (-(soft * F.log_softmax(logits, dim=1)).sum(dim=1)).mean()
    torch.testing.assert_close(mixing.criterion(logits, soft), expected)
    plain = FinetuneModule(model, 4, FinetuneRecipe(mixup_alpha=0.0, cutmix_alpha=0.0))
    assert plain.mixup is None
    # Label smoothing 0.1: 0.9 on the label, 0.1 spread over the 4 classes.
    smoothed = torch.full((6, 4), 0.1 / 4)
    smoothed[torch.arange(6), labels] += 0.9
    expected = (-(smoothed * F.log_softmax(logits, dim=1)).sum(dim=1)).mean()
    torch.testing.assert_close(plain.criterion(logits, labels), expected)


def test_timm_classifier__vit_head_starts_a_thousand_times_smaller(
    tiny_timm_model: TinyModel,
) -> None:
    vit = tiny_timm_model("vit", embed_dim=64)
    assert resolve_head_init_scale(vit, "auto") == 0.001
    assert resolve_head_init_scale(from_timm(tiny_timm_model("swin")), "auto") == 1.0
    assert resolve_head_init_scale(vit, 0.5) == 0.5
    torch.manual_seed(0)
    model = timm_classifier(vit, 100, head_init_std=0.02, head_init_scale=0.001)
    head = model.get_classifier()
    weight = head.weight.detach()
    # 6,400 trunc-normal weights of std 0.02 x 0.001: the estimate is within 5 %.
    assert float(weight.std()) == pytest.approx(2e-5, rel=0.05)
    assert torch.equal(head.bias, torch.zeros_like(head.bias))


def test_finetune_result__reports_last_and_best_epoch(
    tiny_timm_model: TinyModel,
) -> None:
    module = FinetuneModule(
        timm_classifier(tiny_timm_model("vit"), 4), 4, FinetuneRecipe()
    )
    for epoch, (top1, top5) in enumerate(
        [(40.0, 80.0), (70.0, 95.0), (70.0, 97.0), (60.0, 99.0)]
    ):
        module.history[epoch] = {
            "train_loss": 1.0,
            "lr": 0.1,
            "top1": top1,
            "top5": top5,
        }
    result = _result(module, {"seed": 0})
    assert (result["top1"], result["top5"]) == (60.0, 99.0)  # the last epoch's
    # The best top-1, its epoch (the first of a tie) and that epoch's top-5.
    assert (result["best_top1"], result["best_epoch"], result["best_top5"]) == (
        70.0,
        1,
        95.0,
    )
    assert [record["epoch"] for record in result["history"]] == [0, 1, 2, 3]


def test_finetune_module__epoch_loss_is_the_image_weighted_mean(
    tiny_timm_model: TinyModel,
) -> None:
    # Batches of 4 and 2 images: the epoch's loss weighs each batch by its images
    # (torchmetrics' MeanMetric with its NaN check disabled would drop the weights).
    recipe = FinetuneRecipe(mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0)
    module = FinetuneModule(timm_classifier(tiny_timm_model("vit"), 4), 4, recipe)
    module.optimizers = lambda: SimpleNamespace(param_groups=[{"lr": 0.1}])  # type: ignore[method-assign,assignment,return-value]
    torch.manual_seed(0)
    losses = []
    for size in (4, 2):
        images = torch.randn(size, 3, 32, 32)
        labels = torch.randint(0, 4, (size,))
        loss = module.training_step((images, labels), 0)
        losses.append(float(loss.detach()) * size)
    module.on_train_epoch_end()
    assert module.history[0]["train_loss"] == pytest.approx(sum(losses) / 6)
