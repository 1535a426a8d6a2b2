"""The ``hf`` row's model is the same ViT as this package's SimMIM.

Same parameter count, and, with this package's weights copied into it, the same
loss on the same batch and mask (fp32, 1e-5): the name mapping between the two
libraries' modules is written out here, independently of the package.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import timm
import torch
from torch import Tensor, nn

from lightly_simmim.build import build_method
from lightly_simmim.model import SimMIM
from lightly_simmim.throughput.hf import build_hf_model, vit_shape
from lightly_simmim.throughput.targets import resolve_target

TINY = "vit_tiny_patch16_224:img_size=16,patch_size=4,embed_dim=32,depth=2,num_heads=2"


def _simmim_model(spec: str) -> SimMIM:
    """This package's SimMIM model exactly as the ``simmim`` row builds it."""
    target = resolve_target(spec, ["method.mask_patch_size=8"])
    method = build_method(target.method_config("simmim"), with_classes=False)
    model = method.model
    assert isinstance(model, SimMIM)
    return model


def _count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


# timm ViT block parameter -> HF layer parameter, per transformers layout. The qkv
# projection is split into query, key and value (rows in that order).
_BLOCK_NAMES = {
    "v5": {  # transformers 5: vit.layers.N.attention.{q,k,v,o}_proj, mlp.fc1/fc2
        "prefix": "vit.layers.{i}.",
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "qkv": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
        "proj": "attention.o_proj",
        "fc1": "mlp.fc1",
        "fc2": "mlp.fc2",
    },
    "v4": {  # transformers 4: vit.encoder.layer.N.attention.attention.query, ...
        "prefix": "vit.encoder.layer.{i}.",
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "qkv": (
            "attention.attention.query",
            "attention.attention.key",
            "attention.attention.value",
        ),
        "proj": "attention.output.dense",
        "fc1": "intermediate.dense",
        "fc2": "output.dense",
    },
}


def _hf_weights(model: SimMIM, hf_keys: set[str]) -> dict[str, Tensor]:
    """This package's SimMIM weights under HF's ``ViTForMaskedImageModeling`` names."""
    layout = _BLOCK_NAMES["v5" if any(".q_proj." in k for k in hf_keys) else "v4"]
    vit: Any = model.encoder.timm_model
    patch = "vit.embeddings.patch_embeddings.projection"
    weights = {
        "vit.embeddings.cls_token": vit.cls_token,
        "vit.embeddings.mask_token": model.encoder.mask_token,
        "vit.embeddings.position_embeddings": vit.pos_embed,
        f"{patch}.weight": vit.patch_embed.proj.weight,
        f"{patch}.bias": vit.patch_embed.proj.bias,
        "vit.layernorm.weight": vit.norm.weight,
        "vit.layernorm.bias": vit.norm.bias,
        "decoder.0.weight": model.head.conv.weight,
        "decoder.0.bias": model.head.conv.bias,
    }
    for name, tensor in vit.blocks.state_dict().items():
        parsed = re.fullmatch(r"(\d+)\.(.+)\.(weight|bias)", name)
        assert parsed is not None, name
        index, module, kind = parsed.groups()
        prefix = layout["prefix"].format(i=index)
        module = module.replace("attn.", "").replace("mlp.", "")
        if module == "qkv":  # (3 * D, ...) rows: query, key, value
            for part, chunk in zip(layout["qkv"], tensor.chunk(3), strict=True):
                weights[f"{prefix}{part}.{kind}"] = chunk
        else:
            weights[f"{prefix}{layout[module]}.{kind}"] = tensor
    return {name: tensor.detach().clone() for name, tensor in weights.items()}


@pytest.mark.parametrize(
    "spec",
    [
        TINY + ",global_pool=token",
        TINY + ",global_pool=avg",  # fc_norm instead of norm: same count
        TINY + ",in_chans=1,qkv_bias=false,mlp_ratio=2",
    ],
)
def test_vit_shape__hf_model_has_the_parameter_count_of_simmim(spec: str) -> None:
    pytest.importorskip("transformers")
    model = _simmim_model(spec)
    hf = build_hf_model(vit_shape(model.encoder.timm_model))
    assert _count(hf) == _count(model)


@pytest.mark.parametrize(
    "spec", [TINY, TINY + ",in_chans=1,qkv_bias=false,mlp_ratio=2"]
)
def test_build_hf_model__same_weights_give_the_same_loss(spec: str) -> None:
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = _simmim_model(spec).eval()
    with torch.no_grad():
        # Far from the near-uniform attention of a fresh init, so that a wrong
        # mapping (say, query and key swapped) moves the loss by far more than 1e-5.
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    hf = build_hf_model(vit_shape(model.encoder.timm_model)).eval()
    hf.load_state_dict(_hf_weights(model, set(hf.state_dict())), strict=True)

    channels = model.encoder.in_chans
    images = torch.randn(3, channels, 16, 16)  # (B, C, H, W)
    mask = torch.rand(3, 4, 4) < 0.5  # (B, h, w) token mask, True = masked
    mask[:, 0, 0] = True  # at least one masked token per image
    ours = model(images, mask)
    # (B, h, w) -> (B, h * w), row-major as HF's patch sequence.
    theirs = hf(pixel_values=images, bool_masked_pos=mask.flatten(1)).loss
    assert ours.item() > 0.1  # a real loss, not two zeros
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "kwargs", "reason"),
    [
        ("test_convnext", {}, "the encoder is a ConvNeXt"),
        ("vit_tiny_patch16_224", {"init_values": 0.1}, "layer scale"),
        ("vit_tiny_patch16_224", {"reg_tokens": 2}, "no register tokens"),
        ("vit_tiny_patch16_224", {"drop_path_rate": 0.1}, "drop rates to 0"),
        ("vit_tiny_patch16_224", {"global_pool": "map"}, "attention pooling"),
    ],
)
def test_vit_shape__refuses_what_hf_cannot_mirror(
    name: str, kwargs: dict[str, Any], reason: str
) -> None:
    # Depth 2: timm's drop-path rates rise from 0 over the blocks.
    small = {"embed_dim": 32, "depth": 2, "num_heads": 2} if "vit" in name else {}
    model = timm.create_model(name, num_classes=0, **small, **kwargs)
    with pytest.raises(ValueError, match=reason):
        vit_shape(model)


def test_vit_shape__reads_the_geometry_of_the_timm_vit() -> None:
    model = timm.create_model(
        "vit_tiny_patch16_224",
        img_size=24,
        patch_size=8,
        in_chans=1,
        embed_dim=48,
        depth=3,
        num_heads=4,
        mlp_ratio=3.0,
        qkv_bias=False,
        global_pool="avg",
        num_classes=0,
    )
    shape = vit_shape(model)
    assert (shape.hidden_size, shape.layers, shape.heads) == (48, 3, 4)
    assert (shape.intermediate_size, shape.image_size, shape.patch_size) == (
        144,
        24,
        8,
    )
    assert (shape.channels, shape.qkv_bias, shape.layer_norm_eps) == (1, False, 1e-6)
    assert shape.norms_tokens is False  # avg pooling: fc_norm, not norm
