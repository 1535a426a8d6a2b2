"""The official SimMIM forward, restated with plain torch ops on official weights.

Written from the official code's facts (microsoft/SimMIM ``models/simmim.py``,
``models/vision_transformer.py``, ``models/swin_transformer.py``), reading the
official state dict directly, stored buffers (``relative_position_index``,
``attn_mask``) included, so that it shares nothing with timm or this package.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

StateDict = dict[str, Tensor]


def _layer_norm(x: Tensor, sd: StateDict, key: str, eps: float) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{key}.weight"], sd[f"{key}.bias"], eps)


def _linear(x: Tensor, sd: StateDict, key: str) -> Tensor:
    return F.linear(x, sd[f"{key}.weight"], sd.get(f"{key}.bias"))


def _mlp(x: Tensor, sd: StateDict, key: str) -> Tensor:
    return _linear(F.gelu(_linear(x, sd, f"{key}.fc1")), sd, f"{key}.fc2")


def _attention(
    x: Tensor,
    qkv_bias: Tensor | None,
    sd: StateDict,
    key: str,
    heads: int,
    bias: Tensor,
    mask: Tensor | None = None,
) -> Tensor:
    """Multi-head attention over (B_, N, C) with an additive (heads, N, N) bias."""
    batch, tokens, channels = x.shape
    qkv = F.linear(x, sd[f"{key}.qkv.weight"], qkv_bias)  # (B_, N, 3C)
    qkv = qkv.reshape(batch, tokens, 3, heads, -1).permute(
        2, 0, 3, 1, 4
    )  # (3, B_, h, N, d)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q * (channels // heads) ** -0.5) @ k.transpose(-2, -1) + bias[None]
    if mask is not None:  # (nW, N, N), windows of one image consecutive in B_
        windows = mask.shape[0]
        attn = attn.view(-1, windows, heads, tokens, tokens) + mask[None, :, None]
        attn = attn.view(-1, heads, tokens, tokens)
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(batch, tokens, channels)
    return _linear(out, sd, f"{key}.proj")


def _decode_and_loss(
    sd: StateDict,
    features: Tensor,
    images: Tensor,
    mask: Tensor,
    patch: int,
    stride: int,
) -> tuple[Tensor, Tensor]:
    """``decoder`` (1x1 conv + PixelShuffle) and the masked L1 loss of SimMIM."""
    rec = F.pixel_shuffle(
        F.conv2d(features, sd["decoder.0.weight"], sd["decoder.0.bias"]), stride
    )
    pixels = mask.repeat_interleave(patch, 1).repeat_interleave(patch, 2).unsqueeze(1)
    pixels = pixels.float()
    loss = (F.l1_loss(images, rec, reduction="none") * pixels).sum()
    return rec, loss / (pixels.sum() + 1e-5) / images.shape[1]


def _embed_patches(
    sd: StateDict, images: Tensor, patch: int
) -> tuple[StateDict, Tensor]:
    """The encoder's tensors (no ``encoder.`` prefix) and its patch tokens (B, L, C)."""
    enc = {
        k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")
    }
    x = F.conv2d(
        images,
        enc["patch_embed.proj.weight"],
        enc["patch_embed.proj.bias"],
        stride=patch,
    )
    return enc, x.flatten(2).transpose(1, 2)


def vit_forward(
    sd: StateDict, images: Tensor, mask: Tensor, *, patch: int, heads: int, depth: int
) -> tuple[Tensor, Tensor, Tensor]:
    """VisionTransformerForSimMIM + SimMIM, pretraining layout (shared bias).

    Returns:
        (features (B, C, h, w), reconstruction, loss).
    """
    enc, x = _embed_patches(sd, images, patch)
    w = mask.flatten(1).unsqueeze(-1).float()
    x = x * (1 - w) + enc["mask_token"] * w
    x = torch.cat([enc["cls_token"].expand(x.shape[0], -1, -1), x], dim=1)
    tokens = x.shape[1]
    table = enc["rel_pos_bias.relative_position_bias_table"]
    index = enc["rel_pos_bias.relative_position_index"]
    bias = table[index.view(-1)].view(tokens, tokens, -1).permute(2, 0, 1)  # (h, N, N)
    for i in range(depth):
        key = f"blocks.{i}"
        qkv_bias = torch.cat(
            [
                enc[f"{key}.attn.q_bias"],
                torch.zeros_like(enc[f"{key}.attn.v_bias"]),
                enc[f"{key}.attn.v_bias"],
            ]
        )
        h = _attention(
            _layer_norm(x, enc, f"{key}.norm1", 1e-6),
            qkv_bias,
            enc,
            f"{key}.attn",
            heads,
            bias,
        )
        x = x + enc[f"{key}.gamma_1"] * h
        x = x + enc[f"{key}.gamma_2"] * _mlp(
            _layer_norm(x, enc, f"{key}.norm2", 1e-6), enc, f"{key}.mlp"
        )
    x = _layer_norm(x, enc, "norm", 1e-6)[:, 1:]  # drop the class token
    side = int((x.shape[1]) ** 0.5)
    features = x.permute(0, 2, 1).reshape(x.shape[0], -1, side, side)
    return (features, *_decode_and_loss(sd, features, images, mask, patch, patch))


def _swin_block(
    x: Tensor, enc: StateDict, key: str, res: int, window: int, shift: int, heads: int
) -> Tensor:
    """One official SwinTransformerBlock on (B, res * res, C)."""
    batch, _, channels = x.shape
    shortcut = x
    x = _layer_norm(x, enc, f"{key}.norm1", 1e-5).view(batch, res, res, channels)
    if shift:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    n = res // window
    windows = x.view(batch, n, window, n, window, channels).permute(0, 1, 3, 2, 4, 5)
    windows = windows.reshape(-1, window * window, channels)  # (B * nW, w^2, C)
    table = enc[f"{key}.attn.relative_position_bias_table"]
    index = enc[f"{key}.attn.relative_position_index"]
    bias = table[index.view(-1)].view(window**2, window**2, -1).permute(2, 0, 1)
    out = _attention(
        windows,
        enc.get(f"{key}.attn.qkv.bias"),
        enc,
        f"{key}.attn",
        heads,
        bias,
        enc.get(f"{key}.attn_mask"),
    )
    out = out.view(batch, n, n, window, window, channels).permute(0, 1, 3, 2, 4, 5)
    out = out.reshape(batch, res, res, channels)
    if shift:
        out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
    x = shortcut + out.reshape(batch, res * res, channels)
    return x + _mlp(_layer_norm(x, enc, f"{key}.norm2", 1e-5), enc, f"{key}.mlp")


def _merge(x: Tensor, enc: StateDict, key: str, res: int) -> Tensor:
    """Official PatchMerging at the end of a stage: 2x2 neighbours, norm, reduce."""
    batch, _, channels = x.shape
    x = x.view(batch, res, res, channels)
    x = torch.cat(
        [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1
    )
    x = x.view(batch, -1, 4 * channels)
    return F.linear(
        _layer_norm(x, enc, f"{key}.norm", 1e-5), enc[f"{key}.reduction.weight"]
    )


def swin_forward(
    sd: StateDict,
    images: Tensor,
    mask: Tensor,
    *,
    patch: int,
    window: int,
    depths: tuple[int, ...],
    heads: tuple[int, ...],
) -> tuple[Tensor, Tensor, Tensor]:
    """SwinTransformerForSimMIM + SimMIM (Swin V1).

    Returns:
        (features (B, C, h, w), reconstruction, loss).
    """
    enc, x = _embed_patches(sd, images, patch)
    x = _layer_norm(x, enc, "patch_embed.norm", 1e-5)
    w = mask.flatten(1).unsqueeze(-1).float()
    x = x * (1 - w) + enc["mask_token"] * w
    res = images.shape[-1] // patch
    for i, depth in enumerate(depths):
        # A map not larger than the window: one window, no shift.
        win = min(window, res)
        shift = window // 2 if res > window else 0
        for j in range(depth):
            x = _swin_block(
                x,
                enc,
                f"layers.{i}.blocks.{j}",
                res,
                win,
                shift if j % 2 else 0,
                heads[i],
            )
        if i < len(depths) - 1:
            x = _merge(x, enc, f"layers.{i}.downsample", res)
            res //= 2
    x = _layer_norm(x, enc, "norm", 1e-5)
    features = x.transpose(1, 2).reshape(x.shape[0], -1, res, res)
    stride = patch * 2 ** (len(depths) - 1)
    return (features, *_decode_and_loss(sd, features, images, mask, patch, stride))
