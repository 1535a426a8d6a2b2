"""Warnings that point at the user's code, however deep in this package they start."""

from __future__ import annotations

import sys
import warnings

__all__ = ["warn_user"]

# "lightly_simmim.data": frames of any module in this package are skipped.
_PACKAGE = __name__.rpartition(".")[0]


def _inside_package(module: object) -> bool:
    return module == _PACKAGE or (
        isinstance(module, str) and module.startswith(_PACKAGE + ".")
    )


def warn_user(message: str) -> None:
    """Issues a ``UserWarning`` attributed to the first caller outside this package.

    One warning can be reached through :func:`~lightly_simmim.data.build_dataset`,
    a builder or a dataset class, at different depths; a fixed ``stacklevel`` would
    point into this package for some of them.

    Args:
        message: The warning text.
    """
    level = 1  # stacklevel 1 is this function's own frame
    frame = sys._getframe(0)
    while frame.f_back is not None and _inside_package(frame.f_globals.get("__name__")):
        frame = frame.f_back
        level += 1
    warnings.warn(message, UserWarning, stacklevel=level)
