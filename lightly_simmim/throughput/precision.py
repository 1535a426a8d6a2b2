"""Training precision without a Trainer: ``auto`` resolved, autocast, loss scaling.

The rows of the throughput table train the way Lightning's precision plugins would:
``bf16-mixed`` / ``16-mixed`` run the forward pass under ``torch.autocast`` and the
backward pass outside it; ``16-mixed`` scales the loss with a ``GradScaler`` and
unscales before gradient clipping. ``auto`` means ``bf16-mixed`` where the device
computes bf16 natively and ``32`` elsewhere, as for ``trainer.precision: auto``
(:func:`lightly_simmim.devices.resolve_precision`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from torch import Tensor
from torch.optim import Optimizer

from lightly_simmim.devices import resolve_precision as resolve_auto
from lightly_simmim.throughput.machine import cpu_flags

__all__ = [
    "PRECISIONS",
    "ResolvedPrecision",
    "StepPrecision",
    "compute_dtype",
    "resolve_precision",
]

#: What ``--precision`` accepts.
PRECISIONS = ("32", "bf16-mixed", "16-mixed", "auto")

# CPU flags of native bf16 matrix arithmetic (``/proc/cpuinfo``).
_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})

_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype a step's matrix multiplications run in: fp32 for ``32``, bf16 for
    ``bf16-mixed``, fp16 for ``16-mixed`` (autocast's)."""
    return _AUTOCAST_DTYPES.get(precision, torch.float32)


def _auto_reason(precision: str, device: torch.device) -> str:
    """Why ``auto`` became ``precision`` on ``device``, in words."""
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return f"auto: torch.cuda.is_bf16_supported() is {supported}"
    found = sorted(_BF16_CPU_FLAGS & cpu_flags())
    if precision == "bf16-mixed":
        return f"auto: CPU flag {', '.join(found)}"
    return "auto: no avx512_bf16 / amx_bf16 CPU flag"


@dataclass(frozen=True)
class ResolvedPrecision:
    """A concrete precision and why it was chosen.

    Attributes:
        name: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"``.
        reason: How ``auto`` or a config value became ``name`` ("" if asked for).
    """

    name: str
    reason: str = ""


def resolve_precision(requested: str, device: torch.device) -> ResolvedPrecision:
    """Resolves ``auto`` and Lightning's aliases to the precision a step runs in.

    Args:
        requested: ``32`` / ``32-true``, ``bf16-mixed``, ``16-mixed`` or ``auto``.
        device: The training device.

    Returns:
        The precision.

    Raises:
        ValueError: An unknown precision, or ``16-mixed`` on the CPU.
    """
    if requested in ("32", "32-true"):
        return ResolvedPrecision("32")
    if requested == "auto":
        # The loop's own resolution of trainer.precision: auto.
        resolved = resolve_auto(requested, device.type)
        name = "32" if resolved in ("32", "32-true") else resolved
        return ResolvedPrecision(name, _auto_reason(name, device))
    if requested not in _AUTOCAST_DTYPES:
        raise ValueError(
            f"Unknown precision {requested!r}; use one of {', '.join(PRECISIONS)}."
        )
    if requested == "16-mixed" and device.type != "cuda":
        raise ValueError(
            "16-mixed needs CUDA (fp16 autocast with loss scaling); use bf16-mixed "
            "or 32 on the CPU."
        )
    return ResolvedPrecision(requested)


def _grad_scaler() -> torch.amp.GradScaler:
    """A CUDA ``GradScaler``: ``torch.amp``'s from torch 2.3, ``torch.cuda.amp``'s
    before."""
    amp_scaler = getattr(torch.amp, "GradScaler", None)
    if amp_scaler is not None:
        scaler: torch.amp.GradScaler = amp_scaler("cuda")
        return scaler
    return torch.cuda.amp.GradScaler()


class _ClosureStep(LightningOptimizer):
    """The optimiser a ``LightningModule.optimizer_step`` hook receives.

    Lightning hands the hook a ``LightningOptimizer`` whose ``step(closure)`` goes
    through the precision plugin: run the closure (forward, backward, clipping),
    then step, through the ``GradScaler`` if there is one. This does the same
    without a Trainer, so a method's own hook (BYOL's momentum update) runs as in
    training.
    """

    def __init__(
        self, optimizer: Optimizer, scaler: torch.amp.GradScaler | None
    ) -> None:
        super().__init__(optimizer)
        self._scaler = scaler

    def step(
        self, closure: Callable[[], object] | None = None, **kwargs: object
    ) -> object:
        """Runs ``closure``, then the optimiser step; returns the closure's result."""
        result = closure() if closure is not None else None
        if self._scaler is None:
            self.optimizer.step()
        else:
            self._scaler.step(self.optimizer)
            self._scaler.update()
        return result


class StepPrecision:
    """One row's precision: autocast for the forward pass, loss scaling for fp16.

    Make one per row: the ``GradScaler`` of ``16-mixed`` keeps per-run state.

    Args:
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (resolved).
        device: The training device.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision = precision
        self.device = device
        self._dtype = _AUTOCAST_DTYPES.get(precision)
        self._scaler = _grad_scaler() if precision == "16-mixed" else None

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The forward pass's context: ``torch.autocast`` for the mixed precisions."""
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._dtype)

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``, on the scaled loss with ``16-mixed``."""
        scaled = loss if self._scaler is None else self._scaler.scale(loss)
        # torch.autograd.backward is what Tensor.backward calls, and it is typed.
        torch.autograd.backward(scaled)

    def unscale(self, optimizer: Optimizer) -> None:
        """Unscales the gradients before clipping (``16-mixed`` only)."""
        if self._scaler is not None:
            self._scaler.unscale_(optimizer)

    def stepper(self, optimizer: Optimizer) -> LightningOptimizer:
        """``optimizer`` as a Lightning hook receives it: ``step(closure)`` runs the
        closure, then steps (through the scaler with ``16-mixed``)."""
        return _ClosureStep(optimizer, self._scaler)
