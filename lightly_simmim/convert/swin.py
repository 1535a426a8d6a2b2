"""The official Swin / SwinV2 as timm ``SwinTransformer`` / ``SwinTransformerV2``.

Facts of the official models (``models/swin_transformer.py`` of microsoft/SimMIM,
``models/swin_transformer_v2.py`` of microsoft/Swin-Transformer) that the mapping
follows:

- Each stage's patch merging sits at the *end* of the stage there
  (``layers.<i>.downsample``, i < last) and at the *start* of the next one in timm
  (``layers.<i + 1>.downsample``). Both concatenate the 2x2 neighbours in the same
  order, so the weights carry over unchanged.
- The classifier is ``head`` there and ``head.fc`` in timm.
- ``relative_position_index``, ``attn_mask`` and (V2) ``relative_coords_table`` are
  stored buffers there and computed by timm; they are dropped, after reading the
  window size, image size and (V2) pretraining window size from their shapes and
  values. Old V2 checkpoints name ``cpb_mlp`` ``rpe_mlp``.
- A stage whose feature map is not larger than the window uses one window of the
  map's size and no shift, in both codes; its tables are sized for that window.
- V1 tables are resized bicubically to another window (see ``interpolate``); V2 has
  no table (the bias comes from the ``cpb_mlp`` of log-spaced coordinates), and is
  given ``pretrained_window_sizes`` instead, as the official fine-tuning configs do.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping

from timm.models.swin_transformer import WindowAttention
from timm.models.swin_transformer_v2 import WindowAttention as WindowAttentionV2
from torch import Tensor, nn

from lightly_simmim.convert.architecture import (
    BUFFER,
    Architecture,
    FamilyConverter,
    MappedState,
    Overrides,
    config_value,
    indices,
    window_from_table_rows,
)
from lightly_simmim.convert.errors import OfficialCheckpointError
from lightly_simmim.convert.interpolate import resize_bias_table

__all__ = ["SwinConverter", "stage_windows"]

_BUFFERS = ("relative_position_index", "attn_mask", "relative_coords_table")
# timm names of the registered models, by (embed_dim, depths), for readability; the
# keyword arguments always spell out the whole architecture.
_SIZES: dict[tuple[int, tuple[int, ...]], str] = {
    (96, (2, 2, 6, 2)): "tiny",
    (96, (2, 2, 18, 2)): "small",
    (128, (2, 2, 18, 2)): "base",
    (192, (2, 2, 18, 2)): "large",
}


def stage_windows(img_size: int, patch: int, stages: int, window: int) -> list[int]:
    """The window each stage really uses: the window, or its map if not larger."""
    return [min(window, img_size // patch // 2**stage) for stage in range(stages)]


def _stage_window(state: Mapping[str, Tensor], stage: int) -> int | None:
    """A stage's (square) window, from whichever of its tensors tells it."""
    prefix = f"layers.{stage}.blocks.0."
    table = state.get(prefix + "attn.relative_position_bias_table")
    if table is not None:  # V1: ((2 w - 1)^2, heads)
        return window_from_table_rows(table.shape[0])
    coords = state.get(prefix + "attn.relative_coords_table")
    if coords is not None:  # V2: (1, 2 w - 1, 2 w - 1, 2)
        return (int(coords.shape[1]) + 1) // 2
    index = state.get(prefix + "attn.relative_position_index")
    if index is not None:  # (w^2, w^2)
        return math.isqrt(int(index.shape[0]))
    return None


def _map_side(
    state: Mapping[str, Tensor], windows: list[int], nominal: int
) -> int | None:
    """The patch grid side of stage 0, from attention masks or clamped windows."""
    for stage, window in enumerate(windows):
        for key, value in state.items():
            if re.match(rf"^layers\.{stage}\.blocks\.\d+\.attn_mask$", key):
                # (windows, w^2, w^2): a square map of sqrt(windows) windows a side.
                return int(math.isqrt(int(value.shape[0])) * window * 2**stage)
        if window < nominal:  # clamped: the map is exactly one window
            return int(window * 2**stage)
    return None


def _timm_name(v2: bool, embed_dim: int, depths: tuple[int, ...]) -> str:
    """A registered timm name of the closest size (the kwargs say the rest)."""
    size = _SIZES.get((embed_dim, depths), "base")
    if not v2:
        return f"swin_{size}_patch4_window7_224"
    return (
        "swinv2_large_window12_192" if size == "large" else f"swinv2_{size}_window8_256"
    )


def _pretrained_window(coords: Tensor | None, window: int) -> int:
    """The V2 ``pretrained_window_size`` encoded in a stored coordinates table.

    The table holds ``sign(d) log2(8 |d| / (p - 1) + 1) / 3`` for the offsets d of
    the window, with p the pretraining window (the window itself when 0); the
    largest offset ``w - 1`` gives p back. Returns 0 when p is the window itself.
    """
    if coords is None or window < 2:
        return 0
    largest = float(coords[0, -1, -1, 0])  # offset w - 1
    scale = 8 * (window - 1) / (2 ** (3 * largest) - 1)  # = p - 1
    pretrained = round(scale) + 1
    if abs(scale + 1 - pretrained) > 1e-3:
        raise OfficialCheckpointError(
            f"A relative_coords_table for window {window} does not encode a whole "
            f"pretrained window size (got {scale + 1:.4f})."
        )
    return 0 if pretrained == window else pretrained


class SwinConverter(FamilyConverter):
    """Official Swin (``v2=False``) or SwinV2 (``v2=True``) <-> timm.

    Args:
        v2: Convert the SwinV2 family.
    """

    def __init__(self, v2: bool) -> None:
        self.v2 = v2
        self.family = "swinv2" if v2 else "swin"

    def matches(self, state: Mapping[str, Tensor]) -> bool:
        """Stage blocks, with (V2) or without (V1) a ``logit_scale``."""
        if "layers.0.blocks.0.attn.qkv.weight" not in state:
            return False
        return ("layers.0.blocks.0.attn.logit_scale" in state) == self.v2

    def detect(
        self,
        state: Mapping[str, Tensor],
        config: Mapping[str, object] | None,
        img_size: int | tuple[int, int] | None,
    ) -> Architecture:
        """The timm Swin arguments of the checkpoint's model (see the base class)."""
        if "absolute_pos_embed" in state or "patch_embed.norm.weight" not in state:
            raise OfficialCheckpointError(
                "Official Swin models with an absolute position embedding (APE) or "
                "without patch norm have no timm counterpart."
            )
        embed_dim, in_chans, patch, _ = state["patch_embed.proj.weight"].shape
        stages = indices(state, r"^layers\.(\d+)\.")
        depths = tuple(
            len(indices(state, rf"^layers\.{stage}\.blocks\.(\d+)\."))
            for stage in stages
        )
        # Heads: V1 tables are (offsets, heads), V2 logit scales (heads, 1, 1). The
        # qkv bias: one tensor in V1, q_bias / v_bias (no k bias) in V2.
        if self.v2:
            heads_key, heads_dim, bias_key = "attn.logit_scale", 0, "attn.q_bias"
        else:
            heads_key, heads_dim = "attn.relative_position_bias_table", 1
            bias_key = "attn.qkv.bias"
        num_heads = tuple(
            int(state[f"layers.{stage}.blocks.0.{heads_key}"].shape[heads_dim])
            for stage in stages
        )
        windows = self._windows(state, len(stages))
        section = "SWINV2" if self.v2 else "SWIN"
        configured = config_value(config, "MODEL", section, "WINDOW_SIZE")
        # Stage 0 shows the window unless its map is smaller (then the config may).
        nominal = max(windows[0], configured if isinstance(configured, int) else 0)
        kwargs: dict[str, object] = {
            "img_size": self._image_side(state, config, img_size, windows, nominal)
            * patch,
            "patch_size": patch,
            "in_chans": in_chans,
            "embed_dim": embed_dim,
            "depths": depths,
            "num_heads": num_heads,
            "window_size": nominal,
            "mlp_ratio": state["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
            "qkv_bias": f"layers.0.blocks.0.{bias_key}" in state,
        }
        pretrained = [
            _pretrained_window(
                state.get(f"layers.{stage}.blocks.0.attn.relative_coords_table"),
                windows[stage],
            )
            for stage in stages
        ]
        if any(pretrained):  # V2 only: V1 has no coordinates table
            kwargs["pretrained_window_sizes"] = tuple(pretrained)
        head = state.get("head.weight")
        num_classes = int(head.shape[0]) if head is not None else 0
        name = _timm_name(self.v2, embed_dim, depths)
        return Architecture(self.family, name, kwargs, num_classes)

    def _windows(self, state: Mapping[str, Tensor], stages: int) -> list[int]:
        """The window each stage uses, from its tensors."""
        windows = [_stage_window(state, stage) for stage in range(stages)]
        if all(window is not None for window in windows):
            return [int(window) for window in windows if window is not None]
        raise OfficialCheckpointError(
            f"Stage {windows.index(None)} of the {self.family} has no relative "
            f"position table or index to tell its window size from."
        )

    def _image_side(
        self,
        state: Mapping[str, Tensor],
        config: Mapping[str, object] | None,
        img_size: int | tuple[int, int] | None,
        windows: list[int],
        nominal: int,
    ) -> int:
        """Patches per side of the input: from buffers, the config, or the caller."""
        side = _map_side(state, windows, nominal)
        configured = config_value(config, "DATA", "IMG_SIZE")
        patch = int(state["patch_embed.proj.weight"].shape[-1])
        if side is None and isinstance(configured, int):
            side = configured // patch
        elif side is None and img_size is not None:
            side = (img_size if isinstance(img_size, int) else img_size[0]) // patch
        elif side is None:
            raise OfficialCheckpointError(
                f"Neither the tensors nor the config tell the {self.family}'s image "
                f"size; pass img_size."
            )
        return side

    def retarget(self, source: Architecture, overrides: Overrides) -> Architecture:
        """``source`` at another image / window size or channel count."""
        if overrides.split_rel_pos_bias:
            raise OfficialCheckpointError(
                "split_rel_pos_bias applies to ViT checkpoints; Swin has one table "
                "per block already."
            )
        target = source.with_kwargs(
            **overrides.given("img_size", "window_size", "in_chans")
        )
        if not self.v2:
            return target
        kwargs = source.timm_kwargs
        stages = len(kwargs["depths"])
        before = stage_windows(
            source.img_size[0], source.patch_size, stages, kwargs["window_size"]
        )
        after = stage_windows(
            min(target.img_size),
            target.patch_size,
            stages,
            target.timm_kwargs["window_size"],
        )
        if before == after:
            return target
        # The bias MLP saw coordinates normalised by the pretraining windows: keep
        # that normalisation, as the official fine-tuning configs do (0 = the
        # stage's own window, which is now another).
        stored = kwargs.get("pretrained_window_sizes") or (0,) * stages
        pretrained = tuple(
            old or window for old, window in zip(stored, before, strict=True)
        )
        return target.with_kwargs(pretrained_window_sizes=pretrained)

    def map_state(self, state: Mapping[str, Tensor], model: nn.Module) -> MappedState:
        """Timm names (merging moved a stage on), buffers dropped, tables resized."""
        mapped = MappedState()
        for key, value in state.items():
            if key.rsplit(".", 1)[-1] in _BUFFERS:
                mapped.dropped[key] = BUFFER
            elif key == "mask_token":
                mapped.mask_token = value
            elif key in ("head.weight", "head.bias"):
                mapped.classifier[key.replace("head.", "head.fc.")] = value
            else:
                timm_key = re.sub(
                    r"^layers\.(\d+)\.downsample\.",
                    lambda match: f"layers.{int(match[1]) + 1}.downsample.",
                    key,
                ).replace(".rpe_mlp.", ".cpb_mlp.")
                mapped.put(timm_key, value, key)
        expected = model.state_dict()
        resized: Counter[tuple[int, tuple[int, int]]] = Counter()
        for key, value in list(mapped.tensors.items()):
            target = expected.get(key)
            if (
                target is None
                or target.shape == value.shape
                or not key.endswith("relative_position_bias_table")
            ):
                continue
            attention = model.get_submodule(key.rsplit(".", 1)[0])
            assert isinstance(attention, (WindowAttention, WindowAttentionV2))
            src = window_from_table_rows(value.shape[0])
            dst = (int(attention.window_size[0]), int(attention.window_size[1]))
            mapped.tensors[key] = resize_bias_table(value, (src, src), dst)
            resized[src, dst] += 1
        for (src, dst), count in sorted(resized.items()):
            mapped.notes.append(
                f"{count} relative position bias tables resized bicubically from "
                f"window {src}x{src} to {dst[0]}x{dst[1]}"
            )
        return mapped
