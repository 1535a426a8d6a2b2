"""Typed settings with their allowed ranges, checked wherever they are built.

Component argument types (optimiser, schedule, fine-tune and probe recipes) and the
config sections are dataclasses whose numeric fields carry their allowed range::

    @dataclass
    class ProbeSettings(Checked):
        epochs: int = setting(90, ge=1)
        lr: float = setting(0.1, gt=0)

A value out of range, or NaN, raises :class:`SettingError` when the dataclass is built,
whether a test builds it in one line or :mod:`lightly_simmim.config` builds it from a
YAML file (which then names the full key, ``finetune.epochs``). The range travels in
the field's metadata, so messages, the config checks and the tests that feed every
field a bad value all read one definition.

Standard library only: every layer of the package may use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, overload

__all__ = ["Bounds", "Checked", "SettingError", "bounds_of", "check_bounds", "setting"]

_BOUNDS = "lightly_simmim.bounds"

_T = TypeVar("_T")


@dataclass(frozen=True)
class Bounds:
    """An interval a number must lie in; None = open on that side.

    Attributes:
        ge: Smallest allowed value (inclusive).
        gt: Values must be above this (exclusive).
        le: Largest allowed value (inclusive).
        lt: Values must be below this (exclusive).
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def admits(self, value: float) -> bool:
        """Whether ``value`` lies in the interval (NaN and infinities never do: no
        setting here means anything by them, and ``--lr inf`` trained to NaN)."""
        if not math.isfinite(value):
            return False
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def describe(self) -> str:
        """The interval in words: ``>= 1``, ``> 0``, ``in [0, 1)``, ..."""
        low = (
            None
            if self.ge is None and self.gt is None
            else ("[", self.ge)
            if self.ge is not None
            else ("(", self.gt)
        )
        high = (
            None
            if self.le is None and self.lt is None
            else ("]", self.le)
            if self.le is not None
            else (")", self.lt)
        )
        if low is not None and high is not None:
            return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
        if low is not None:
            return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}"
        if high is not None:
            return f"{'<=' if high[0] == ']' else '<'} {high[1]:g}"
        return "any number"


class SettingError(ValueError):
    """A setting out of its allowed range; ``name`` is the field, ``value`` its value.

    The message reads ``'epochs' = 0 must be >= 1.``; the config reader repeats it with
    the full key (``'finetune.epochs' = 0 must be >= 1.``).
    """

    def __init__(self, name: str, value: object, requirement: str) -> None:
        self.name = name
        self.value = value
        self.requirement = requirement
        super().__init__(f"'{name}' = {value!r} {requirement}.")


@overload
def setting(
    default: _T,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> _T: ...


@overload
def setting(
    *,
    default_factory: Callable[[], _T],
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> _T: ...


def setting(
    default: object = dataclasses.MISSING,
    *,
    default_factory: Callable[[], object] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> object:
    """A dataclass field with an allowed range (checked by :func:`check_bounds`).

    Args:
        default: The default value.
        default_factory: A factory for mutable defaults (lists).
        ge: Smallest allowed value.
        gt: Values must be above this.
        le: Largest allowed value.
        lt: Values must be below this.

    Returns:
        A ``dataclasses.field``; for a list field the range applies to every item,
        and None (for optional fields) is always allowed.
    """
    metadata = {_BOUNDS: Bounds(ge=ge, gt=gt, le=le, lt=lt)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def bounds_of(field: dataclasses.Field[object]) -> Bounds | None:
    """The range a field was declared with, or None."""
    bounds = field.metadata.get(_BOUNDS)
    return bounds if isinstance(bounds, Bounds) else None


def check_bounds(instance: object) -> None:
    """Checks every ranged field of a dataclass instance.

    Raises:
        SettingError: For the first field whose value (or list item) is out of range.
    """
    for field in dataclasses.fields(instance):  # type: ignore[arg-type]
        bounds = bounds_of(field)
        if bounds is None:
            continue
        value = getattr(instance, field.name)
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if item is None or isinstance(item, (bool, str)):
                continue  # None: "off"; other types are the type checker's job
            if not isinstance(item, (int, float)) or not bounds.admits(float(item)):
                raise SettingError(field.name, value, f"must be {bounds.describe()}")


class Checked:
    """Mixin for settings dataclasses: ranges are checked in ``__post_init__``.

    Subclasses that need further checks override ``__post_init__`` and call
    ``super().__post_init__()`` first.
    """

    def __post_init__(self) -> None:
        check_bounds(self)
