"""SimMIM masked image modeling for lightly.

The building blocks (``SimMIMMaskGenerator``, ``SimMIMTransform``,
``SimMIMPredictionHead``, ``SimMIMLoss``, ``SimMIM``) need only torch and torchvision;
encoder adapters live in :mod:`lightly_simmim.encoders`.
"""

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
