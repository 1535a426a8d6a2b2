"""Encoder adapters: one MaskedEncoder interface, one adapter per timm family."""

from lightly_simmim.encoders.base import MaskedEncoder, TimmMaskedEncoder
from lightly_simmim.encoders.beit import SIMMIM_VIT_KWARGS, BEiTEncoder, simmim_vit
from lightly_simmim.encoders.convnext import ConvNeXtEncoder
from lightly_simmim.encoders.factory import (
    EncoderBuildError,
    TimmKwargs,
    adapter_for,
    create_timm_model,
    from_timm,
    resolve_timm_name,
)
from lightly_simmim.encoders.swin import SwinEncoder, SwinV2Encoder
from lightly_simmim.encoders.vit import ViTEncoder

__all__ = [
    "SIMMIM_VIT_KWARGS",
    "BEiTEncoder",
    "ConvNeXtEncoder",
    "EncoderBuildError",
    "MaskedEncoder",
    "SwinEncoder",
    "SwinV2Encoder",
    "TimmKwargs",
    "TimmMaskedEncoder",
    "ViTEncoder",
    "adapter_for",
    "create_timm_model",
    "from_timm",
    "resolve_timm_name",
    "simmim_vit",
]
