"""Timing rows fairly: warm-up excluded, repetitions interleaved, median and range.

Every row of a table is a :class:`Workload`. After each row's warm-up,
:func:`interleave` times one repetition of every row in turn, round after round,
so that a slow minute of a shared machine (another job, thermal throttling) hits
all rows alike instead of whichever row ran then; each round starts one row later
than the previous, so no row always follows the same neighbour. Clocks are read
after ``torch.cuda.synchronize`` on CUDA (kernels run asynchronously there) and
directly elsewhere.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

__all__ = [
    "Sample",
    "Spread",
    "Workload",
    "interleave",
    "synchronize",
    "time_calls",
]


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (CUDA); nothing to wait for elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Sample:
    """One timed repetition: ``images`` processed in ``seconds``."""

    images: int
    seconds: float

    @property
    def rate(self) -> float:
        """Images per second."""
        return self.images / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of a row's repetitions (images/s)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Spread:
        """The spread of the samples' rates.

        Raises:
            ValueError: Without samples.
        """
        if not samples:
            raise ValueError("A spread needs at least one sample.")
        rates = [sample.rate for sample in samples]
        return cls(statistics.median(rates), min(rates), max(rates))


class Workload(Protocol):
    """A row of the table: something that processes images and can be timed."""

    name: str

    def warm_up(self, steps: int) -> None:
        """Runs ``steps`` untimed steps (compilation, caches, allocator, workers)."""

    def measure(self, steps: int) -> Sample:
        """Runs and times one repetition of ``steps`` steps."""


def time_calls(
    call: Callable[[], object], calls: int, images_per_call: int, device: torch.device
) -> Sample:
    """Times ``calls`` calls of ``call``, the device's queue drained at both ends.

    Args:
        call: One step.
        calls: Number of calls timed together.
        images_per_call: Images one call processes.
        device: The device the calls run on.

    Returns:
        The sample.
    """
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        call()
    synchronize(device)
    return Sample(calls * images_per_call, time.perf_counter() - start)


def interleave(
    workloads: Sequence[Workload],
    repeats: int,
    steps: int,
    progress: Callable[[str], object] | None = None,
) -> dict[str, list[Sample]]:
    """Times ``repeats`` repetitions of every workload, round-robin.

    Args:
        workloads: Warmed-up rows.
        repeats: Repetitions per row.
        steps: Steps per repetition.
        progress: Called with a line per round (default: stderr).

    Returns:
        Row name -> its samples, in the order they were taken.
    """
    report = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    samples: dict[str, list[Sample]] = {workload.name: [] for workload in workloads}
    count = len(workloads)
    for round_index in range(repeats):
        order = [workloads[(round_index + i) % count] for i in range(count)]
        for workload in order:
            samples[workload.name].append(workload.measure(steps))
        report(f"round {round_index + 1}/{repeats} done")
    return samples
