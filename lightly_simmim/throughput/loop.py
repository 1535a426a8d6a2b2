"""The ``loop`` row: the whole ``pretrain`` loop, in images per second.

Each repetition is a real :func:`lightly_simmim.train.pretrain` run of the target's
config in a temporary folder, on the measured device, precision and compile setting,
stopped by ``trainer.max_steps`` and with the final kNN evaluation off. A Lightning
callback times the batches after the first ``warmup``, from the end of one batch to
the end of the last: data loading, the step, logging, callbacks and checkpoints
(where an epoch ends inside the window), as a user's run spends its time. Set
against the bare ``simmim`` step, it says what the loop and the data path cost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import cast

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from lightly_simmim import train
from lightly_simmim.config import Config
from lightly_simmim.config.schema import Precision
from lightly_simmim.throughput.timing import Sample, synchronize

__all__ = ["BatchTimer", "LoopRun"]


class BatchTimer(Callback):
    """Times training batches ``skip + 1`` to ``skip + timed`` of a run.

    Args:
        skip: Batches before the timed ones (at least 1: the clock starts at the
            end of the last skipped batch, so the next batch's loading is timed).
        timed: Batches to time.
        device: The training device (its queue is drained before reading clocks).
    """

    def __init__(self, skip: int, timed: int, device: torch.device) -> None:
        super().__init__()
        self.skip = max(1, skip)
        self.timed = timed
        self.device = device
        self.batches = 0
        self.start: float | None = None
        self.seconds: float | None = None

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        """Counts the batch; starts or stops the clock at the window's ends."""
        self.batches += 1
        if self.batches == self.skip:
            synchronize(self.device)
            self.start = time.perf_counter()
        elif self.batches == self.skip + self.timed and self.start is not None:
            synchronize(self.device)
            self.seconds = time.perf_counter() - self.start

    def elapsed(self) -> float:
        """Seconds of the timed batches.

        Raises:
            ValueError: The run ended before the window did (too few batches).
        """
        if self.seconds is None:
            raise ValueError(
                f"The pretrain run ended after {self.batches} batches, before the "
                f"{self.skip + self.timed} the loop row times; raise trainer.epochs "
                "or data.limit_train."
            )
        return self.seconds


@contextlib.contextmanager
def _torch_flags_kept() -> Iterator[None]:
    """Restores the global flags a Trainer sets (deterministic algorithms on the
    CPU, cuDNN benchmarking), so the rows timed after a loop run are not slowed."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


class LoopRun:
    """The loop row (a :class:`~lightly_simmim.throughput.timing.Workload`).

    Args:
        config: The run config to pretrain.
        device: The device to train on (one device, no strategy).
        precision: The resolved precision.
        compile_model: ``trainer.compile``.
        warmup: Batches of each run before the timed ones.
    """

    name = "loop"

    def __init__(
        self,
        config: Config,
        device: torch.device,
        precision: str,
        compile_model: bool,
        warmup: int,
    ) -> None:
        cuda = device.type == "cuda"
        trainer = dataclasses.replace(
            config.trainer,
            accelerator="gpu" if cuda else "cpu",
            # "N," is Lightning's list of device indices: exactly this device.
            devices=f"{device.index or 0}," if cuda else 1,
            num_nodes=1,
            strategy="auto",
            precision=cast(Precision, precision),
            compile=compile_model,
        )
        self.config = dataclasses.replace(
            config,
            trainer=trainer,
            eval=dataclasses.replace(config.eval, knn=False),
            name="throughput-loop",
        )
        self.device = device
        self.warmup = max(1, warmup)

    def _run(self, skip: int, timed: int) -> Sample:
        accumulate = self.config.optim.accumulate_grad_batches
        steps = math.ceil((skip + timed) / accumulate)
        timer = BatchTimer(skip, timed, self.device)
        with tempfile.TemporaryDirectory(prefix="lightly-simmim-loop-") as folder:
            config = dataclasses.replace(
                self.config,
                output_dir=folder,
                trainer=dataclasses.replace(self.config.trainer, max_steps=steps),
            )
            # pretrain prints its progress; stdout belongs to the table.
            with _torch_flags_kept(), contextlib.redirect_stdout(sys.stderr):
                train.pretrain(config, callbacks=[timer])
        return Sample(timed * self.config.data.batch_size, timer.elapsed())

    def warm_up(self, steps: int) -> None:
        """One short run: imports, file caches, the compiler's caches."""
        self._run(self.warmup, 1)

    def measure(self, steps: int) -> Sample:
        """One run, timing ``steps`` batches after the first ``warmup``."""
        return self._run(self.warmup, steps)
