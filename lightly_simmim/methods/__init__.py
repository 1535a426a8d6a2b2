"""Pretraining methods behind one interface: SimMIM, MAE and BYOL.

Each is a ``LightningModule`` subclass of :class:`PretrainMethod`, registered in the
``lightly.methods`` entry point group (see ``pyproject.toml``); the training loop gets
them by name through :mod:`lightly_simmim.registry`, never by import. A new method is
one module with a :class:`PretrainMethod` subclass plus one entry point line.
"""

from lightly_simmim.methods.base import (
    ConvertChannels,
    LRSchedule,
    PretrainMethod,
    scaled_lr,
)
from lightly_simmim.methods.byol import BYOLMethod, BYOLSettings
from lightly_simmim.methods.mae import MAEMethod, MAESettings
from lightly_simmim.methods.simmim import SimMIMMethod, SimMIMSettings

__all__ = [
    "BYOLMethod",
    "BYOLSettings",
    "ConvertChannels",
    "LRSchedule",
    "MAEMethod",
    "MAESettings",
    "PretrainMethod",
    "SimMIMMethod",
    "SimMIMSettings",
    "scaled_lr",
]
