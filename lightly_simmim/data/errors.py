"""The errors a dataset raises for data a user can fix: missing, corrupt, malformed.

Each one subclasses the built-in error a caller would already catch for that kind of
problem (a missing file, a bad value), so generic handlers keep working.
"""

from __future__ import annotations

__all__ = ["CorruptImageError", "DatasetNotFoundError", "IDXFormatError"]


class DatasetNotFoundError(FileNotFoundError):
    """The data for a dataset is not where it was looked for (or no root was given).

    The message names the path that was looked at, the expected layout and, where
    torchvision can fetch the set, that ``download=True`` (``download: true`` in a
    config) exists.
    """


class CorruptImageError(ValueError):
    """An image file cannot be decoded and the ``on_corrupt`` policy says to stop.

    Raised when ``on_corrupt="error"`` and a file fails to decode (at construction,
    or when it is loaded if images were not checked), and with ``"skip"`` when no
    image at all can be decoded. The message names the file(s) and what to do.
    """


class IDXFormatError(ValueError):
    """An IDX file (or its gzip wrapper) is truncated, corrupt or of the wrong shape."""
