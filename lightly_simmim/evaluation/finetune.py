"""End-to-end fine-tuning with SimMIM's recipe, on any device (Lightning).

The encoder's timm model gets a new linear classifier on its pooled pre-logits
features (the same features ``encoder(images)`` gives) and all weights are trained:

- AdamW (betas 0.9 / 0.999, eps 1e-8), weight decay 0.05 except 1-D parameters,
  biases and the model's ``no_weight_decay()`` names (position embeddings, class token,
  relative position tables);
- layer-wise learning-rate decay through timm (see
  :mod:`lightly_simmim.evaluation.classifier`); 0.65 is the paper's value for ViT-B,
  0.9 for Swin-B;
- linear warmup then cosine learning rate over all steps, per step; ``lr = base_lr *
  global batch / 512`` (also for the warmup start and the final lr);
- cross-entropy with label smoothing 0.1 (or timm ``Mixup`` soft targets, if given),
  gradient clipping at norm 5.

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
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Literal, TypedDict

import pytorch_lightning as pl
import torch
from timm.data import Mixup
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightly_simmim.data import TransformedDataset
from lightly_simmim.evaluation._rng import seeded
from lightly_simmim.evaluation.classifier import (
    drop_path_rate,
    in_chans_of,
    input_size_of,
    timm_classifier,
    timm_model,
)
from lightly_simmim.evaluation.finetune_module import EpochRecord, FinetuneModule
from lightly_simmim.evaluation.recipes import FinetuneRecipe
from lightly_simmim.evaluation.results import write_results
from lightly_simmim.evaluation.transforms import Transform, classification_transforms
from lightly_simmim.transforms import IMAGENET_NORMALIZE

__all__ = ["FinetuneResult", "finetune"]


class FinetuneResult(TypedDict):
    """What :func:`finetune` returns (and writes as JSON); a plain dict at runtime.

    Attributes:
        top1: Validation top-1 accuracy (percent) after the last epoch (no model
            selection on the validation set).
        top5: Top-5 (top-``min(5, classes)``) accuracy after the last epoch.
        history: One :class:`EpochRecord` per epoch.
        settings: The recipe with ``layer_decay`` resolved, the effective
            learning rates, the model's drop-path rate, the seed and the data sizes.
    """

    top1: float
    top5: float
    history: list[EpochRecord]
    settings: dict[str, Any]


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
    mixup: Mixup | None = None,
    copy_model: bool = True,
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: int | str = 1,
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "32-true",
    seed: int = 0,
    output_dir: str | os.PathLike[str] | None = None,
    progress_bar: bool = False,
) -> FinetuneResult:
    """Fine-tunes ``encoder`` end to end with a new linear head (SimMIM's recipe).

    See the module docstring for the recipe, drop path and the from-scratch
    baseline. Training runs on a Lightning ``Trainer`` (no logger, no checkpoints);
    the validation set is evaluated after every epoch. The run is deterministic for
    a given seed on one device (up to the nondeterminism of GPU kernels), and does
    not change the caller's global random state.

    Args:
        encoder: A SimMIM encoder adapter or a timm model (pretrained, or freshly
            created for the from-scratch baseline).
        train_dataset: ``(image, label)`` pairs to train on.
        val_dataset: ``(image, label)`` pairs to evaluate on after every epoch.
        num_classes: Number of classes (>= 2).
        recipe: Optimisation settings; None for :class:`FinetuneRecipe` defaults.
        train_transform: Applied to each training image: a callable, ``"default"``
            (:func:`classification_transforms`' train transform), or None if the
            dataset already yields augmented tensors.
        eval_transform: The same for validation images (``"default"``: resize and
            center crop).
        input_size: Image side for the default transforms; None reads the model's
            ``img_size`` (ViT / BEiT / Swin; required for ConvNeXt).
        normalize: Normalisation of the default transforms; use the statistics the
            encoder was pretrained with (one value per input channel).
        mixup: Optional timm ``Mixup`` for mixup / cutmix (build it with this
            ``num_classes``; needs an even batch size).
        copy_model: Fine-tune a deep copy (the caller's encoder is unchanged); False
            trains the encoder's timm model in place.
        num_workers: Data loader workers.
        accelerator: Lightning accelerator (``"auto"``, ``"cpu"``, ``"gpu"``, ...).
        devices: Lightning devices; with more than one the learning rate scales
            with the global batch and the run must be started as a script (DDP).
        precision: Lightning precision.
        seed: Seed of the head init, the shuffling, augmentations and drop path.
        output_dir: If given, the result is written to ``<output_dir>/finetune.json``
            (by global rank 0).
        progress_bar: Show Lightning's progress bar.

    Returns:
        A :class:`FinetuneResult`: final ``top1`` / ``top5`` (percent), per-epoch
        ``history`` and the ``settings`` used.

    Raises:
        ValueError: If ``num_classes < 2``, the training set is smaller than one
            batch, or the default transforms cannot be built (unknown input size,
            ``normalize`` not matching the channels).
        TypeError: If ``encoder`` is neither an adapter nor a timm model.
    """
    recipe = FinetuneRecipe() if recipe is None else recipe
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    num_train = len(train_dataset)  # type: ignore[arg-type]
    num_val = len(val_dataset)  # type: ignore[arg-type]
    if num_train < recipe.batch_size:
        raise ValueError(
            f"The training set has {num_train} images, fewer than one batch of "
            f"{recipe.batch_size}; lower recipe.batch_size."
        )
    model_in = timm_model(encoder)
    train_tf, eval_tf = _transforms(
        model_in,
        train_transform,
        eval_transform,
        input_size,
        normalize,
        recipe.crop_min_scale,
    )

    with seeded(seed):
        model = timm_classifier(
            encoder,
            num_classes,
            copy_model=copy_model,
            head_init_std=recipe.head_init_std,
        )
        module = FinetuneModule(model, num_classes, recipe, mixup=mixup)
        train_loader, val_loader = _loaders(
            (train_dataset, train_tf),
            (val_dataset, eval_tf),
            recipe.batch_size,
            num_workers,
            seed,
        )
        trainer = pl.Trainer(
            max_epochs=recipe.epochs,
            accelerator=accelerator,
            devices=devices,
            precision=precision,
            gradient_clip_val=recipe.clip_grad,
            gradient_clip_algorithm="norm",
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress_bar,
        )
        # Lightning keeps each module's mode: an encoder handed over in eval mode
        # (as load_run returns it) would train with drop path and dropout off.
        module.train()
        with warnings.catch_warnings():
            # Lightning's own use of a deprecated torch API, nothing to act on.
            warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
            trainer.fit(module, train_loader, val_loader)

    result = _result(module, model, recipe, num_train, num_val, seed)
    if output_dir is not None and trainer.is_global_zero:
        write_results(result, output_dir, "finetune")
    return result


def _loaders(
    train: tuple[Dataset[tuple[Any, int]], Transform | None],
    val: tuple[Dataset[tuple[Any, int]], Transform | None],
    batch_size: int,
    num_workers: int,
    seed: int,
) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """The shuffled training loader (full batches) and the validation loader."""
    train_loader = DataLoader(
        TransformedDataset(*train),
        batch_size=batch_size,
        shuffle=True,
        # Full batches only: mixup needs even batches, and a last batch of a few
        # images would get a full step's weight.
        drop_last=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
    )
    val_loader = DataLoader(
        TransformedDataset(*val),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
    return train_loader, val_loader


def _result(
    module: FinetuneModule,
    model: nn.Module,
    recipe: FinetuneRecipe,
    num_train: int,
    num_val: int,
    seed: int,
) -> FinetuneResult:
    """The history, final accuracy and effective settings of a finished fine-tune."""
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
    scale = module.lr_factor
    settings: dict[str, Any] = {
        **asdict(recipe),
        "layer_decay": module.layer_decay,
        "lr": recipe.base_lr * scale,
        "min_lr": recipe.base_min_lr * scale,
        "warmup_lr": recipe.base_warmup_lr * scale,
        "global_batch_size": module.global_batch_size,
        "drop_path_rate": drop_path_rate(model),
        "mixup": module.mixup is not None,
        "model": type(model).__name__,
        "num_classes": module.num_classes,
        "num_train": num_train,
        "num_val": num_val,
        "seed": seed,
    }
    last = history[-1]
    return FinetuneResult(
        top1=last["top1"], top5=last["top5"], history=history, settings=settings
    )


def _transforms(
    model: nn.Module,
    train_transform: Transform | Literal["default"] | None,
    eval_transform: Transform | Literal["default"] | None,
    input_size: int | None,
    normalize: Mapping[str, Sequence[float]] | None,
    min_scale: float,
) -> tuple[Transform | None, Transform | None]:
    """Resolves ``"default"`` to :func:`classification_transforms`' transforms."""
    train_is_default = isinstance(train_transform, str)
    eval_is_default = isinstance(eval_transform, str)
    for given in (train_transform, eval_transform):
        if isinstance(given, str) and given != "default":
            raise ValueError(
                f"A transform is a callable, 'default' or None, got {given!r}."
            )
    if not train_is_default and not eval_is_default:
        return _callable_or_none(train_transform), _callable_or_none(eval_transform)
    size = input_size if input_size is not None else input_size_of(model)
    if size is None:
        raise ValueError(
            f"The default transforms need an image size and "
            f"{type(model).__name__} has no square img_size; pass input_size."
        )
    default_train, default_eval = classification_transforms(
        size, in_chans=in_chans_of(model), normalize=normalize, min_scale=min_scale
    )
    return (
        default_train if train_is_default else _callable_or_none(train_transform),
        default_eval if eval_is_default else _callable_or_none(eval_transform),
    )


def _callable_or_none(transform: Transform | str | None) -> Transform | None:
    return None if isinstance(transform, str) else transform
