"""Linear probing: a linear classifier trained on frozen, cached features.

The protocol is MAE's (He et al., 2022): features are extracted once, without
augmentation and with the encoder in eval mode; a parameter-free
``BatchNorm1d(affine=False)`` normalises them before the linear layer, because
masked-image-model features have very different scales per channel and the probe
is otherwise far from converged in a short schedule; warmup then half-cosine
learning rate, per step. Training on cached features makes the probe a matter of
seconds on a CPU for datasets of tens of thousands of images.

Two entry points: :func:`linear_probe` on feature tensors, and :func:`linear_eval`
that extracts them from an encoder and datasets first, on the devices of a Lightning
Trainer (and can write the result as JSON).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from lightly.utils.benchmarking.topk import mean_topk_accuracy
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightly_simmim.evaluation._rng import seeded
from lightly_simmim.evaluation.features import predict_train_test
from lightly_simmim.evaluation.recipes import LinearRecipe
from lightly_simmim.evaluation.results import write_results
from lightly_simmim.evaluation.trainers import TrainerFactory
from lightly_simmim.optim import create_optimizer
from lightly_simmim.schedule import ScheduleSettings, create_scheduler

_EVAL_CHUNK = 4096  # test features per forward pass, to bound memory
_TIMM_OPTIMIZERS = {"sgd": "momentum"}


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    recipe: LinearRecipe | None = None,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Top-1 / top-5 test accuracy of a linear classifier on frozen features.

    The classifier is ``Linear(BatchNorm1d(D, affine=False)(x))`` with the weight
    trunc-normal (std 0.01) and zero bias, trained with cross-entropy on shuffled
    mini-batches. The learning rate warms up linearly from 0 over the recipe's
    warmup and then follows a half cosine to 0, updated every step
    (:mod:`lightly_simmim.schedule`). The batch norm keeps a cumulative average of
    the batch statistics (the features are fixed, so there is no drift to track),
    which it uses at test time. Defaults are MAE's linear-probe recipe (90 epochs,
    10 warmup, no weight decay; lr 0.1 at batch size 256), with SGD + momentum in
    place of LARS at a small batch size.

    The run is deterministic for a given ``seed`` and device, and does not change
    the caller's global random state.

    Args:
        train_features: (N, D) training features.
        train_labels: (N,) int labels in [0, num_classes).
        test_features: (M, D) test features.
        test_labels: (M,) int labels in [0, num_classes).
        num_classes: Number of classes (>= 2).
        recipe: Epochs, batch size (clipped to N; a last batch of a single feature
            is skipped: batch norm needs two), learning rate (used as given: scale
            it yourself with the batch size), optimiser; None = the defaults.
        seed: Seed of the initialisation and the shuffling.
        device: Device to train on.

    Returns:
        ``{"top1": percent, "top5": percent}`` on the test features; top-5 is
        top-``min(5, num_classes)`` (100 with fewer than 5 classes).

    Raises:
        ValueError: On empty or mismatched inputs, labels out of range, or fewer
            than two classes or training features.
    """
    recipe = recipe or LinearRecipe()
    _check_features(train_features, train_labels, "train")
    _check_features(test_features, test_labels, "test")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train features have {train_features.shape[1]} dimensions but test "
            f"features {test_features.shape[1]}."
        )
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    for name, labels in (("train", train_labels), ("test", test_labels)):
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(
                f"{name} labels must lie in [0, {num_classes}), got "
                f"[{int(labels.min())}, {int(labels.max())}]."
            )
    if len(train_features) < 2:
        raise ValueError("The linear probe needs at least two training features.")

    device = torch.device(device)
    x_train = train_features.detach().float().to(device)
    y_train = train_labels.detach().long().to(device)
    num_train, dim = x_train.shape
    batch_size = min(recipe.batch_size, num_train)
    # Batches of one feature are skipped (batch norm in training mode needs two).
    steps_per_epoch = num_train // batch_size + (num_train % batch_size > 1)

    with seeded(seed, device):
        head = _probe_head(dim, num_classes).to(device)
        opt = create_optimizer(
            head,
            # timm's "sgd" is Nesterov SGD; "momentum" is classical SGD + momentum.
            optimizer=_TIMM_OPTIMIZERS.get(recipe.optimizer, recipe.optimizer),
            lr=recipe.lr,
            weight_decay=recipe.weight_decay,
            momentum=recipe.momentum,
        )
        schedule = create_scheduler(
            opt,
            ScheduleSettings(
                name="cosine",
                warmup_epochs=recipe.warmup,
                base_warmup_lr=0.0,
                base_min_lr=0.0,
            ),
            steps_per_epoch=steps_per_epoch,
            total_steps=recipe.epochs * steps_per_epoch,
        )
        # Shuffle on the CPU generator: the order is then the same on every device.
        generator = torch.Generator().manual_seed(seed)
        head.train()
        step = 0
        for _ in range(recipe.epochs):
            order = torch.randperm(num_train, generator=generator).to(device)
            for start in range(0, num_train, batch_size):
                index = order[start : start + batch_size]
                if len(index) < 2:
                    continue
                schedule.step_update(step)
                loss = F.cross_entropy(head(x_train[index]), y_train[index])
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call, unused-ignore]
                opt.step()
                step += 1

    return _evaluate(head, test_features, test_labels, num_classes, device)


def linear_eval(
    encoder: nn.Module,
    train_dataset: Dataset[tuple[Any, int]],
    test_dataset: Dataset[tuple[Any, int]],
    num_classes: int,
    recipe: LinearRecipe | None = None,
    *,
    transform: Callable[[Any], Any] | None = None,
    extract_batch_size: int = 256,
    num_workers: int = 0,
    trainer: TrainerFactory | None = None,
    seed: int = 0,
    output_dir: str | os.PathLike[str] | None = None,
) -> dict[str, float]:
    """Linear probe of an encoder: extract frozen features, then :func:`linear_probe`.

    Features come from :func:`predict_features` on the Trainer's devices (each
    process encodes its shard of the data; the shards are gathered on every
    process), with the encoder in eval mode and no augmentation, at the recipe's
    ``layer`` and ``pooling``: each image passes ``transform`` (deterministic, e.g.
    the evaluation transform of :func:`classification_transforms`) once. The probe
    then trains on the cached features on every process alike (it is cheap, and
    every process then holds the result); only global rank 0 writes.

    Args:
        encoder: A SimMIM encoder adapter, a timm model, or any module mapping
            images to (B, D) features (then only ``layer=None, pooling="default"``).
        train_dataset: ``(image, label)`` pairs the probe is trained on.
        test_dataset: ``(image, label)`` pairs it is evaluated on.
        num_classes: Number of classes.
        recipe: The probe (see :class:`LinearRecipe`); None = the defaults.
        transform: Applied to each image; None if the datasets already yield
            (C, H, W) tensors the encoder accepts.
        extract_batch_size: Images per process and forward pass during extraction.
        num_workers: Data loader workers during extraction.
        trainer: Makes the Trainer that extracts the features (its devices,
            strategy and precision); None = one device, fp32
            (:func:`~lightly_simmim.evaluation.trainers.local_trainer`). The probe
            trains on the device of this process.
        seed: See :func:`linear_probe`.
        output_dir: If given, ``<output_dir>/linear.json`` gets the result and the
            settings (``{"top1", "top5", "settings": {...}}``).

    Returns:
        ``{"top1": percent, "top5": percent}`` on ``test_dataset``.

    Raises:
        ValueError: See :func:`linear_probe` and :class:`FeatureExtractor`.
    """
    recipe = recipe or LinearRecipe()
    extractor, (train_x, train_y), (test_x, test_y) = predict_train_test(
        encoder,
        train_dataset,
        test_dataset,
        trainer,
        transform=transform,
        batch_size=extract_batch_size,
        num_workers=num_workers,
        layer=recipe.layer,
        pooling=recipe.pooling,
    )
    device = extractor.strategy.root_device
    result = linear_probe(
        train_x, train_y, test_x, test_y, num_classes, recipe, seed=seed, device=device
    )
    if output_dir is not None and extractor.is_global_zero:
        settings = {
            **asdict(recipe),
            "warmup_epochs": recipe.warmup,
            "feature_dim": int(train_x.shape[1]),
            "num_train": len(train_x),
            "num_test": len(test_x),
            "world_size": extractor.world_size,
            "seed": seed,
        }
        write_results({**result, "settings": settings}, output_dir, "linear")
    return result


def _check_features(features: Tensor, labels: Tensor, split: str) -> None:
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(
            f"{split} features must be a non-empty (N, D) tensor, got shape "
            f"{tuple(features.shape)}."
        )
    if labels.shape != (len(features),):
        raise ValueError(
            f"{split} labels must have shape ({len(features)},), got "
            f"{tuple(labels.shape)}."
        )


def _probe_head(dim: int, num_classes: int) -> nn.Sequential:
    linear = nn.Linear(dim, num_classes)
    nn.init.trunc_normal_(linear.weight, std=0.01)
    nn.init.zeros_(linear.bias)
    # momentum=None: cumulative average of the batch statistics.
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, momentum=None), linear)


@torch.no_grad()
def _evaluate(
    head: nn.Module,
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    device: torch.device,
) -> dict[str, float]:
    head.eval()
    top = min(5, num_classes)
    hits = {1: 0, top: 0}
    for start in range(0, len(features), _EVAL_CHUNK):
        x = features[start : start + _EVAL_CHUNK].float().to(device)
        y = labels[start : start + _EVAL_CHUNK].long().to(device)
        ranked = head(x).argsort(dim=1, descending=True)  # (b, num_classes)
        for k, mean in mean_topk_accuracy(ranked, y, k=(1, top)).items():
            # Back to integer counts (exact, unlike float means) to sum chunks.
            hits[k] += round(float(mean) * len(y))
    total = len(features)
    return {
        "top1": 100.0 * hits[1] / total,
        "top5": 100.0 * hits[top] / total,
    }
