"""Evaluate a pretrained run with one protocol: kNN, linear probe or fine-tune.

What ``lightly-simmim evaluate`` runs. The model is rebuilt from the run's
``config.yaml`` and its checkpoint (weights only, see
:func:`lightly_simmim.train.load_run`); the data are the run's own evaluation
splits (``eval.dataset`` or ``data.dataset``, ``data.limit_train`` /
``data.limit_eval`` applied). Results go to
``<run>/eval/<protocol>.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from lightly_simmim.config import Config
from lightly_simmim.data import num_classes
from lightly_simmim.evaluation import (
    FinetuneRecipe,
    finetune,
    linear_eval,
    write_results,
)
from lightly_simmim.evaluation.pooling import Pooling
from lightly_simmim.train import dataset_splits, knn_evaluate, load_run

Protocol = Literal["knn", "linear", "finetune"]


@dataclass
class ProtocolOptions:
    """Options of the linear and fine-tune protocols (kNN reads ``config.eval``).

    Attributes:
        epochs: Training epochs; None = 90 for linear (as in MAE), the config's
            ``finetune.epochs`` for fine-tune.
        warmup_epochs: Warmup epochs; None = 10 linear / ``finetune.warmup_epochs``,
            capped at half of ``epochs`` for short runs.
        batch_size: Images per step; None = 256 linear / ``finetune.batch_size``.
        lr: Linear: the learning rate (None = 0.1, SGD); fine-tune: ``base_lr`` per
            512 images (None = ``finetune.base_lr``).
        layer: Linear probe: the block / stage whose features to use (None = last).
        pooling: Linear probe: ``"default"``, ``"avg"`` or ``"cls"``.

    The fine-tune recipe itself (layer decay, label smoothing, drop path, ...) is the
    run config's ``finetune`` section; these options override its epochs, warmup,
    batch size and learning rate.
    """

    epochs: int | None = None
    warmup_epochs: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    layer: int | None = None
    pooling: Pooling = "default"


def _warmup(options: ProtocolOptions, epochs: int, default: float) -> float:
    if options.warmup_epochs is not None:
        return options.warmup_epochs
    return min(default, epochs / 2)


def evaluate_run(
    run_or_checkpoint: str | os.PathLike[str],
    protocol: Protocol = "knn",
    overrides: list[str] | None = None,
    options: ProtocolOptions | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluates a run and writes ``<run>/eval/<protocol>.json``.

    Args:
        run_or_checkpoint: A run folder or a checkpoint file inside one.
        protocol: ``"knn"``, ``"linear"`` or ``"finetune"``.
        overrides: ``section.key=value`` strings applied to the run's config (a
            moved ``data.root``, ``data.limit_eval``, ...).
        options: Linear / fine-tune options.

    Returns:
        ``(result, json path)``; the result has ``top1`` and ``top5`` in percent.

    Raises:
        ValueError: On an unknown protocol or impossible options.
    """
    options = options or ProtocolOptions()
    overrides = list(overrides or [])
    config, method, folder, checkpoint = load_run(run_or_checkpoint, overrides)
    if protocol == "finetune" and config.finetune.drop_path_rate > 0:
        # Drop path layers exist only if the model is built with them: rebuild the
        # encoder with the recipe's rate (no parameters, so the weights still fit).
        rate = config.finetune.drop_path_rate
        overrides.append(f"encoder.kwargs.drop_path_rate={rate}")
        config, method, folder, checkpoint = load_run(run_or_checkpoint, overrides)
    result = evaluate_method(method, config, protocol, options)
    result["checkpoint"] = str(checkpoint)
    path = write_results(result, folder / "eval", protocol)
    return result, path


def evaluate_method(
    method: Any,
    config: Config,
    protocol: Protocol = "knn",
    options: ProtocolOptions | None = None,
) -> dict[str, Any]:
    """Evaluates a built method with one protocol on the data ``config`` names.

    :func:`evaluate_run` calls this after rebuilding a trained run; the benchmark
    calls it on freshly built, untrained methods too (the from-scratch baseline).

    Args:
        method: A method (``forward``, ``eval_transform()``, ``timm_encoder()``,
            ``normalize``), on CPU; fine-tune trains a copy of its encoder.
        config: The run config: data, ``eval`` (kNN) and ``finetune`` sections. For
            fine-tune with drop path, build ``method`` with
            ``encoder.kwargs.drop_path_rate`` set (see :func:`evaluate_run`).
        protocol: ``"knn"``, ``"linear"`` or ``"finetune"``.
        options: Linear / fine-tune options.

    Returns:
        The result; ``top1`` and ``top5`` in percent.

    Raises:
        ValueError: On an unknown protocol or impossible options.
    """
    options = options or ProtocolOptions()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result: dict[str, Any]
    if protocol == "knn":
        result = knn_evaluate(method.to(device), config, device=device)
    elif protocol in ("linear", "finetune"):
        splits = dataset_splits(config, train=False)
        classes = num_classes(
            config.eval.dataset or config.data.dataset, config.data.root
        )
        encoder = method.timm_encoder()
        if protocol == "linear":
            epochs = options.epochs or 90
            result = dict(
                linear_eval(
                    encoder,
                    splits["memory"],
                    splits["test"],
                    classes,
                    transform=method.eval_transform(),
                    layer=options.layer,
                    pooling=options.pooling,
                    device=device,
                    epochs=epochs,
                    batch_size=options.batch_size or 256,
                    lr=options.lr or 0.1,
                    warmup_epochs=_warmup(options, epochs, 10.0),
                    seed=config.seed,
                )
            )
        else:
            tune = config.finetune
            epochs = options.epochs or tune.epochs
            recipe = FinetuneRecipe(
                epochs=epochs,
                warmup_epochs=_warmup(options, epochs, tune.warmup_epochs),
                batch_size=options.batch_size or tune.batch_size,
                base_lr=options.lr or tune.base_lr,
                weight_decay=tune.weight_decay,
                layer_decay=tune.layer_decay,
                label_smoothing=tune.label_smoothing,
                crop_min_scale=tune.crop_min_scale,
            )
            outcome = finetune(
                encoder,
                splits["memory"],
                splits["test"],
                classes,
                recipe,
                eval_transform=method.eval_transform(),
                input_size=config.data.input_size,
                normalize=method.normalize,
                seed=config.seed,
            )
            result = {k: outcome[k] for k in ("top1", "top5", "history", "settings")}
    else:
        raise ValueError(
            f"Unknown protocol {protocol!r}; choose knn, linear or finetune."
        )
    return result
