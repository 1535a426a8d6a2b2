"""SimMIM masked image modeling for lightly.

The building blocks (``SimMIMMaskGenerator``, ``SimMIMTransform``,
``SimMIMPredictionHead``, ``SimMIMLoss``, ``SimMIM``) need only torch and torchvision;
encoder adapters live in :mod:`lightly_simmim.encoders`.

They are imported on first use (PEP 562), so that ``import lightly_simmim.cli`` (and
``lightly-simmim --help``) does not pay for torch and timm before it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightly_simmim.heads import SimMIMPredictionHead
    from lightly_simmim.loss import SimMIMLoss
    from lightly_simmim.masking import SimMIMMaskGenerator
    from lightly_simmim.model import SimMIM
    from lightly_simmim.transforms import SimMIMTransform

__version__ = "0.1.0"

__all__ = [
    "SimMIM",
    "SimMIMLoss",
    "SimMIMMaskGenerator",
    "SimMIMPredictionHead",
    "SimMIMTransform",
    "__version__",
]

_MODULES = {
    "SimMIM": "lightly_simmim.model",
    "SimMIMLoss": "lightly_simmim.loss",
    "SimMIMMaskGenerator": "lightly_simmim.masking",
    "SimMIMPredictionHead": "lightly_simmim.heads",
    "SimMIMTransform": "lightly_simmim.transforms",
}


def __getattr__(name: str) -> object:
    """Imports a building block on first access."""
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
