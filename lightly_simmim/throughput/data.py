"""The ``data`` row: the pretraining loop's data path alone, in images per second.

The loader is the one :func:`lightly_simmim.train.pretrain` builds, whichever path
it takes (an in-memory uint8 tensor augmented per batch on the device, or per-image
transforms in worker processes), and every batch then goes through what Lightning
does before ``training_step``: the module's ``transfer_batch_to_device`` and
``on_after_batch_transfer`` hooks, so augmentation on the device is measured too.
Nothing trains: the row says how many images per second the data path could feed a
step that took no time.

Each repetition starts a fresh pass over the loader (persistent workers stay up)
and times the batches after the first ``num_workers + 1``, from the arrival of one
batch to the arrival of the last: in steady state, not a burst of batches the
workers prefetched while the other rows ran.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable

import torch

from lightly_simmim import train
from lightly_simmim.build import build_method, dataset_splits
from lightly_simmim.config import Config
from lightly_simmim.methods import PretrainMethod
from lightly_simmim.throughput.timing import Sample, synchronize

__all__ = ["DataPath", "loop_loader"]


def loop_loader(config: Config, method: PretrainMethod) -> Iterable[object]:
    """The training loader :func:`lightly_simmim.train.pretrain` builds.

    Args:
        config: The run config.
        method: The method (its transform and hooks).

    Returns:
        The loader.

    Raises:
        DatasetNotFoundError: The data are not where the config says.
    """
    splits = dataset_splits(config)
    return train.train_loader(config, method, splits)


class DataPath:
    """The data row (a :class:`~lightly_simmim.throughput.timing.Workload`).

    Args:
        config: The run config whose data path to measure.
        device: The training device the batches go to.

    Raises:
        DatasetNotFoundError: The data are not where the config says.
        ValueError, TypeError: The method cannot be built from the config.
    """

    name = "data"

    def __init__(self, config: Config, device: torch.device) -> None:
        self.device = device
        self.batch_size = config.data.batch_size
        self.method = build_method(config, with_classes=False)
        self.loader = loop_loader(config, self.method)
        # Batches a fresh pass delivers before its workers are all busy.
        self.skip = int(getattr(self.loader, "num_workers", 0)) + 1

    def _batches(self) -> Generator[object, None, None]:
        """Batches as ``training_step`` gets them, passes restarted as needed."""
        while True:
            delivered = False
            for batch in self.loader:
                delivered = True
                moved = self.method.transfer_batch_to_device(batch, self.device, 0)
                yield self.method.on_after_batch_transfer(moved, 0)
            if not delivered:
                raise ValueError(
                    "The training loader yields no batch: lower data.batch_size or "
                    "raise data.limit_train."
                )

    def _run(self, skip: int, timed: int) -> Sample:
        batches = self._batches()
        for _ in range(max(1, skip)):
            next(batches)
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(timed):
            next(batches)
        synchronize(self.device)
        seconds = time.perf_counter() - start
        batches.close()  # ends the pass: its workers stop fetching for it
        return Sample(timed * self.batch_size, seconds)

    def warm_up(self, steps: int) -> None:
        """Starts the workers and loads ``steps`` batches untimed."""
        self._run(self.skip, max(1, steps))

    def measure(self, steps: int) -> Sample:
        """Times ``steps`` batches of a fresh pass, after its first ones."""
        return self._run(self.skip, steps)
