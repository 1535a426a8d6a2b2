"""The ``hf`` row: Hugging Face's ``ViTForMaskedImageModeling`` on the identical ViT.

What a user would pick instead of this package: ``transformers``' SimMIM model,
built with the same width, depth, heads, MLP width, patch size, image size, channels,
qkv bias and LayerNorm eps (1e-6, timm's) as the timm ViT of the target, the
decoder's ``encoder_stride`` equal to the patch size (SimMIM's 1x1 convolution and
pixel shuffle, as here), dropout off. It gets ``bool_masked_pos`` from the same
:class:`~lightly_simmim.SimMIMMaskGenerator` drawn on the device every step, computes
its own loss (SimMIM's masked L1, the same formula) and trains with
``torch.optim.AdamW`` at its defaults, without clipping: what an HF user gets.
Attention is HF's default implementation (``sdpa`` from transformers 4.41, like
timm's fused attention).

``transformers`` is optional (``pip install "lightly-simmim[bench]"``) and imported
only here, when the row is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import torch
from timm.layers import DropPath, Mlp
from timm.models.vision_transformer import Attention, Block, VisionTransformer
from torch import Tensor, nn

from lightly_simmim.config import Config
from lightly_simmim.encoders import TimmKwargs, create_timm_model
from lightly_simmim.encoders.base import square_size
from lightly_simmim.masking import SimMIMMaskGenerator
from lightly_simmim.throughput.precision import StepPrecision
from lightly_simmim.throughput.rows import (
    TrainStep,
    make_forward_backward,
    make_step,
    parameter_count,
)

__all__ = [
    "INSTALL_HINT",
    "ViTShape",
    "build_hf_model",
    "hf_step",
    "import_transformers",
    "vit_shape",
]

#: How to get the optional dependency of the ``hf`` row.
INSTALL_HINT = 'pip install "lightly-simmim[bench]"'


def import_transformers() -> ModuleType:
    """``transformers``, imported on first use.

    Raises:
        ImportError: It is not installed (the message says how to install it).
    """
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise ImportError(
            f"the hf row needs Hugging Face transformers: {INSTALL_HINT}"
        ) from None


@dataclass(frozen=True)
class ViTShape:
    """The architecture of a plain timm ViT, as HF's ``ViTConfig`` describes one.

    Attributes:
        hidden_size: Token width.
        layers: Transformer blocks.
        heads: Attention heads per block.
        intermediate_size: Hidden width of the MLPs.
        image_size: Side of the (square) images.
        patch_size: Side of the (square) patches.
        channels: Input channels.
        qkv_bias: Whether the query / key / value projections have biases.
        layer_norm_eps: Epsilon of every LayerNorm.
        norms_tokens: Whether the final LayerNorm normalises every token (timm's
            ``norm``) rather than the pooled features only (``fc_norm``, with
            ``global_pool="avg"``); HF's always normalises every token.
    """

    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int
    image_size: int
    patch_size: int
    channels: int
    qkv_bias: bool
    layer_norm_eps: float
    norms_tokens: bool


@dataclass(frozen=True)
class _BlockGeometry:
    heads: int
    intermediate_size: int
    qkv_bias: bool
    layer_norm_eps: float


def _block_geometry(block: nn.Module) -> _BlockGeometry | str:
    """A block's sizes in HF's terms, or why HF's ``ViTLayer`` cannot mirror it."""
    if type(block) is not Block:
        return f"its blocks are {type(block).__name__}, not timm's plain Block"
    attn, mlp = block.attn, block.mlp
    if type(attn) is not Attention or not isinstance(mlp, Mlp):
        return "its attention or MLP is not timm's plain one"
    extras = (block.ls1, block.ls2, attn.q_norm, attn.k_norm, attn.norm, mlp.norm)
    if not all(isinstance(layer, nn.Identity) for layer in extras):
        return "it has layer scale or extra norms (HF's ViT has none)"
    act, fc1, fc2 = mlp.act, mlp.fc1, mlp.fc2
    if type(act) is not nn.GELU or act.approximate != "none":
        return "its MLP activation is not the exact GELU (HF's is)"
    if not (isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear)):
        return "its MLP is not made of Linear layers"
    if attn.proj.bias is None or fc1.bias is None or fc2.bias is None:
        return "some of its projections have no bias (HF's always have one)"
    norm1, norm2 = block.norm1, block.norm2
    if not (isinstance(norm1, nn.LayerNorm) and isinstance(norm2, nn.LayerNorm)):
        return "its norms are not LayerNorm"
    if norm1.eps != norm2.eps:
        return "its LayerNorms differ in eps"
    return _BlockGeometry(
        heads=int(attn.num_heads),
        intermediate_size=fc1.out_features,
        qkv_bias=attn.qkv.bias is not None,
        layer_norm_eps=float(norm1.eps),
    )


def _vit_difference(vit: VisionTransformer) -> str | None:
    """Why HF's ``ViTModel`` cannot mirror ``vit``, or None if it can."""
    if vit.cls_token is None or vit.num_prefix_tokens != 1:
        return "HF's ViT has exactly one class token and no register tokens"
    if vit.pos_embed is None or vit.no_embed_class:
        return "HF's ViT adds one learned position embedding to all tokens"
    if getattr(vit, "attn_pool", None) is not None:
        return "attention pooling (global_pool='map') has no HF counterpart"
    if vit.patch_embed.proj.bias is None or not (
        isinstance(vit.patch_embed.norm, nn.Identity)
        and isinstance(vit.norm_pre, nn.Identity)
    ):
        return "its patch embedding has a norm or no bias (HF's has a bias only)"
    for module in vit.modules():
        if isinstance(module, DropPath) or (
            isinstance(module, nn.Dropout) and module.p > 0
        ):
            return "it drops paths or activations; set the drop rates to 0"
    geometries = [_block_geometry(block) for block in vit.blocks]
    reasons = [geometry for geometry in geometries if isinstance(geometry, str)]
    if reasons:
        return reasons[0]
    if len(set(geometries)) > 1:
        return "its blocks differ from each other (HF's are all alike)"
    return None


def vit_shape(vit: nn.Module) -> ViTShape:
    """The architecture of ``vit`` in HF's terms.

    Args:
        vit: A timm model.

    Returns:
        Its shape.

    Raises:
        ValueError: HF's ``ViTModel`` cannot express this model (the message says
            what differs).
    """
    if not isinstance(vit, VisionTransformer):
        raise ValueError(
            f"HF's ViTForMaskedImageModeling is a ViT; the encoder is a "
            f"{type(vit).__name__}."
        )
    difference = _vit_difference(vit)
    if difference is not None:
        raise ValueError(
            f"HF's ViT cannot mirror this {type(vit).__name__}: {difference}."
        )
    first = _block_geometry(vit.blocks[0])
    assert isinstance(first, _BlockGeometry)  # _vit_difference checked it
    return ViTShape(
        hidden_size=int(vit.embed_dim),
        layers=len(vit.blocks),
        heads=first.heads,
        intermediate_size=first.intermediate_size,
        image_size=square_size(tuple(vit.patch_embed.img_size), "image size"),
        patch_size=square_size(tuple(vit.patch_embed.patch_size), "patch size"),
        channels=int(vit.patch_embed.proj.in_channels),
        qkv_bias=first.qkv_bias,
        layer_norm_eps=first.layer_norm_eps,
        norms_tokens=not isinstance(vit.norm, nn.Identity),
    )


def build_hf_model(shape: ViTShape) -> nn.Module:
    """HF's ``ViTForMaskedImageModeling`` with ``shape``, freshly initialised.

    Args:
        shape: The ViT to mirror (see :func:`vit_shape`).

    Returns:
        The model (train mode, CPU).

    Raises:
        ImportError: ``transformers`` is not installed.
    """
    transformers = import_transformers()
    config = transformers.ViTConfig(
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate_size,
        hidden_act="gelu",  # exact GELU, as timm's nn.GELU
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=shape.layer_norm_eps,
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        num_channels=shape.channels,
        qkv_bias=shape.qkv_bias,
        # SimMIM's head: 1x1 conv to patch**2 * channels, pixel shuffle by patch.
        encoder_stride=shape.patch_size,
    )
    model: nn.Module = transformers.ViTForMaskedImageModeling(config)
    return model.train()


def hf_step(
    config: Config,
    *,
    mask_patch_size: int,
    mask_ratio: float,
    device: torch.device,
    precision: str,
    compile_model: bool = False,
) -> TrainStep:
    """The ``hf`` row: HF's SimMIM on the target's ViT, trained the HF way.

    Args:
        config: The run config whose encoder to mirror (and its seed and batch).
        mask_patch_size: Side of SimMIM's masked cells, as in the ``simmim`` row.
        mask_ratio: Fraction of cells masked.
        device: The training device.
        precision: ``"32"``, ``"bf16-mixed"`` or ``"16-mixed"`` (autocast as in
            the other rows).
        compile_model: ``torch.compile`` the loss computation (mask drawing and the
            model), as the other rows do.

    Returns:
        The row.

    Raises:
        ImportError: ``transformers`` is not installed.
        ValueError: The encoder is not a ViT HF can mirror (the message says why).
    """
    import_transformers()  # fail before building anything
    kwargs: TimmKwargs = config.encoder.kwargs
    vit = create_timm_model(config.encoder.name, **kwargs)
    shape = vit_shape(vit)
    del vit
    torch.manual_seed(config.seed)
    model = build_hf_model(shape).to(device)
    masks = SimMIMMaskGenerator(
        input_size=shape.image_size,
        mask_patch_size=mask_patch_size,
        model_patch_size=shape.patch_size,
        mask_ratio=mask_ratio,
        seed=config.seed,
    )
    batch = config.data.batch_size
    side = shape.image_size
    generator = torch.Generator().manual_seed(config.seed)
    images = torch.randn(batch, shape.channels, side, side, generator=generator)
    images = images.to(device)  # (B, C, H, W)

    def loss() -> Tensor:
        mask = masks(batch, device=device).flatten(1)  # (B, h, w) -> (B, h * w)
        value: Tensor = model(pixel_values=images, bool_masked_pos=mask).loss
        return value

    compiled = torch.compile(loss) if compile_model else loss
    optimizer = torch.optim.AdamW(model.parameters())  # HF users' default
    run = StepPrecision(precision, device)
    attention = getattr(model.config, "_attn_implementation", None) or "default"
    notes = [f"transformers attention: {attention}; precision {precision}"]
    if not shape.norms_tokens:
        notes.append(
            "HF's final LayerNorm normalises every token; this ViT (global_pool="
            "'avg') normalises only the pooled features (fc_norm): one LayerNorm "
            "more per step in HF, same parameter count"
        )
    return TrainStep(
        name="hf",
        images_per_step=batch,
        device=device,
        step=make_step(compiled, optimizer, run),
        forward_backward=make_forward_backward(loss, optimizer, run),
        parameters=parameter_count(model),
        notes=notes,
    )
