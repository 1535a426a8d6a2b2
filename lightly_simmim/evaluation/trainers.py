"""Where the training evaluations run: a Lightning ``Trainer`` made to order.

The fine-tune and the linear probe's feature extraction take a
:class:`TrainerFactory` rather than a ready Trainer, because the fine-tune's recipe
decides the epochs and gradient clipping. A run's evaluation builds it from the run
config (``lightly_simmim.evaluation.protocol``: the run's devices, nodes, strategy
and precision); a library caller can hand any factory, e.g. for two GPUs::

    def two_gpus(*, max_epochs, gradient_clip_val):
        return pl.Trainer(accelerator="gpu", devices=2, strategy="ddp",
                          max_epochs=max_epochs, gradient_clip_val=gradient_clip_val,
                          logger=False, enable_checkpointing=False)

Without one, :func:`local_trainer` runs on one device in fp32.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import pytorch_lightning as pl

__all__ = ["TrainerFactory", "local_trainer", "quiet_lightning"]


class TrainerFactory(Protocol):
    """``(*, max_epochs, gradient_clip_val) -> pl.Trainer``.

    The Trainer may run on any devices and strategy; it should keep no checkpoints
    (an evaluation has nothing to resume) and may have no logger.
    """

    def __call__(
        self, *, max_epochs: int, gradient_clip_val: float | None
    ) -> pl.Trainer: ...


def local_trainer(
    *, max_epochs: int, gradient_clip_val: float | None = None
) -> pl.Trainer:
    """One device (Lightning's ``"auto"`` accelerator), fp32, nothing written.

    Args:
        max_epochs: Epochs to train (1 for feature extraction).
        gradient_clip_val: Norm clipping, or None.

    Returns:
        A Trainer without logger, checkpoints, progress bar, model summary or
        sanity validation.
    """
    return pl.Trainer(
        accelerator="auto",
        devices=1,
        precision="32-true",
        max_epochs=max_epochs,
        gradient_clip_val=gradient_clip_val,
        gradient_clip_algorithm="norm",
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
    )


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hides Lightning's own deprecation notice about torch's pytree ``LeafSpec``
    (nothing a caller can act on) inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
        yield
