"""Pretraining methods behind one interface: SimMIM, MAE and BYOL.

Each is a ``LightningModule`` subclass of :class:`PretrainMethod`, registered in the
``lightly.methods`` entry point group (see ``pyproject.toml``); the training loop gets
them by name through :mod:`lightly_simmim.registry`, never by import. Everything after
the loop types them with the :class:`Method` protocol. A new method is one module with
a :class:`PretrainMethod` subclass plus one entry point line.
"""

from lightly_simmim.methods.base import PretrainMethod
from lightly_simmim.methods.byol import BYOLMethod, BYOLSettings
from lightly_simmim.methods.interface import (
    FeatureModel,
    HeadFactory,
    ImageTransform,
    LossFactory,
    Method,
    MethodClass,
    Reconstruction,
    TransformFactory,
    ViewTransform,
)
from lightly_simmim.methods.mae import MAEMethod, MAESettings
from lightly_simmim.methods.simmim import SimMIMMethod, SimMIMSettings

__all__ = [
    "BYOLMethod",
    "BYOLSettings",
    "FeatureModel",
    "HeadFactory",
    "ImageTransform",
    "LossFactory",
    "MAEMethod",
    "MAESettings",
    "Method",
    "MethodClass",
    "PretrainMethod",
    "Reconstruction",
    "SimMIMMethod",
    "SimMIMSettings",
    "TransformFactory",
    "ViewTransform",
]
