"""Tiny checkpoints in the layout of the official SimMIM code, written out by hand.

Key names, shapes and buffer values follow the official code
(microsoft/SimMIM ``models/vision_transformer.py``, ``models/swin_transformer.py``,
``models/simmim.py``, ``utils.py::save_checkpoint``; microsoft/Swin-Transformer
``models/swin_transformer_v2.py``), not this package's converter: the tests check
the converter against these independent facts. Values are random.

Saving pickles a stand-in ``yacs.config.CfgNode`` (a dict subclass with yacs' four
instance attributes) through a fake ``yacs.config`` module that exists only while
``torch.save`` runs, as it would for a real checkpoint on a machine with yacs.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

StateDict = dict[str, Tensor]


class CfgNode(dict):  # type: ignore[type-arg]
    """Pickles like yacs' CfgNode: dict items plus four instance attributes."""

    def __init__(self, init: dict[str, Any] | None = None) -> None:
        super().__init__(init or {})
        self.__dict__["__immutable__"] = True
        self.__dict__["__deprecated_keys__"] = set()
        self.__dict__["__renamed_keys__"] = {}
        self.__dict__["__new_allowed__"] = False


CfgNode.__module__ = "yacs.config"


@contextmanager
def fake_yacs() -> Iterator[None]:
    """``yacs.config.CfgNode`` importable (for pickling) only inside the block."""
    package, module = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    module.CfgNode = CfgNode  # type: ignore[attr-defined]
    sys.modules["yacs"], sys.modules["yacs.config"] = package, module
    try:
        yield
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]


def config(model_type: str, img_size: int, **model: Any) -> CfgNode:
    """A config node like the official ``config.py`` (only a few entries)."""
    section = {"vit": "VIT", "swin": "SWIN", "swinv2": "SWINV2"}[model_type]
    return CfgNode(
        {
            "DATA": CfgNode({"IMG_SIZE": img_size, "MASK_PATCH_SIZE": 32}),
            "MODEL": CfgNode({"TYPE": model_type, section: CfgNode(model)}),
            "TRAIN": CfgNode({"OPTIMIZER": CfgNode({"BETAS": (0.9, 0.999)})}),
        }
    )


def save_official(path: Path, model: StateDict, cfg: CfgNode | Any) -> Path:
    """``torch.save`` with the entries of the official ``save_checkpoint``."""
    with fake_yacs():
        torch.save(
            {
                "model": model,
                "optimizer": {
                    "state": {},
                    "param_groups": [{"lr": 1e-4, "params": [0]}],
                },
                "lr_scheduler": {"base_values": [1e-4], "t_initial": 100},
                "max_accuracy": 0.0,
                "epoch": 99,
                "config": cfg,
            },
            path,
        )
    return path


def _rand(*shape: int, scale: float = 0.5) -> Tensor:
    return torch.randn(*shape) * scale


def _norm(state: StateDict, key: str, dim: int) -> None:
    state[f"{key}.weight"] = 1.0 + _rand(dim, scale=0.1)
    state[f"{key}.bias"] = _rand(dim, scale=0.1)


def _linear(state: StateDict, key: str, out: int, inp: int, bias: bool = True) -> None:
    state[f"{key}.weight"] = _rand(out, inp, scale=inp**-0.5)
    if bias:
        state[f"{key}.bias"] = _rand(out, scale=0.1)


def relative_position_index(window: int) -> Tensor:
    """The official Swin index: (w^2, w^2) into a ((2w-1)^2, heads) table."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    )
    flat = coords.flatten(1)  # (2, w^2)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


def vit_relative_position_index(grid: int) -> Tensor:
    """The official ViT index with the three class-token rows of the table."""
    distance = (2 * grid - 1) ** 2  # rows before the class-token rows
    index = torch.zeros(grid * grid + 1, grid * grid + 1, dtype=torch.long)
    index[1:, 1:] = relative_position_index(grid)
    index[0, :] = distance  # class to token
    index[:, 0] = distance + 1  # token to class
    index[0, 0] = distance + 2
    return index


def official_vit(
    kind: str,
    *,
    dim: int = 16,
    depth: int = 2,
    heads: int = 2,
    patch: int = 8,
    img: int = 32,
    classes: int = 5,
) -> StateDict:
    """An official SimMIM ViT: ``pretrain`` (shared table) or ``finetune``."""
    grid = img // patch
    rows = (2 * grid - 1) ** 2 + 3
    state: StateDict = {
        "cls_token": _rand(1, 1, dim),
        "patch_embed.proj.weight": _rand(dim, 3, patch, patch, scale=0.1),
        "patch_embed.proj.bias": _rand(dim, scale=0.1),
    }
    if kind == "pretrain":
        state["mask_token"] = _rand(1, 1, dim)
        state["rel_pos_bias.relative_position_bias_table"] = _rand(rows, heads)
        state["rel_pos_bias.relative_position_index"] = vit_relative_position_index(
            grid
        )
    for i in range(depth):
        block = f"blocks.{i}"
        state[f"{block}.gamma_1"] = _rand(dim)
        state[f"{block}.gamma_2"] = _rand(dim)
        _norm(state, f"{block}.norm1", dim)
        _linear(state, f"{block}.attn.qkv", 3 * dim, dim, bias=False)
        state[f"{block}.attn.q_bias"] = _rand(dim, scale=0.1)
        state[f"{block}.attn.v_bias"] = _rand(dim, scale=0.1)
        if kind == "finetune":
            state[f"{block}.attn.relative_position_bias_table"] = _rand(rows, heads)
            state[f"{block}.attn.relative_position_index"] = (
                vit_relative_position_index(grid)
            )
        _linear(state, f"{block}.attn.proj", dim, dim)
        _norm(state, f"{block}.norm2", dim)
        _linear(state, f"{block}.mlp.fc1", 4 * dim, dim)
        _linear(state, f"{block}.mlp.fc2", dim, 4 * dim)
    if kind == "pretrain":
        _norm(state, "norm", dim)  # USE_MEAN_POOLING False: the final norm
        decoder = {
            "0.weight": _rand(patch**2 * 3, dim, 1, 1, scale=dim**-0.5),
            "0.bias": _rand(patch**2 * 3, scale=0.1),
        }
        return {
            **{f"encoder.{k}": v for k, v in state.items()},
            **{f"decoder.{k}": v for k, v in decoder.items()},
        }
    _norm(state, "fc_norm", dim)  # USE_MEAN_POOLING True: norm is an Identity
    _linear(state, "head", classes, dim)
    return state


def shifted_window_mask(res: int, window: int, shift: int) -> Tensor:
    """The official ``attn_mask``: (windows, w^2, w^2), -100 across regions."""
    regions = torch.zeros(res, res)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for number, (rows, cols) in enumerate((r, c) for r in bounds for c in bounds):
        regions[rows, cols] = number
    windows = regions.view(res // window, window, res // window, window)
    windows = windows.permute(0, 2, 1, 3).reshape(-1, window * window)  # (nW, w^2)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


def coords_table(window: int, pretrained: int = 0) -> Tensor:
    """The official V2 ``relative_coords_table``: (1, 2w-1, 2w-1, 2), log-spaced."""
    offsets = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)[None]
    table = table / ((pretrained or window) - 1) * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def official_swin(
    kind: str,
    *,
    v2: bool = False,
    dim: int = 16,
    depths: tuple[int, ...] = (2, 2),
    heads: tuple[int, ...] = (2, 4),
    window: int = 4,
    img: int = 32,
    patch: int = 4,
    classes: int = 5,
    pretrained_windows: tuple[int, ...] | None = None,
) -> StateDict:
    """An official SimMIM Swin (``v2=False``) or SwinV2, pretraining or fine-tuning."""
    state: StateDict = {
        "patch_embed.proj.weight": _rand(dim, 3, patch, patch, scale=0.1),
        "patch_embed.proj.bias": _rand(dim, scale=0.1),
    }
    _norm(state, "patch_embed.norm", dim)
    if kind == "pretrain":
        state["mask_token"] = _rand(1, 1, dim)
    res = img // patch
    for i, (depth, head) in enumerate(zip(depths, heads, strict=True)):
        width = dim * 2**i
        win = min(window, res)  # a map not larger than the window is one window
        for j in range(depth):
            block = f"layers.{i}.blocks.{j}"
            _norm(state, f"{block}.norm1", width)
            state[f"{block}.attn.relative_position_index"] = relative_position_index(
                win
            )
            if v2:
                state[f"{block}.attn.logit_scale"] = math.log(10) + _rand(
                    head, 1, 1, scale=0.3
                )
                _linear(state, f"{block}.attn.cpb_mlp.0", 512, 2)
                _linear(state, f"{block}.attn.cpb_mlp.2", head, 512, bias=False)
                pretrained = pretrained_windows[i] if pretrained_windows else 0
                state[f"{block}.attn.relative_coords_table"] = coords_table(
                    win, pretrained
                )
                _linear(state, f"{block}.attn.qkv", 3 * width, width, bias=False)
                state[f"{block}.attn.q_bias"] = _rand(width, scale=0.1)
                state[f"{block}.attn.v_bias"] = _rand(width, scale=0.1)
            else:
                state[f"{block}.attn.relative_position_bias_table"] = _rand(
                    (2 * win - 1) ** 2, head
                )
                _linear(state, f"{block}.attn.qkv", 3 * width, width)
            _linear(state, f"{block}.attn.proj", width, width)
            _norm(state, f"{block}.norm2", width)
            _linear(state, f"{block}.mlp.fc1", 4 * width, width)
            _linear(state, f"{block}.mlp.fc2", width, 4 * width)
            if j % 2 == 1 and res > window:  # shifted blocks store their mask
                state[f"{block}.attn_mask"] = shifted_window_mask(res, win, window // 2)
        if i < len(depths) - 1:  # merging at the end of the stage
            _linear(
                state,
                f"layers.{i}.downsample.reduction",
                2 * width,
                4 * width,
                bias=False,
            )
            _norm(state, f"layers.{i}.downsample.norm", 2 * width if v2 else 4 * width)
            res //= 2
    final = dim * 2 ** (len(depths) - 1)
    _norm(state, "norm", final)
    if kind == "finetune":
        _linear(state, "head", classes, final)
        return state
    stride = patch * 2 ** (len(depths) - 1)
    decoder = {
        "0.weight": _rand(stride**2 * 3, final, 1, 1, scale=final**-0.5),
        "0.bias": _rand(stride**2 * 3, scale=0.1),
    }
    return {
        **{f"encoder.{k}": v for k, v in state.items()},
        **{f"decoder.{k}": v for k, v in decoder.items()},
    }
