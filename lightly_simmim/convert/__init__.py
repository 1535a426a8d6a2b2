"""Official microsoft/SimMIM checkpoints -> this package's encoders and timm.

The published SimMIM weights (ViT-B, Swin-B / Swin-L, SwinV2) exist only as
checkpoints of the official code. This package reads them without executing
anything from the file, detects the family and architecture from the tensors, and
maps every tensor onto timm's ``Beit`` / ``SwinTransformer`` /
``SwinTransformerV2`` (resizing relative position bias tables bicubically, as the
official fine-tuning does, when the image or window size changes)::

    from lightly_simmim.convert import export_official_to_timm, load_official_checkpoint

    model = load_official_checkpoint("simmim_pretrain__swin_base__img192_window6.pth")
    loss = model(images, mask)  # continued pretraining, reconstructions, evaluation

    export_official_to_timm("simmim_finetune__vit_base.pth", "vit_b.safetensors")
    # -> vit_b.safetensors + vit_b.json (timm name and kwargs for timm.create_model)

Lower-level steps, for tools: :func:`read_official_checkpoint` (the file),
:func:`detect_architecture` (family, timm name and kwargs), :func:`to_timm` (the
timm state dict), :func:`convert_official_checkpoint` (the model and an account of
every tensor). All errors a file can cause are :class:`OfficialCheckpointError`.
"""

from lightly_simmim.convert.architecture import Architecture, Family, Overrides
from lightly_simmim.convert.detect import detect_architecture, detect_family
from lightly_simmim.convert.errors import OfficialCheckpointError
from lightly_simmim.convert.interpolate import resize_bias_table
from lightly_simmim.convert.load import (
    Conversion,
    convert_official_checkpoint,
    load_official_checkpoint,
)
from lightly_simmim.convert.safe_load import (
    CheckpointKind,
    OfficialCheckpoint,
    read_official_checkpoint,
)
from lightly_simmim.convert.timm_export import (
    TimmExport,
    export_official_to_timm,
    to_timm,
)

__all__ = [
    "Architecture",
    "CheckpointKind",
    "Conversion",
    "Family",
    "OfficialCheckpoint",
    "OfficialCheckpointError",
    "Overrides",
    "TimmExport",
    "convert_official_checkpoint",
    "detect_architecture",
    "detect_family",
    "export_official_to_timm",
    "load_official_checkpoint",
    "read_official_checkpoint",
    "resize_bias_table",
    "to_timm",
]
