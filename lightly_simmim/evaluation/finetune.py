"""End-to-end fine-tuning with SimMIM's recipe, on the run's devices (Lightning).

The encoder's timm model gets a new linear classifier on its pooled pre-logits
features and all weights are trained with the official recipe, every piece a
:class:`FinetuneRecipe` option:

- the model: for the paper's BEiT-style ViT, one relative position bias table per
  block (copied from the shared one) and mean pooling through a fresh ``fc_norm``;
  the head initialised with std 0.02 x 0.001 (ViTs; see
  :mod:`lightly_simmim.evaluation.classifier`);
- AdamW (betas 0.9 / 0.999, eps 1e-8), weight decay 0.05 except 1-D parameters,
  biases and the model's ``no_weight_decay()`` names (the paper ViT's per-block
  relative position tables are decayed, as in the official optimiser), with
  layer-wise learning-rate decay (0.65 for ViT-B, 0.9 for Swin-B; see
  :mod:`lightly_simmim.evaluation.optimizer`);
- linear warmup then cosine learning rate over all steps, per step; ``lr = base_lr *
  global batch / 512`` (also for the warmup start and the final lr), with the global
  batch over every device and node of the Trainer;
- timm ``Mixup`` / CutMix with label smoothing folded into the soft targets and
  ``SoftTargetCrossEntropy``, gradient clipping at norm 5;
- timm's training transform (RandAugment, random erasing, bicubic crops) and a
  ``crop_pct`` resize + centre crop for evaluation
  (:mod:`lightly_simmim.evaluation.transforms`).

The result reports the last epoch's accuracy (``top1``, no model selection on the
validation set) and the best epoch's (``best_top1``, ``best_epoch``), which the
official code logs.

Devices: :func:`finetune` takes a :class:`~lightly_simmim.evaluation.trainers.
TrainerFactory`; with a multi-process strategy (DDP) every process trains on its own
share of each global batch and scores its own share of the validation set.
``lightly-simmim evaluate`` hands it the run config's devices, nodes, strategy and
precision. Without one, training runs on one device in fp32.

Drop path (stochastic depth, 0.1 in the paper) is a property of the timm model and
must be set when it is created, e.g. ``from_timm(name, drop_path_rate=0.1)`` or
``timm.create_model(name, drop_path_rate=0.1)`` before loading pretrained weights
into it: a model created with rate 0 has no drop-path layers to switch on. The rate
found in the model is reported in the result's settings.

"From scratch" is the same recipe on a freshly created (randomly initialised)
model, which makes the "no pretraining" baseline of a benchmark::

    scratch = finetune(from_timm("vit_small_patch16_224", drop_path_rate=0.1),
                       train_set, val_set, num_classes=10)
    simmim = finetune(pretrained_encoder, train_set, val_set, num_classes=10)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Literal, TypedDict

import pytorch_lightning as pl
from torch import nn
from torch.utils.data import Dataset

from lightly_simmim.callbacks import NonFiniteLossError
from lightly_simmim.evaluation._rng import seeded
from lightly_simmim.evaluation.classifier import (
    drop_path_rate,
    in_chans_of,
    input_size_of,
    resolve_head_init_scale,
    timm_classifier,
    timm_model,
)
from lightly_simmim.evaluation.finetune_data import FinetuneData
from lightly_simmim.evaluation.finetune_module import EpochRecord, FinetuneModule
from lightly_simmim.evaluation.recipes import FinetuneRecipe
from lightly_simmim.evaluation.results import JsonDict, write_results
from lightly_simmim.evaluation.trainers import (
    TrainerFactory,
    local_trainer,
    quiet_lightning,
)
from lightly_simmim.evaluation.transforms import (
    Transform,
    classification_transforms,
    padded_crop,
)
from lightly_simmim.transforms import IMAGENET_NORMALIZE

__all__ = ["FinetuneResult", "finetune"]


class FinetuneResult(TypedDict):
    """What :func:`finetune` returns (and writes as JSON); a plain dict at runtime.

    Attributes:
        top1: Validation top-1 accuracy (percent) after the last epoch (no model
            selection on the validation set).
        top5: Top-5 (top-``min(5, classes)``) accuracy after the last epoch.
        best_top1: The highest validation top-1 of any epoch (what the official
            code logs as "Max accuracy").
        best_top5: Top-5 of that epoch.
        best_epoch: The 0-based epoch of ``best_top1`` (the first, on ties).
        history: One :class:`EpochRecord` per epoch.
        settings: The recipe with ``layer_decay`` and ``head_init_scale`` resolved,
            the effective learning rates and global batch, the processes and
            precision, the model's drop-path rate, the seed and the data sizes.
    """

    top1: float
    top5: float
    best_top1: float
    best_top5: float
    best_epoch: int
    history: list[EpochRecord]
    settings: JsonDict


def finetune(
    encoder: nn.Module,
    train_dataset: Dataset[tuple[Any, int]],
    val_dataset: Dataset[tuple[Any, int]],
    num_classes: int,
    recipe: FinetuneRecipe | None = None,
    *,
    train_transform: Transform | Literal["default"] | None = "default",
    eval_transform: Transform | Literal["default"] | None = "default",
    input_size: int | None = None,
    normalize: Mapping[str, Sequence[float]] | None = IMAGENET_NORMALIZE,
    copy_model: bool = True,
    num_workers: int = 0,
    trainer: TrainerFactory | None = None,
    seed: int = 0,
    output_dir: str | os.PathLike[str] | None = None,
) -> FinetuneResult:
    """Fine-tunes ``encoder`` end to end with a new linear head (SimMIM's recipe).

    See the module docstring for the recipe, devices, drop path and the from-scratch
    baseline. The validation set is evaluated after every epoch. The run is
    deterministic for a given seed and process count (up to the nondeterminism of
    GPU kernels), and does not change the caller's random state.

    Args:
        encoder: A SimMIM encoder adapter or a timm model (pretrained, or freshly
            created for the from-scratch baseline).
        train_dataset: ``(image, label)`` pairs to train on.
        val_dataset: ``(image, label)`` pairs to evaluate on after every epoch.
        num_classes: Number of classes (>= 2).
        recipe: The recipe; None for :class:`FinetuneRecipe` defaults (the
            official ViT-B recipe).
        train_transform: Applied to each training image: a callable, ``"default"``
            (the recipe's augmentation, :func:`classification_transforms`), or None
            if the dataset already yields augmented tensors.
        eval_transform: The same for validation images (``"default"``: the recipe's
            resize and centre crop).
        input_size: Image side for the default transforms; None reads the model's
            ``img_size`` (ViT / BEiT / Swin; required for ConvNeXt).
        normalize: Normalisation of the default transforms; use the statistics the
            encoder was pretrained with (one value per input channel).
        copy_model: Fine-tune a deep copy (the caller's encoder is unchanged); False
            trains the encoder's timm model in place.
        num_workers: Data loader workers per process.
        trainer: Makes the Lightning Trainer (devices, strategy, precision); None
            = :func:`~lightly_simmim.evaluation.trainers.local_trainer` (one
            device, fp32).
        seed: Seed of the head init, the shuffling, augmentations, mixing and drop
            path (process ``r`` of a multi-process run draws from ``seed + r``).
        output_dir: If given, the result is written to ``<output_dir>/finetune.json``
            (by global rank 0).

    Returns:
        A :class:`FinetuneResult` (on every process): last and best ``top1`` /
        ``top5`` (percent), per-epoch ``history`` and the ``settings`` used.

    Raises:
        ValueError: If ``num_classes < 2``, the training set is smaller than one
            batch, or the default transforms cannot be built (unknown input size,
            ``normalize`` not matching the channels).
        TypeError: If ``encoder`` is neither an adapter nor a timm model.
    """
    recipe = FinetuneRecipe() if recipe is None else recipe
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    sizes = len(train_dataset), len(val_dataset)  # type: ignore[arg-type]
    if sizes[0] < recipe.batch_size:
        raise ValueError(
            f"The training set has {sizes[0]} images, fewer than one batch of "
            f"{recipe.batch_size}; lower the recipe's batch_size."
        )
    source = timm_model(encoder)
    size = input_size if input_size is not None else input_size_of(source)
    train_tf, eval_tf = _transforms(
        source, (train_transform, eval_transform), size, normalize, recipe
    )
    head_init_scale = resolve_head_init_scale(source, recipe.head_init_scale)
    with seeded(seed):
        model = timm_classifier(
            encoder,
            num_classes,
            copy_model=copy_model,
            head_init_std=recipe.head_init_std,
            head_init_scale=head_init_scale,
            rel_pos_per_block=recipe.rel_pos_per_block,
            mean_pooling=recipe.mean_pooling,
        )
        module = FinetuneModule(model, num_classes, recipe)
        data = FinetuneData(
            train_dataset,
            val_dataset,
            train_tf,
            eval_tf,
            batch_size=recipe.batch_size,
            num_workers=num_workers,
            seed=seed,
        )
        fit = (trainer or local_trainer)(
            max_epochs=recipe.epochs, gradient_clip_val=recipe.clip_grad
        )
        # Lightning keeps each module's mode: an encoder handed over in eval mode
        # (as load_run returns it) would train with drop path and dropout off.
        module.train()
        with quiet_lightning():
            fit.fit(module, datamodule=data)

    settings = _settings(module, model, fit, recipe, sizes, seed)
    settings["head_init_scale"] = head_init_scale
    settings["input_size"] = size
    if size is not None:
        settings["train_crop"] = "padded" if padded_crop(recipe, size) else "resized"
    result = _result(module, settings)
    if output_dir is not None and fit.is_global_zero:
        write_results(result, output_dir, "finetune")
    return result


def _settings(
    module: FinetuneModule,
    model: nn.Module,
    trainer: pl.Trainer,
    recipe: FinetuneRecipe,
    sizes: tuple[int, int],
    seed: int,
) -> JsonDict:
    """The recipe and what it resolved to on this Trainer."""
    scale = module.lr_factor
    return {
        **asdict(recipe),
        "layer_decay": module.layer_decay,
        "lr": recipe.base_lr * scale,
        "min_lr": recipe.base_min_lr * scale,
        "warmup_lr": recipe.base_warmup_lr * scale,
        "global_batch_size": module.global_batch_size,
        "world_size": trainer.world_size,
        "precision": str(trainer.precision),
        "drop_path_rate": drop_path_rate(model),
        "mixup": module.mixup is not None,
        "model": type(model).__name__,
        "num_classes": module.num_classes,
        "num_train": sizes[0],
        "num_val": sizes[1],
        "seed": seed,
    }


def _result(module: FinetuneModule, settings: JsonDict) -> FinetuneResult:
    """The history, last and best accuracy of a finished fine-tune."""
    history = [
        EpochRecord(
            epoch=epoch,
            train_loss=record.get("train_loss", math.nan),
            lr=record.get("lr", math.nan),
            top1=record.get("top1", math.nan),
            top5=record.get("top5", math.nan),
        )
        for epoch, record in sorted(module.history.items())
    ]
    diverged = [r["epoch"] for r in history if not math.isfinite(r["train_loss"])]
    if diverged:
        # Accuracy after a NaN loss is noise, not a result: stop before it is written.
        raise NonFiniteLossError(
            f"The fine-tune's training loss became NaN or infinite (epoch "
            f"{diverged[0]}); its accuracy is not a result and was not written. Try a "
            "lower learning rate (--lr, finetune.base_lr), full precision or gradient "
            "clipping (finetune.clip_grad)."
        )
    last = history[-1]
    # max() keeps the first of equal values: the earliest epoch on ties.
    best = max(history, key=lambda record: record["top1"])
    return FinetuneResult(
        top1=last["top1"],
        top5=last["top5"],
        best_top1=best["top1"],
        best_top5=best["top5"],
        best_epoch=best["epoch"],
        history=history,
        settings=settings,
    )


def _transforms(
    model: nn.Module,
    given: tuple[Transform | str | None, Transform | str | None],
    size: int | None,
    normalize: Mapping[str, Sequence[float]] | None,
    recipe: FinetuneRecipe,
) -> tuple[Transform | None, Transform | None]:
    """Resolves ``"default"`` to the recipe's :func:`classification_transforms`."""
    for transform in given:
        if isinstance(transform, str) and transform != "default":
            raise ValueError(
                f"A transform is a callable, 'default' or None, got {transform!r}."
            )
    if not any(isinstance(transform, str) for transform in given):
        return _callable_or_none(given[0]), _callable_or_none(given[1])
    if size is None:
        raise ValueError(
            f"The default transforms need an image size and "
            f"{type(model).__name__} has no square img_size; pass input_size."
        )
    defaults = classification_transforms(size, in_chans_of(model), normalize, recipe)
    return (
        defaults[0] if isinstance(given[0], str) else given[0],
        defaults[1] if isinstance(given[1], str) else given[1],
    )


def _callable_or_none(transform: Transform | str | None) -> Transform | None:
    return None if isinstance(transform, str) else transform
