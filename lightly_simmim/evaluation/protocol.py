"""Evaluating a method or a run folder with one protocol: kNN, linear or fine-tune.

What ``lightly-simmim evaluate``, the end of ``pretrain`` and the benchmark run. The
data are the run's own evaluation splits (``eval.dataset`` or ``data.dataset``,
``data.limit_train`` / ``data.limit_eval`` applied); the fine-tune recipe is the
config's ``finetune`` section, the linear probe's a :class:`LinearRecipe`.

This module reads run configs, so :mod:`lightly_simmim.evaluation` does not import it
(the config schema imports the recipes from that package).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from lightly_simmim.build import Splits, dataset_splits
from lightly_simmim.config import Config, load_config
from lightly_simmim.data import TransformedDataset, num_classes
from lightly_simmim.evaluation.features import extract_features
from lightly_simmim.evaluation.finetune import finetune
from lightly_simmim.evaluation.knn import knn_accuracy
from lightly_simmim.evaluation.linear import linear_eval
from lightly_simmim.evaluation.recipes import LinearRecipe, override
from lightly_simmim.evaluation.results import write_results
from lightly_simmim.methods import FeatureModel, Method
from lightly_simmim.runs import find_run, load_run

__all__ = ["PROTOCOLS", "Protocol", "evaluate_method", "evaluate_run", "knn_evaluate"]

Protocol = Literal["knn", "linear", "finetune"]
PROTOCOLS: tuple[Protocol, ...] = ("knn", "linear", "finetune")


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def knn_evaluate(
    method: FeatureModel,
    config: Config,
    device: torch.device | str = "cpu",
    splits: Splits | None = None,
) -> dict[str, Any]:
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
        "k": config.eval.knn_k,
        "temperature": config.eval.knn_temperature,
        "train_images": len(features["memory"][1]),
        "test_images": len(features["test"][1]),
    }


def evaluate_method(
    method: Method,
    config: Config,
    protocol: Protocol = "knn",
    linear: LinearRecipe | None = None,
) -> dict[str, Any]:
    """Evaluates a built method with one protocol on the data ``config`` names.

    :func:`evaluate_run` calls this after rebuilding a trained run; the benchmark
    calls it on freshly built, untrained methods too (the from-scratch baseline).

    Args:
        method: A method on CPU; fine-tune trains a copy of its encoder. For a
            fine-tune with drop path, build it with ``drop_path_rate`` set (see
            :func:`evaluate_run`).
        config: The run config: data, ``eval`` (kNN) and ``finetune`` sections.
        protocol: ``"knn"``, ``"linear"`` or ``"finetune"``.
        linear: The linear probe; None = :class:`LinearRecipe` defaults.

    Returns:
        The result; ``top1`` and ``top5`` in percent.

    Raises:
        ValueError: On an unknown protocol.
    """
    device = _device()
    if protocol == "knn":
        return knn_evaluate(method.to(device), config, device=device)
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"Unknown protocol {protocol!r}; choose knn, linear or finetune."
        )
    splits = dataset_splits(config, train=False)
    classes = num_classes(config.eval.dataset or config.data.dataset, config.data.root)
    encoder = method.timm_encoder()
    if protocol == "linear":
        return dict(
            linear_eval(
                encoder,
                splits["memory"],
                splits["test"],
                classes,
                linear,
                transform=method.eval_transform(),
                device=device,
                seed=config.seed,
            )
        )
    outcome = finetune(
        encoder,
        splits["memory"],
        splits["test"],
        classes,
        config.finetune,
        eval_transform=method.eval_transform(),
        input_size=config.data.input_size,
        normalize=method.normalize,
        seed=config.seed,
    )
    return {k: outcome[k] for k in ("top1", "top5", "history", "settings")}


def evaluate_run(
    run_or_checkpoint: str | os.PathLike[str],
    protocol: Protocol = "knn",
    overrides: Sequence[str] = (),
    *,
    config: Config | None = None,
    linear: LinearRecipe | None = None,
    recipe_overrides: Mapping[str, object] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluates a run and writes ``<run>/eval/<protocol>.json``.

    Args:
        run_or_checkpoint: A run folder or a checkpoint file inside one.
        protocol: ``"knn"``, ``"linear"`` or ``"finetune"``.
        overrides: ``section.key=value`` strings applied to the run's config (a
            moved ``data.root``, ``data.limit_eval``, ...).
        config: A resolved config to use instead of the run's ``config.yaml``
            (the benchmark's: the same pretraining, its own evaluation sections).
        linear: The linear probe; None = :class:`LinearRecipe` defaults.
        recipe_overrides: Values over the protocol's recipe (``epochs``, ``lr``,
            ...; None = not given): the ``evaluate`` command's options.

    Returns:
        ``(result, json path)``; the result has ``top1`` and ``top5`` in percent.

    Raises:
        ValueError: On an unknown protocol or impossible options.
    """
    given = dict(recipe_overrides or {})
    if protocol == "linear":
        linear = override(linear or LinearRecipe(), **given)
    encoder_kwargs: dict[str, Any] = {}
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
    result = evaluate_method(method, config, protocol, linear)
    result["checkpoint"] = str(checkpoint)
    path = write_results(result, folder / "eval", protocol)
    return result, path
