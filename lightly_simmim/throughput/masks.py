"""The ``masks`` row: SimMIM's mask generation alone, in masks per second.

The generator is the one the ``simmim`` row's method draws from, for the same batch
size on the same device; its ratio to the ``simmim`` row says what share of a step
the masks cost (a ratio of 100x means 1%).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightly_simmim.build import build_method
from lightly_simmim.config import Config
from lightly_simmim.masking import SimMIMMaskGenerator
from lightly_simmim.throughput.timing import Sample, time_calls

__all__ = ["MaskGeneration"]


@dataclass
class MaskGeneration:
    """The masks row (a :class:`~lightly_simmim.throughput.timing.Workload`).

    Args:
        config: A SimMIM run config (its mask settings and batch size).
        device: Where the masks are drawn.

    Raises:
        ValueError: The config's method has no SimMIM mask generator.
    """

    config: Config
    device: torch.device
    name: str = "masks"

    def __post_init__(self) -> None:
        method = build_method(self.config, with_classes=False)
        generator = getattr(method, "mask_generator", None)
        if not isinstance(generator, SimMIMMaskGenerator):
            raise ValueError(
                f"method {self.config.method.name!r} draws no SimMIM masks."
            )
        self.generator = generator
        self.batch = self.config.data.batch_size

    def _draw(self) -> None:
        self.generator(self.batch, device=self.device)

    def warm_up(self, steps: int) -> None:
        """Draws ``steps`` batches of masks untimed."""
        for _ in range(steps):
            self._draw()

    def measure(self, steps: int) -> Sample:
        """Times ``steps`` batches of masks."""
        return time_calls(self._draw, steps, self.batch, self.device)
