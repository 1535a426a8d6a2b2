"""Evaluating a method or a run folder with one protocol: kNN, linear or fine-tune.

What ``lightly-simmim evaluate``, the end of ``pretrain`` and the benchmark run. The
data are the run's own evaluation splits (``eval.dataset`` or ``data.dataset``,
``data.limit_train`` / ``data.limit_eval`` applied); the fine-tune recipe is the
config's ``finetune`` section, the linear probe's a :class:`LinearRecipe`.

The fine-tune and the linear probe's feature extraction run on a Trainer built from
the run's ``trainer`` section (:func:`run_trainer`): the run's devices, nodes,
strategy and precision, so a fine-tune's global batch and learning rate are what the
config says. Under ``strategy: ddp`` Lightning starts the other processes by running
the same command again; every process evaluates, and only global rank 0 writes
``<run>/eval/<protocol>.json``.

This module reads run configs, so :mod:`lightly_simmim.evaluation` does not import it
(the config schema imports the recipes from that package).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch import nn
from torch.utils.data import DataLoader

from lightly_simmim.build import Splits, dataset_splits
from lightly_simmim.config import Config, TrainerConfig, load_config
from lightly_simmim.data import TransformedDataset, num_classes
from lightly_simmim.evaluation.features import extract_features
from lightly_simmim.evaluation.finetune import finetune
from lightly_simmim.evaluation.knn import knn_accuracy
from lightly_simmim.evaluation.layers import layer_probes
from lightly_simmim.evaluation.linear import linear_eval
from lightly_simmim.evaluation.recipes import LinearRecipe, override
from lightly_simmim.evaluation.results import JsonDict, write_results
from lightly_simmim.evaluation.trainers import TrainerFactory
from lightly_simmim.methods import FeatureModel, Method
from lightly_simmim.runs import find_run, load_run
from lightly_simmim.trainer import build_trainer

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "evaluate_method",
    "evaluate_run",
    "is_global_zero",
    "knn_evaluate",
    "run_trainer",
]

Protocol = Literal["knn", "linear", "finetune", "layers"]
#: ``layers``: kNN and the linear probe on every block / stage
#: (:func:`~lightly_simmim.evaluation.layers.layer_probes`); its ``top1`` is the best
#: layer's linear probe.
PROTOCOLS: tuple[Protocol, ...] = ("knn", "linear", "finetune", "layers")


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_trainer(config: TrainerConfig) -> TrainerFactory:
    """The evaluations' Trainer on the run's devices, nodes, strategy and precision.

    Args:
        config: The run's ``trainer`` section (its epochs, steps, checkpointing and
            compile settings are the pretraining's and are not used).

    Returns:
        A :class:`~lightly_simmim.evaluation.trainers.TrainerFactory` building
        :func:`lightly_simmim.trainer.build_trainer` Trainers without checkpoints,
        logger or model summary.
    """

    def build(*, max_epochs: int, gradient_clip_val: float | None) -> pl.Trainer:
        return build_trainer(
            config,
            max_epochs=max_epochs,
            callbacks=[],
            gradient_clip_val=gradient_clip_val,
            enable_checkpointing=False,
            model_summary=False,
        )

    return build


def knn_evaluate(
    method: FeatureModel,
    config: Config,
    device: torch.device | str = "cpu",
    splits: Splits | None = None,
) -> JsonDict:
    """kNN accuracy of the method's pooled features: train split vs test split.

    Both splits go through ``method.eval_transform()``; the memory bank is the
    training split (``data.limit_train`` images), the queries the test split
    (``data.limit_eval``), of ``eval.dataset`` if set, else of ``data.dataset``.

    Args:
        method: The method (pooled features of images), an ``nn.Module`` on
            ``device``.
        config: The run config (``eval.knn_k``, ``eval.knn_temperature``, data).
        device: Where to run the encoder.
        splits: Untransformed ``"memory"`` and ``"test"`` datasets already built
            from ``config``; None builds them.

    Returns:
        ``{"top1", "top5"}`` in percent plus ``k``, ``temperature``,
        ``train_images``, ``test_images``.
    """
    if not isinstance(method, nn.Module):
        raise TypeError(f"kNN needs an nn.Module, got {type(method).__name__}.")
    transform = method.eval_transform()
    if splits is None:
        splits = dataset_splits(config, train=False)
    features = {}
    for split in ("memory", "test"):
        loader = DataLoader(
            TransformedDataset(splits[split], transform),
            batch_size=max(256, config.data.batch_size),
            num_workers=config.data.num_workers,
        )
        features[split] = extract_features(method, loader, device=device)
    name = config.eval.dataset or config.data.dataset
    result = knn_accuracy(
        *features["memory"],
        *features["test"],
        num_classes=num_classes(name, config.data.root),
        k=config.eval.knn_k,
        temperature=config.eval.knn_temperature,
    )
    return {
        **result,
        # The neighbours voted: knn_accuracy clips k to the memory bank.
        "k": min(config.eval.knn_k, len(features["memory"][1])),
        "temperature": config.eval.knn_temperature,
        "train_images": len(features["memory"][1]),
        "test_images": len(features["test"][1]),
    }


def evaluate_method(
    method: Method,
    config: Config,
    protocol: Protocol = "knn",
    linear: LinearRecipe | None = None,
    trainer: TrainerFactory | None = None,
) -> JsonDict:
    """Evaluates a built method with one protocol on the data ``config`` names.

    :func:`evaluate_run` calls this after rebuilding a trained run; the benchmark
    calls it on freshly built, untrained methods too (the from-scratch baseline).

    Args:
        method: A method on CPU; fine-tune trains a copy of its encoder. For a
            fine-tune with drop path, build it with ``drop_path_rate`` set (see
            :func:`evaluate_run`).
        config: The run config: data, ``eval`` (kNN) and ``finetune`` sections.
        protocol: ``"knn"``, ``"linear"``, ``"finetune"`` or ``"layers"``.
        linear: The linear probe (of ``"linear"`` and ``"layers"``); None =
            :class:`LinearRecipe` defaults.
        trainer: Where the linear probe's extraction and the fine-tune run; None
            = the config's devices, strategy and precision (:func:`run_trainer`).
            A caller that must not start DDP processes (it cannot be re-run as a
            command) passes a single-device factory.

    Returns:
        The result; ``top1`` and ``top5`` in percent.

    Raises:
        ValueError: On an unknown protocol.
    """
    make_trainer = trainer or run_trainer(config.trainer)
    if protocol == "knn":
        device = _device()
        return knn_evaluate(method.to(device), config, device=device)
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"Unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}."
        )
    splits = dataset_splits(config, train=False)
    classes = num_classes(config.eval.dataset or config.data.dataset, config.data.root)
    encoder = method.timm_encoder()
    if protocol == "layers":
        return layer_probes(
            encoder,
            splits["memory"],
            splits["test"],
            classes,
            linear,
            knn_k=config.eval.knn_k,
            knn_temperature=config.eval.knn_temperature,
            transform=method.eval_transform(),
            num_workers=config.data.num_workers,
            trainer=make_trainer,
            seed=config.seed,
        )
    if protocol == "linear":
        return dict(
            linear_eval(
                encoder,
                splits["memory"],
                splits["test"],
                classes,
                linear,
                transform=method.eval_transform(),
                num_workers=config.data.num_workers,
                trainer=make_trainer,
                seed=config.seed,
            )
        )
    # The recipe's own transforms: its augmentation, and its crop_pct evaluation
    # (not the method's plain resize).
    outcome = finetune(
        encoder,
        splits["memory"],
        splits["test"],
        classes,
        config.finetune,
        input_size=config.data.input_size,
        normalize=method.normalize,
        num_workers=config.data.num_workers,
        trainer=make_trainer,
        seed=config.seed,
    )
    return dict(outcome)


def evaluate_run(
    run_or_checkpoint: str | os.PathLike[str],
    protocol: Protocol = "knn",
    overrides: Sequence[str] = (),
    *,
    config: Config | None = None,
    linear: LinearRecipe | None = None,
    recipe_overrides: Mapping[str, object] | None = None,
    trainer: TrainerFactory | None = None,
) -> tuple[JsonDict, Path]:
    """Evaluates a run and writes ``<run>/eval/<protocol>.json``.

    Args:
        run_or_checkpoint: A run folder or a checkpoint file inside one.
        protocol: ``"knn"``, ``"linear"``, ``"finetune"`` or ``"layers"``.
        overrides: ``section.key=value`` strings applied to the run's config (a
            moved ``data.root``, ``data.limit_eval``, ...).
        config: A resolved config to use instead of the run's ``config.yaml``
            (the benchmark's: the same pretraining, its own evaluation sections).
        linear: The linear probe; None = :class:`LinearRecipe` defaults.
        recipe_overrides: Values over the protocol's recipe (``epochs``, ``lr``,
            ...; None = not given): the ``evaluate`` command's options.
        trainer: See :func:`evaluate_method`; None = the run's devices.

    Returns:
        ``(result, json path)``; the result has ``top1`` and ``top5`` in percent.

    Raises:
        ValueError: On an unknown protocol or impossible options.
    """
    given = dict(recipe_overrides or {})
    if protocol in ("linear", "layers"):
        linear = override(linear or LinearRecipe(), **given)
    encoder_kwargs: JsonDict = {}
    if protocol == "finetune":
        if config is None:
            folder, _ = find_run(run_or_checkpoint)
            config = load_config(folder / "config.yaml", overrides)
        tune = override(config.finetune, **given)
        config = dataclasses.replace(config, finetune=tune)
        if tune.drop_path_rate > 0:
            # Drop path layers exist only if the model is built with them (they have
            # no parameters, so the weights still fit).
            encoder_kwargs["drop_path_rate"] = tune.drop_path_rate
    config, method, folder, checkpoint = load_run(
        run_or_checkpoint, overrides, config=config, encoder_kwargs=encoder_kwargs
    )
    result = evaluate_method(method, config, protocol, linear, trainer)
    result["checkpoint"] = str(checkpoint)
    path = folder / "eval" / f"{protocol}.json"
    # The other processes of a DDP evaluation hold the same result.
    if is_global_zero():
        write_results(result, folder / "eval", protocol)
    return result, path


def is_global_zero() -> bool:
    """Whether this is the process that writes and prints results: Lightning's
    global rank 0 (every process outside DDP)."""
    return getattr(rank_zero_only, "rank", 0) == 0
