"""The official SimMIM ViT as timm ``Beit``.

The paper's ViT (``models/vision_transformer.py`` of microsoft/SimMIM) is BEiT-style
and uses timm's ``Beit`` names for every parameter: ``q_bias`` / ``v_bias`` beside a
bias-free ``qkv``, layer scale ``gamma_1`` / ``gamma_2``, and either one shared
``rel_pos_bias.relative_position_bias_table`` (pretraining) or one
``blocks.<i>.attn.relative_position_bias_table`` per block (fine-tuning), each with
three extra rows for the class token. A pretraining checkpoint ends with the final
``norm``; a fine-tuning one pools with ``fc_norm`` and has a ``head``. So the mapping
is the identity, minus the ``relative_position_index`` buffers, with tables resized
when the token grid changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from timm.layers import PatchEmbed, resample_abs_pos_embed
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

__all__ = ["ViTConverter"]

_SHARED_TABLE = "rel_pos_bias.relative_position_bias_table"
_BLOCK_TABLE = "blocks.{}.attn.relative_position_bias_table"
# Class-to-token, token-to-class and class-to-class rows after the offsets.
_CLASS_ROWS = 3


def _token_grid(
    state: Mapping[str, Tensor], config: Mapping[str, object] | None, patch: int
) -> int | None:
    """The side of the (square) token grid, from the tables or the config."""
    table = state.get(_SHARED_TABLE, state.get(_BLOCK_TABLE.format(0)))
    if table is not None:
        return window_from_table_rows(table.shape[0], _CLASS_ROWS)
    pos_embed = state.get("pos_embed")  # (1, 1 + N, D)
    if pos_embed is not None:
        side = math.isqrt(pos_embed.shape[1] - 1)
        if side * side == pos_embed.shape[1] - 1:
            return side
    size = config_value(config, "DATA", "IMG_SIZE")
    return int(size) // patch if isinstance(size, int) else None


def _num_heads(state: Mapping[str, Tensor], config: Mapping[str, object] | None) -> int:
    table = state.get(_SHARED_TABLE, state.get(_BLOCK_TABLE.format(0)))
    if table is not None:
        return int(table.shape[1])
    heads = config_value(config, "MODEL", "VIT", "NUM_HEADS")
    if isinstance(heads, int):
        return heads
    raise OfficialCheckpointError(
        "The ViT has no relative position table and no config to tell its number "
        "of attention heads from."
    )


class ViTConverter(FamilyConverter):
    """Official SimMIM ViT <-> timm ``Beit``."""

    family = "vit"

    def matches(self, state: Mapping[str, Tensor]) -> bool:
        """A class token and ``blocks.<i>.attn.qkv`` weights."""
        return "cls_token" in state and "blocks.0.attn.qkv.weight" in state

    def detect(
        self,
        state: Mapping[str, Tensor],
        config: Mapping[str, object] | None,
        img_size: int | tuple[int, int] | None,
    ) -> Architecture:
        """The timm ``Beit`` arguments of the checkpoint's ViT (see the base class)."""
        embed_dim, in_chans, patch, patch_w = state["patch_embed.proj.weight"].shape
        if patch != patch_w:
            raise OfficialCheckpointError(
                f"Only square patches are supported, got {patch}x{patch_w}."
            )
        grid = _token_grid(state, config, patch)
        if grid is None:
            if img_size is None:
                raise OfficialCheckpointError(
                    "Neither the tensors nor the config tell the ViT's image size; "
                    "pass img_size."
                )
            grid = (img_size if isinstance(img_size, int) else img_size[0]) // patch
        depth = len(indices(state, r"^blocks\.(\d+)\."))
        hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
        init_values = config_value(config, "MODEL", "VIT", "INIT_VALUES")
        kwargs = {
            "img_size": grid * patch,
            "patch_size": patch,
            "in_chans": in_chans,
            "embed_dim": embed_dim,
            "depth": depth,
            "num_heads": _num_heads(state, config),
            "mlp_ratio": hidden / embed_dim,
            "qkv_bias": "blocks.0.attn.q_bias" in state,
            # Layer scale exists iff gamma_1 does; its init value is overwritten.
            "init_values": (init_values or 0.1)
            if "blocks.0.gamma_1" in state
            else None,
            "use_abs_pos_emb": "pos_embed" in state,
            "use_rel_pos_bias": _BLOCK_TABLE.format(0) in state,
            "use_shared_rel_pos_bias": _SHARED_TABLE in state,
            # Mean pooling (fine-tuning) normalises the pooled vector in fc_norm; the
            # pretraining model normalises every token in norm.
            "use_fc_norm": "fc_norm.weight" in state,
        }
        head = state.get("head.weight")
        size = (embed_dim, depth, kwargs["num_heads"])
        name = (
            "beit_large_patch16_224"
            if size == (1024, 24, 16)
            else "beit_base_patch16_224"
        )
        num_classes = int(head.shape[0]) if head is not None else 0
        return Architecture("vit", name, kwargs, num_classes)

    def retarget(self, source: Architecture, overrides: Overrides) -> Architecture:
        """``source`` at another image size / channel count, tables maybe split."""
        if overrides.window_size is not None:
            raise OfficialCheckpointError(
                "window_size applies to Swin checkpoints; a ViT's relative position "
                "tables follow img_size."
            )
        changes = overrides.given("img_size", "in_chans")
        if (
            overrides.split_rel_pos_bias
            and source.timm_kwargs["use_shared_rel_pos_bias"]
        ):
            changes.update(use_rel_pos_bias=True, use_shared_rel_pos_bias=False)
        return source.with_kwargs(**changes)

    def map_state(self, state: Mapping[str, Tensor], model: nn.Module) -> MappedState:
        """Identity names; tables copied per block if asked and resized to the grid."""
        mapped = MappedState()
        blocks = model.blocks
        assert isinstance(blocks, nn.ModuleList)  # timm Beit's
        split = _SHARED_TABLE in state and _SHARED_TABLE not in model.state_dict()
        for key, value in state.items():
            if key.endswith("relative_position_index"):
                mapped.dropped[key] = BUFFER
            elif key == "mask_token":
                mapped.mask_token = value
            elif key in ("head.weight", "head.bias"):
                mapped.classifier[key] = value
            elif key == _SHARED_TABLE and split:
                for index in range(len(blocks)):
                    mapped.put(_BLOCK_TABLE.format(index), value, key)
                mapped.notes.append(
                    f"the shared relative position bias is copied into each of the "
                    f"{len(blocks)} blocks"
                )
            else:
                mapped.put(key, value, key)
        _fit_token_grid(mapped, model)
        return mapped


def _fit_token_grid(mapped: MappedState, model: nn.Module) -> None:
    """Resizes position tables (and an absolute embedding) to the model's grid."""
    embed = model.patch_embed
    assert isinstance(embed, PatchEmbed)  # timm Beit's
    grid = (int(embed.grid_size[0]), int(embed.grid_size[1]))  # target (h, w)
    expected = model.state_dict()
    resized: list[int] = []  # source grid side of every resized table
    for key, value in list(mapped.tensors.items()):
        target = expected.get(key)
        if target is None or target.shape == value.shape:
            continue  # a mismatch other than the grid is check_fits' to report
        if key.endswith("relative_position_bias_table"):
            src = window_from_table_rows(value.shape[0], _CLASS_ROWS)
            mapped.tensors[key] = resize_bias_table(
                value, (src, src), grid, _CLASS_ROWS
            )
            resized.append(src)
        elif key == "pos_embed":
            mapped.tensors[key] = resample_abs_pos_embed(
                value, new_size=list(grid), num_prefix_tokens=1
            )
            mapped.notes.append(f"pos_embed resampled bicubically to {grid} tokens")
    if resized:
        mapped.notes.append(
            f"{len(resized)} relative position bias tables resized bicubically from "
            f"a {resized[0]}x{resized[0]} to a {grid[0]}x{grid[1]} token grid"
        )
