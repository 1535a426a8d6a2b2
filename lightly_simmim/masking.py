"""SimMIM's random block masks on a coarse grid, batched and seeded.

SimMIM masks square cells of ``mask_patch_size`` pixels (32 by default), not single
tokens: with small tokens (4 px for Swin) a single-token mask is trivially inpainted
from its neighbours. Each cell covers ``(mask_patch_size // model_patch_size) ** 2``
tokens, and exactly ``ceil(num_cells * mask_ratio)`` cells are masked in every image.
"""

from __future__ import annotations

import hashlib
import math
import os

import torch
from torch import Tensor


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    pair = tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(
            f"{name} must be an int or a pair (H, W) of ints, got {value!r}."
        )
    return (pair[0], pair[1])


def _rank_and_world() -> tuple[int, int]:
    """Global rank of this process, from torch.distributed or the launcher's env."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    # Lightning and torchrun set these before the process group exists.
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return rank, world


def process_seed(seed: int, rank: int | None = None, worker: int | None = None) -> int:
    """Derives a seed that differs per (seed, rank, data loader worker).

    Without this, ``seed_everything`` gives every rank the same generator state and
    every rank would draw the same masks for its (different) images, which silently
    halves the diversity of masks seen per global batch.

    Args:
        seed: The user's base seed.
        rank: Global rank; read from torch.distributed / the environment if None.
        worker: Data loader worker id; read from ``get_worker_info`` if None
            (-1 in the main process).

    Returns:
        A 63-bit seed, stable across runs for the same triple.
    """
    if rank is None:
        rank = _rank_and_world()[0]
    if worker is None:
        info = torch.utils.data.get_worker_info()
        worker = -1 if info is None else info.id
    digest = hashlib.sha256(f"{seed}/{rank}/{worker}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class SimMIMMaskGenerator:
    """Random block masks as in SimMIM, on the model's token grid.

    The image is cut into a coarse grid of ``mask_patch_size`` cells; for every image
    exactly ``ceil(num_cells * mask_ratio)`` cells are chosen uniformly without
    replacement, and each cell is expanded to the
    ``(mask_patch_size // model_patch_size) ** 2`` tokens it covers. True means masked.

    Randomness: pass a ``torch.Generator`` per call for full control; otherwise, with
    ``seed`` set, the generator owns one generator per (rank, data loader worker,
    device) seeded by :func:`process_seed`, so masks are reproducible and distinct
    across workers and ranks; with neither, torch's global RNG is used (which the
    data loader seeds differently per worker, but which is equal across ranks after
    ``seed_everything``).

    Args:
        input_size: Image size, an int for square images or (H, W).
        mask_patch_size: Side of a masking cell in pixels (32 in the paper).
        model_patch_size: Side of one encoder token in pixels (16 for ViT-B/16,
            4 for Swin).
        mask_ratio: Fraction of cells to mask, in [0, 1] (0.6 in the paper).
        seed: Optional base seed for a reproducible, per-process generator.

    Raises:
        ValueError: If the sizes do not divide, or the ratio is outside [0, 1].

    Examples:
        >>> gen = SimMIMMaskGenerator(input_size=224, mask_patch_size=32,
        ...                           model_patch_size=16, mask_ratio=0.6)
        >>> mask = gen(batch_size=8)  # bool (8, 14, 14), True = masked
    """

    def __init__(
        self,
        input_size: int | tuple[int, int] = 192,
        mask_patch_size: int = 32,
        model_patch_size: int = 4,
        mask_ratio: float = 0.6,
        seed: int | None = None,
    ) -> None:
        self.input_size = _pair(input_size, "input_size")
        if mask_patch_size <= 0 or model_patch_size <= 0:
            raise ValueError(
                f"mask_patch_size ({mask_patch_size}) and model_patch_size "
                f"({model_patch_size}) must be positive."
            )
        for side in self.input_size:
            if side <= 0 or side % mask_patch_size != 0:
                raise ValueError(
                    f"input_size {self.input_size} must be a positive multiple of "
                    f"mask_patch_size ({mask_patch_size}) on each side; resize or crop "
                    f"the images, or pick a mask_patch_size that divides "
                    f"{self.input_size}."
                )
        if mask_patch_size % model_patch_size != 0:
            raise ValueError(
                f"mask_patch_size ({mask_patch_size}) must be a multiple of "
                f"model_patch_size ({model_patch_size}): a masking cell has to cover "
                f"whole tokens."
            )
        if not (0.0 <= float(mask_ratio) <= 1.0) or math.isnan(float(mask_ratio)):
            raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}.")
        self.mask_patch_size = mask_patch_size
        self.model_patch_size = model_patch_size
        self.mask_ratio = float(mask_ratio)
        self.seed = seed
        # Cells per side, and tokens per cell side.
        self.cell_grid = (
            self.input_size[0] // mask_patch_size,
            self.input_size[1] // mask_patch_size,
        )
        self.scale = mask_patch_size // model_patch_size
        self.num_cells = self.cell_grid[0] * self.cell_grid[1]
        self.num_masked_cells = math.ceil(self.num_cells * self.mask_ratio)
        self._generators: dict[tuple[int, int, str], torch.Generator] = {}

    @property
    def token_grid(self) -> tuple[int, int]:
        """(H, W) of the mask returned: the model's token grid."""
        return (self.cell_grid[0] * self.scale, self.cell_grid[1] * self.scale)

    def _own_generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        rank = _rank_and_world()[0]
        info = torch.utils.data.get_worker_info()
        worker = -1 if info is None else info.id
        key = (rank, worker, str(device))
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed(process_seed(self.seed, rank=rank, worker=worker))
            self._generators[key] = gen
        return self._generators[key]

    def __call__(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draws a batch of masks.

        Args:
            batch_size: Number of masks.
            device: Device of the returned mask (and of the random draw).
            generator: Optional generator on ``device``; overrides ``seed``.

        Returns:
            Bool tensor (batch_size, H / model_patch_size, W / model_patch_size),
            True = masked.
        """
        if batch_size < 0:
            raise ValueError(f"batch_size must be >= 0, got {batch_size}.")
        device = torch.device("cpu") if device is None else torch.device(device)
        if generator is None:
            generator = self._own_generator(device)
        # One uniform score per cell; the k lowest scores of a row are a uniform
        # k-subset, drawn for the whole batch at once.
        noise = torch.rand(
            batch_size, self.num_cells, device=device, generator=generator
        )  # (B, cells)
        order = noise.argsort(dim=1)  # (B, cells)
        cells = torch.zeros(batch_size, self.num_cells, dtype=torch.bool, device=device)
        cells.scatter_(1, order[:, : self.num_masked_cells], True)
        cells = cells.view(batch_size, *self.cell_grid)  # (B, gh, gw)
        # Expand every cell to the tokens it covers: (B, gh * s, gw * s).
        return cells.repeat_interleave(self.scale, dim=1).repeat_interleave(
            self.scale, dim=2
        )

    def reseed(self, seed: int | None) -> None:
        """Starts new per-process streams from ``seed`` (None: torch's global RNG).

        A resumed training run calls this with a seed derived from its step, so that
        it does not replay the masks of the run's first steps.
        """
        self.seed = seed
        self._generators.clear()

    def __getstate__(self) -> dict[str, object]:
        # Generators are per process; a worker builds its own from the seed.
        state = self.__dict__.copy()
        state["_generators"] = {}
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, "
            f"mask_patch_size={self.mask_patch_size}, "
            f"model_patch_size={self.model_patch_size}, mask_ratio={self.mask_ratio}, "
            f"seed={self.seed})"
        )
