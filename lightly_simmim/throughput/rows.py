"""The train-step rows: one optimiser step of a model on a batch already on the device.

A :class:`TrainStep` is forward + backward + optimiser step, the way the training
loop runs it. :func:`method_step` builds one for this package's methods (``simmim``,
``mae``, ``byol``) exactly as :func:`lightly_simmim.train.pretrain` trains them: the
method from :func:`lightly_simmim.build.build_method`, the optimiser of its
``configure_optimizers`` (timm's factory, the learning rate scaled to the batch),
the loss of its ``training_step`` with the masks it draws on the device itself,
gradient clipping as ``optim.clip_grad`` asks Lightning for, and the method's own
``optimizer_step`` hook (BYOL's momentum update). Only the learning-rate schedule
(one multiplication per step) and the logging are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from pytorch_lightning.core.optimizer import LightningOptimizer
from torch import Tensor, nn
from torch.optim import Optimizer

from lightly_simmim.build import build_method
from lightly_simmim.config import Config
from lightly_simmim.methods import PretrainMethod
from lightly_simmim.optim import create_optimizer, scaled_lr
from lightly_simmim.throughput.precision import StepPrecision
from lightly_simmim.throughput.timing import Sample, time_calls

__all__ = ["TrainStep", "make_step", "method_step", "parameter_count"]

#: Runs one optimiser step: ``hook(optimizer, closure)`` must call
#: ``optimizer.step(closure)`` (a LightningModule's ``optimizer_step`` does).
StepHook = Callable[[LightningOptimizer, Callable[[], Tensor]], None]


@dataclass
class TrainStep:
    """A row that times optimiser steps on a fixed batch (a :class:`Workload`).

    Attributes:
        name: The row's name.
        images_per_step: Images one step trains on (the batch size).
        device: Where the step runs.
        step: One step: forward, backward, clipping, optimiser step (compiled if
            asked for).
        forward_backward: One eager forward and backward pass without the
            optimiser step, for counting FLOPs.
        parameters: Parameters of the model (each shared one once).
        notes: Remarks for the report.
    """

    name: str
    images_per_step: int
    device: torch.device
    step: Callable[[], object]
    forward_backward: Callable[[], object]
    parameters: int
    notes: list[str] = field(default_factory=list)

    def warm_up(self, steps: int) -> None:
        """Runs ``steps`` untimed steps."""
        for _ in range(steps):
            self.step()

    def measure(self, steps: int) -> Sample:
        """Times ``steps`` steps."""
        return time_calls(self.step, steps, self.images_per_step, self.device)


def parameter_count(model: nn.Module) -> int:
    """Number of parameters of ``model``, a parameter shared by two modules once."""
    return sum(parameter.numel() for parameter in model.parameters())


def make_step(
    loss: Callable[[], Tensor],
    optimizer: Optimizer,
    precision: StepPrecision,
    *,
    clip_grad: float | None = None,
    hook: StepHook | None = None,
) -> Callable[[], object]:
    """One training step as Lightning's automatic optimisation runs it.

    The closure zeroes the gradients, computes ``loss()`` under the precision's
    autocast, runs the backward pass (scaled for fp16) and clips the gradient norm
    of the optimiser's parameters; the optimiser then steps through ``hook`` (a
    LightningModule's ``optimizer_step``) or directly. Nothing waits for the device:
    the loss is never read on the host.

    Args:
        loss: Computes the scalar loss of the row's batch.
        optimizer: The row's optimiser.
        precision: The row's precision handling.
        clip_grad: Maximal gradient norm; None = no clipping.
        hook: Runs the optimiser step given the optimiser and the closure.

    Returns:
        The step.
    """
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    stepper = precision.stepper(optimizer)

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            value = loss()
        precision.backward(value)
        if clip_grad is not None:
            precision.unscale(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, clip_grad)
        return value.detach()

    def step() -> None:
        if hook is None:
            stepper.step(closure)
        else:
            hook(stepper, closure)

    return step


def make_forward_backward(
    loss: Callable[[], Tensor], optimizer: Optimizer, precision: StepPrecision
) -> Callable[[], object]:
    """One eager forward and backward pass (gradients dropped after), to count."""

    def forward_backward() -> None:
        with precision.autocast():
            value = loss()
        torch.autograd.backward(value)
        optimizer.zero_grad(set_to_none=True)

    return forward_backward


def _random_views(
    method: PretrainMethod, batch_size: int, device: torch.device, seed: int
) -> list[Tensor]:
    """A batch shaped like the method's transform output: one (B, C, H, W) tensor
    of standard-normal values (normalised pixels) per view."""
    rng = np.random.default_rng(seed)
    side = method.input_size
    image = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    views: Sequence[Tensor] = method.default_transform()(image)  # (C, H, W) each
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn((batch_size, *view.shape), generator=generator).to(device)
        for view in views
    ]


def method_step(
    name: str,
    config: Config,
    device: torch.device,
    precision: str,
    compile_loss: bool = False,
    ablate: str | None = None,
) -> TrainStep:
    """The train step of this package's method as the pretraining loop runs it.

    ``ablate`` turns one of the hot path's choices back, to show what it is worth
    in the same run: ``"fused"`` steps AdamW with torch's default per-parameter
    loop instead of its fused kernel; ``"masked-head"`` (SimMIM) runs the head and
    loss on the whole image instead of the masked positions only.

    Args:
        name: The row's name.
        config: The run config (``method.name`` is the method).
        device: The training device.
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"``.
        compile_loss: ``torch.compile`` the loss computation (mask drawing,
            forward pass and loss, as in the ``hf`` row).
        ablate: None, ``"fused"`` or ``"masked-head"`` (see above).

    Returns:
        The row.

    Raises:
        ValueError, TypeError: The method does not take this encoder or these
            sizes (the message says why).
    """
    torch.manual_seed(config.seed)
    method = build_method(config, with_classes=False).to(device).train()
    if ablate == "masked-head":
        method.num_masked = None  # type: ignore[assignment]  # SimMIM's attribute
    settings = config.optim
    # configure_optimizers' optimiser for one device without accumulation.
    lr = scaled_lr(settings.base_lr, config.data.batch_size, settings.base_batch_size)
    optimizer = create_optimizer(
        method,
        optimizer=settings.optimizer,
        lr=lr,
        weight_decay=settings.weight_decay,
        betas=settings.betas,
        eps=settings.eps,
        momentum=settings.momentum,
        fused=False if ablate == "fused" else None,
    )
    views = _random_views(method, config.data.batch_size, device, config.seed)
    # What training_step minimises without the online classifier, which the
    # loop only adds where labels exist (the `loop` row measures it).
    method_loss = method.method_loss
    eager_loss: Callable[[], Tensor] = lambda: method_loss(views)[0]  # noqa: E731
    compiled = torch.compile(method_loss) if compile_loss else method_loss
    run = StepPrecision(precision, device)

    def hook(stepper: LightningOptimizer, closure: Callable[[], Tensor]) -> None:
        method.optimizer_step(0, 0, stepper, closure)

    return TrainStep(
        name=name,
        images_per_step=config.data.batch_size,
        device=device,
        step=make_step(
            lambda: compiled(views)[0],
            optimizer,
            run,
            clip_grad=settings.clip_grad,
            hook=hook,
        ),
        forward_backward=make_forward_backward(eager_loss, optimizer, run),
        parameters=parameter_count(method),
        notes=[
            f"{type(optimizer).__name__} as configured (lr {lr:.3g}, weight decay "
            f"{settings.weight_decay}, fused kernel "
            f"{'on' if optimizer.defaults.get('fused') else 'off'}), gradient-norm "
            f"clip {settings.clip_grad}"
            + (
                "; head and loss on every position"
                if getattr(method, "num_masked", 0) is None
                else ""
            )
        ],
    )
