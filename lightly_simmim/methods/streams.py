"""The seeded random streams of a method's own draws (masks, in-memory crops).

Every rank draws from its own generator, seeded from ``(seed, rank)`` by
:func:`lightly_simmim.masking.process_seed`, so masks differ across ranks and runs are
reproducible; a resumed run restarts the streams from a seed derived from its step,
so it does not replay the masks of its first steps.
"""

from __future__ import annotations

import torch

from lightly_simmim.masking import process_seed

__all__ = ["SeededStreams"]


class SeededStreams:
    """Mixin of :class:`~lightly_simmim.methods.PretrainMethod`: per-device generators.

    The class using it sets ``seed`` (the run's base seed), ``_generators = {}`` and
    ``_stream_seed = seed`` in its constructor.
    """

    seed: int
    _generators: dict[str, torch.Generator]
    _stream_seed: int

    def mask_seed(self, step: int) -> int:
        """Seed of the random streams of a run (re)started at optimiser ``step``.

        A fresh run uses ``seed`` itself; a resumed run derives another from its
        step, so it does not replay the masks of the first steps (the streams'
        state is per rank and not in the checkpoint, which rank 0 writes alone).
        """
        return self.seed if step == 0 else self.seed + 1_000_003 * step

    def reseed_masks(self, step: int) -> None:
        """Restarts the method's random streams for a run starting at ``step``."""
        self._generators = {}
        self._stream_seed = self.mask_seed(step)

    def _generator(self, device: torch.device) -> torch.Generator:
        """This process's generator on ``device``, seeded from (seed, rank)."""
        key = str(device)
        if key not in self._generators:
            generator = torch.Generator(device=device)
            generator.manual_seed(process_seed(self._stream_seed))
            self._generators[key] = generator
        return self._generators[key]

    def _fixed_generator(self, device: torch.device) -> torch.Generator:
        """A fresh generator seeded with ``seed``, for reproducible image grids."""
        generator = torch.Generator(device=device)
        generator.manual_seed(self.seed)
        return generator
