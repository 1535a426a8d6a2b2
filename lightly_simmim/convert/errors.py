"""The one error the converter raises, and how it names the tensors concerned."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["OfficialCheckpointError", "name_keys"]


class OfficialCheckpointError(ValueError):
    """A file that is not an official SimMIM checkpoint, or tensors that do not fit.

    Raised with a one-line message when the file is not a ``torch.save`` checkpoint
    of the official microsoft/SimMIM (or Swin-Transformer SimMIM) code, when a tensor
    maps to no parameter of the timm model, when a parameter gets no tensor, or when
    a shape does not fit. The message names the first keys concerned; nothing is
    ever loaded partially.
    """


def name_keys(keys: Iterable[str], limit: int = 3) -> str:
    """The first ``limit`` keys quoted, and how many more there are.

    Args:
        keys: Tensor names, in the order to report them.
        limit: How many to spell out.

    Returns:
        E.g. ``"'a', 'b', 'c' and 4 more"``.
    """
    listed = list(keys)
    shown = ", ".join(repr(key) for key in listed[:limit])
    rest = len(listed) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown
