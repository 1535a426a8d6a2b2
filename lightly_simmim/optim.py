"""The optimiser every method and evaluation shares: timm's factory, linear LR scaling.

- :func:`scaled_lr` is the one linear scaling rule, ``base_lr * global_batch /
  base_batch_size``, used by pretraining, fine-tuning and the linear probe alike.
- :func:`create_optimizer` goes through ``timm.optim.create_optimizer_v2``, which puts
  1-D parameters, biases and the model's ``no_weight_decay()`` names in a group
  without weight decay and, with ``layer_decay``, stores each layer's ``lr_scale`` in
  its parameter group (applied by timm's schedulers: :mod:`lightly_simmim.schedule`).
- :func:`parameter_dims` records which parameters are 1-D before a strategy wraps the
  model: FSDP flattens every parameter into a 1-D shard, after which timm's test would
  exempt every weight matrix from weight decay.
"""

from __future__ import annotations

import glob
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import timm.optim
import torch
from torch import nn

from lightly_simmim.settings import Checked, SettingError, setting

if TYPE_CHECKING:
    import pytorch_lightning as pl

__all__ = [
    "OptimizerSettings",
    "check_optimizer_name",
    "clip_gradients",
    "clip_in_hook",
    "create_optimizer",
    "fused_allowed",
    "parameter_dims",
    "scaled_lr",
    "timm_no_weight_decay",
]


def scaled_lr(base_lr: float, global_batch_size: int, base_batch_size: int) -> float:
    """The linear scaling rule: ``base_lr * global_batch_size / base_batch_size``.

    Args:
        base_lr: The learning rate at ``base_batch_size`` images per step.
        global_batch_size: Images per optimiser step over all devices, nodes and
            accumulated batches.
        base_batch_size: The batch size ``base_lr`` is given for (512 in SimMIM).

    Returns:
        The learning rate for ``global_batch_size``.
    """
    return base_lr * global_batch_size / base_batch_size


def check_optimizer_name(name: str) -> None:
    """Raises SettingError if ``name`` is not an optimiser timm's factory knows."""
    try:
        timm.optim.get_optimizer_info(name.lower().split("_")[-1])
    except ValueError:
        known = ", ".join(str(n) for n in timm.optim.list_optimizers())
        raise SettingError(
            "optimizer", name, f"must be a timm optimiser name (one of {known})"
        ) from None


@dataclass
class OptimizerSettings(Checked):
    """Optimiser of a pretraining run; the learning rate follows the global batch.

    Attributes:
        optimizer: A timm optimiser name (``adamw``, ``lars``, ``sgd``, ...).
        base_lr: Learning rate at ``base_batch_size`` images per step; the run uses
            ``base_lr * global_batch / base_batch_size`` (global = per-device batch x
            devices x nodes x accumulated batches).
        base_batch_size: The batch size ``base_lr`` is given for.
        weight_decay: Weight decay (none on 1-D parameters, biases, mask tokens and
            position tables).
        betas: Adam betas (optimisers that take them).
        eps: Adam epsilon (optimisers that take it).
        momentum: Momentum (SGD, LARS, ...).
        clip_grad: Gradient norm clipping of the model's own parameters; None = off.
    """

    optimizer: str = "adamw"
    base_lr: float = setting(1.5e-3, gt=0)
    base_batch_size: int = setting(512, ge=1)
    weight_decay: float = setting(0.05, ge=0)
    betas: list[float] = setting(default_factory=lambda: [0.9, 0.999], ge=0, lt=1)
    eps: float = setting(1e-8, gt=0)
    momentum: float = setting(0.9, ge=0, le=1)
    clip_grad: float | None = setting(5.0, gt=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.betas) != 2:
            raise SettingError("betas", self.betas, "must be two numbers")
        check_optimizer_name(self.optimizer)


def timm_no_weight_decay(model: nn.Module, prefix: str = "") -> set[str]:
    """The names a model lists in its own ``no_weight_decay()`` (timm's convention),
    prefixed.

    Args:
        model: A timm model, or any module with such a method.
        prefix: The model's path inside the module being optimised, ending in
            ``"."``; empty for that module itself.

    Returns:
        Full parameter names (empty for a model without the method).
    """
    listed = getattr(model, "no_weight_decay", None)
    if not callable(listed):
        return set()
    return {f"{prefix}{name}" for name in listed()}


def parameter_dims(model: nn.Module) -> dict[str, int]:
    """Each parameter's number of dimensions, by name, as the model is now.

    Read it before a strategy wraps the model and hand it to
    :func:`create_optimizer`: FSDP (``use_orig_params=True``, Lightning's default)
    replaces every parameter by a 1-D view of this rank's shard, so when Lightning
    builds the optimiser, ``ndim`` no longer tells a weight matrix from a bias.
    """
    return {name: param.ndim for name, param in model.named_parameters()}


def create_optimizer(
    model: nn.Module,
    *,
    optimizer: str = "adamw",
    lr: float,
    weight_decay: float = 0.05,
    betas: tuple[float, float] | list[float] = (0.9, 0.999),
    eps: float = 1e-8,
    momentum: float = 0.9,
    layer_decay: float | None = None,
    fused: bool | None = None,
    no_weight_decay: Collection[str] | None = None,
    dims: Mapping[str, int] | None = None,
) -> torch.optim.Optimizer:
    """A timm optimiser over ``model``'s trainable parameters.

    ``betas`` / ``eps`` / ``momentum`` go only to optimisers that take them, so any
    timm name works. Frozen parameters (momentum encoders, fixed position tables) are
    left out by timm's factory.

    Args:
        model: The module to optimise; its ``no_weight_decay()`` names (if any) get no
            weight decay, nor do 1-D parameters and biases.
        optimizer: A timm optimiser name.
        lr: The learning rate (of the undecayed layers, with ``layer_decay``).
        weight_decay: Weight decay of the other parameters.
        betas: Adam betas.
        eps: Adam epsilon.
        momentum: Momentum of SGD-like optimisers.
        layer_decay: Layer-wise learning-rate decay in (0, 1) through the model's
            ``group_matcher``; None or 1.0 for none.
        fused: torch's fused Adam / AdamW kernel (one kernel for all parameters);
            None = wherever it is available (``adam`` / ``adamw`` with every
            parameter a float tensor on the CPU or a CUDA device). Measured on a
            2-core CPU for a ViT-S-sized model: about 10x faster than the default
            per-parameter loop, which otherwise takes a large share of a step.
        no_weight_decay: Names without weight decay instead of the model's own
            ``no_weight_decay()`` (1-D parameters and biases never get it).
        dims: Each parameter's dimensions before sharding (:func:`parameter_dims`),
            which then decide what is 1-D; None = the parameters' current ``ndim``.

    Returns:
        The optimiser.
    """
    decay = None if layer_decay is None or layer_decay == 1.0 else layer_decay
    # Keywords for the optimiser itself, which timm passes on untyped (**kwargs).
    extra: dict[str, Any] = {}
    if fused is None:
        fused = _can_fuse(optimizer, model)
    if fused:
        extra["fused"] = True
    params: nn.Module | list[dict[str, Any]] = model
    if no_weight_decay is not None or dims is not None:
        # timm's own grouping, with these names instead of model.no_weight_decay(),
        # and with the recorded dims instead of the (possibly sharded) ndim.
        exempt = set(
            timm_no_weight_decay(model) if no_weight_decay is None else no_weight_decay
        )
        if dims is not None:  # timm matches with fnmatch: names taken literally
            exempt |= {glob.escape(name) for name, ndim in dims.items() if ndim <= 1}
        grouping: dict[str, Any] = {
            "weight_decay": weight_decay,
            "no_weight_decay_list": sorted(exempt),
            "weight_decay_exclude_1d": dims is None,
        }
        params = (
            timm.optim.param_groups_weight_decay(model, **grouping)
            if decay is None
            else timm.optim.param_groups_layer_decay(
                model, layer_decay=decay, **grouping
            )
        )
    created: torch.optim.Optimizer = timm.optim.create_optimizer_v2(
        params,
        opt=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        layer_decay=decay,
        # timm passes these only to the optimisers that take them.
        momentum=momentum,
        betas=tuple(betas),
        eps=eps,
        **extra,
    )
    return created


def fused_allowed(precision: str, clip_grad: float | None) -> bool | None:
    """``fused`` for :func:`create_optimizer` under a Lightning precision.

    A fused Adam step unscales fp16 gradients itself, after any clipping, so with
    ``16-mixed`` (a GradScaler) and clipping the gradients would be clipped while
    still scaled: no fused kernel then (False). Otherwise wherever it applies (None).
    """
    return False if str(precision).startswith("16") and clip_grad else None


def clip_gradients(
    params: Iterable[nn.Parameter], value: float, algorithm: str | None
) -> None:
    """Clips the gradients of ``params`` by norm (default) or by value.

    The pretraining methods and the fine-tune clip through this (from Lightning's
    ``configure_gradient_clipping`` hook) rather than through Lightning's
    ``clip_gradients``, which refuses fused optimisers under mixed precision even
    where, as with bf16, there is no scaling to undo.
    """
    with_grad = [p for p in params if p.grad is not None]
    if algorithm in (None, "norm"):
        torch.nn.utils.clip_grad_norm_(with_grad, value)
    else:
        torch.nn.utils.clip_grad_value_(with_grad, value)


def clip_in_hook(
    module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    params: Iterable[nn.Parameter],
    value: float | None,
    algorithm: str | None,
) -> None:
    """The body of a ``configure_gradient_clipping`` hook: clips ``params``.

    Under FSDP a norm must be taken over every shard, which only the root FSDP
    module can do (its ``clip_grad_norm_``; Lightning's own FSDP clipping refuses
    norms), and that root clips every parameter it wraps, the online classifier's
    included. Value clipping is per element, so it clips the local shards of
    ``params`` as it does elsewhere.
    """
    if not value:
        return
    strategy = module.trainer.strategy
    if "fsdp" in type(strategy).__name__.lower() and algorithm in (None, "norm"):
        root = strategy.model
        clip = getattr(root, "clip_grad_norm_", None)
        if not callable(clip):
            raise TypeError(
                f"Gradient clipping by norm under FSDP needs the FSDP-wrapped root "
                f"module; the strategy holds a {type(root).__name__}."
            )
        clip(float(value))
        return
    clip_gradients(params, float(value), algorithm)


def _can_fuse(optimizer: str, model: nn.Module) -> bool:
    """Whether torch's fused Adam(W) kernel takes every trainable parameter."""
    if optimizer.lower() not in ("adam", "adamw"):
        return False
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
