"""What a checkpoint's backbone is, and the interface of a family's converter.

An :class:`Architecture` says which timm model rebuilds the official backbone: a
registered timm name (the closest size, for readability) plus the complete keyword
arguments that define the architecture (image size, widths, depths, heads, window,
...), so ``timm.create_model(arch.timm_name, **arch.timm_kwargs)`` builds it exactly.
Training settings such as ``drop_path_rate`` are not part of it.

A :class:`FamilyConverter` (one per family: ViT, Swin, SwinV2) reads the
architecture from tensor names and shapes, applies size overrides, and maps the
official tensors to timm's names.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor, nn

from lightly_simmim.convert.errors import OfficialCheckpointError
from lightly_simmim.encoders import TimmKwargs

__all__ = [
    "Architecture",
    "Family",
    "FamilyConverter",
    "MappedState",
    "Overrides",
    "StateDict",
    "config_value",
    "indices",
    "window_from_table_rows",
]

Family = Literal["vit", "swin", "swinv2"]
StateDict = dict[str, Tensor]

# Why a tensor of the checkpoint is not carried over: a buffer that timm computes.
BUFFER = "buffer, recomputed by timm"


@dataclass(frozen=True)
class Architecture:
    """The timm model that rebuilds an official backbone.

    Attributes:
        family: ``"vit"`` (the paper's BEiT-style ViT, timm ``Beit``), ``"swin"``
            (timm ``SwinTransformer``) or ``"swinv2"`` (timm ``SwinTransformerV2``).
        timm_name: A registered timm model name of that family.
        timm_kwargs: Keyword arguments for ``timm.create_model`` that fix the
            architecture (they override the registered model's own).
        num_classes: Classes of the checkpoint's classifier (fine-tuning
            checkpoints), 0 if it has none.
    """

    family: Family
    timm_name: str
    timm_kwargs: TimmKwargs
    num_classes: int = 0

    @property
    def img_size(self) -> tuple[int, int]:
        """(H, W) input size in pixels."""
        size = self.timm_kwargs["img_size"]
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @property
    def patch_size(self) -> int:
        """Side of a patch in pixels."""
        return int(self.timm_kwargs["patch_size"])

    @property
    def encoder_stride(self) -> int:
        """Pixels per position of the last feature map (patch, or x2 per merge)."""
        stages = len(self.timm_kwargs.get("depths", (1,)))
        return int(self.patch_size * 2 ** (stages - 1))

    def with_kwargs(self, **changes: object) -> Architecture:
        """A copy with some timm keyword arguments replaced."""
        return Architecture(
            self.family,
            self.timm_name,
            {**self.timm_kwargs, **changes},
            self.num_classes,
        )


@dataclass(frozen=True)
class Overrides:
    """Changes to the architecture when converting (None = as in the checkpoint).

    Attributes:
        img_size: Input size to use the weights at, an int or (H, W); relative
            position bias tables are resized to the new token grid / windows.
        window_size: Swin / SwinV2 window size; Swin tables are resized, SwinV2 gets
            ``pretrained_window_sizes`` as in the official fine-tuning configs.
        in_chans: Input channels; the patch embedding is adapted with timm's
            ``adapt_input_conv`` and the pretraining head is fresh.
        drop_path_rate: Stochastic depth of the built model.
        split_rel_pos_bias: ViT only: copy the shared relative position bias into
            one table per block, as the official fine-tuning does.
    """

    img_size: int | tuple[int, int] | None = None
    window_size: int | None = None
    in_chans: int | None = None
    drop_path_rate: float | None = None
    split_rel_pos_bias: bool = False

    def __post_init__(self) -> None:
        sides = () if self.img_size is None else self.img_size
        sizes = {
            "img_size": (sides,) if isinstance(sides, int) else tuple(sides),
            "window_size": () if self.window_size is None else (self.window_size,),
            "in_chans": () if self.in_chans is None else (self.in_chans,),
        }
        for name, values in sizes.items():
            if any(not isinstance(v, int) or v <= 0 for v in values):
                raise ValueError(f"{name} must be a positive int, got {values}.")
        rate = self.drop_path_rate
        if rate is not None and not 0.0 <= rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {rate}.")

    def given(self, *names: str) -> dict[str, object]:
        """The timm keyword arguments among ``names`` that are set (not None)."""
        values = {name: getattr(self, name) for name in names}
        return {name: value for name, value in values.items() if value is not None}


@dataclass
class MappedState:
    """Official tensors under timm names, and what became of every other tensor.

    Attributes:
        tensors: timm parameter name -> tensor (the classifier only once kept).
        origin: timm parameter name -> the official name it came from.
        classifier: The classifier's tensors under timm names (fine-tuning).
        mask_token: The pretraining ``mask_token`` (1, 1, D), if stored.
        dropped: Official name -> why it is not carried over.
        notes: What was changed on the way (resized tables, ...).
    """

    tensors: StateDict = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    classifier: StateDict = field(default_factory=dict)
    mask_token: Tensor | None = None
    dropped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def put(self, timm_key: str, value: Tensor, official_key: str) -> None:
        """Records ``value`` under ``timm_key``, coming from ``official_key``."""
        self.tensors[timm_key] = value
        self.origin[timm_key] = official_key


class FamilyConverter(ABC):
    """Detection, size overrides and key mapping for one official model family."""

    family: Family

    @abstractmethod
    def matches(self, state: Mapping[str, Tensor]) -> bool:
        """Whether the backbone tensors (no ``encoder.`` prefix) are this family."""

    @abstractmethod
    def detect(
        self,
        state: Mapping[str, Tensor],
        config: Mapping[str, object] | None,
        img_size: int | tuple[int, int] | None,
    ) -> Architecture:
        """Reads the architecture from tensor names and shapes.

        Args:
            state: Backbone tensors under the official names.
            config: The checkpoint's config, consulted only for what the tensors
                do not tell (e.g. the image size of a model without position
                tables).
            img_size: Image size to assume when neither tensors nor config tell it.

        Raises:
            OfficialCheckpointError: If the tensors do not describe a model timm can
                build, or something needed cannot be told.
        """

    @abstractmethod
    def retarget(self, source: Architecture, overrides: Overrides) -> Architecture:
        """The architecture to build: ``source`` with the size overrides applied."""

    @abstractmethod
    def map_state(self, state: Mapping[str, Tensor], model: nn.Module) -> MappedState:
        """Maps backbone tensors to the names and shapes of the timm ``model``.

        Buffers are dropped, tables resized to the model's windows, the classifier
        and mask token set aside. Nothing is checked against the model here beyond
        what resizing needs; see ``mapping.check_fits``.
        """


def config_value(config: object, *path: str) -> object:
    """``config[path[0]][path[1]]...``, or None where the config has no such entry."""
    node = config
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def indices(state: Mapping[str, Tensor], pattern: str) -> list[int]:
    """The sorted distinct integers captured by ``pattern`` in the keys.

    Raises:
        OfficialCheckpointError: If they are not 0, 1, ..., n - 1.
    """
    found = sorted({int(m[1]) for key in state if (m := re.match(pattern, key))})
    if found != list(range(len(found))):
        raise OfficialCheckpointError(
            f"The checkpoint's indices for {pattern!r} are {found}, not 0..n-1; it "
            f"is not a complete official model."
        )
    return found


def window_from_table_rows(rows: int, extra_tokens: int = 0) -> int:
    """The square window w whose bias table has ``(2 w - 1)^2 + extra`` rows.

    Raises:
        OfficialCheckpointError: If no square window has that many rows.
    """
    offsets = rows - extra_tokens
    side = math.isqrt(max(offsets, 0))
    if offsets < 1 or side * side != offsets or side % 2 == 0:
        raise OfficialCheckpointError(
            f"A relative position bias table with {rows} rows is not made for a "
            f"square window; only square windows / token grids are supported."
        )
    return (side + 1) // 2
