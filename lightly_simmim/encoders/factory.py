"""``from_timm``: a SimMIM encoder from a timm model name or instance.

The adapter class is found only through the ``lightly.encoders`` entry points (see
:mod:`lightly_simmim.registry`): a third-party distribution that registers an adapter
there is picked up here with no change to this package.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import timm
from torch import nn

from lightly_simmim import registry
from lightly_simmim.encoders.base import MaskedEncoder

TimmKwargs = Mapping[str, Any]
"""Keyword arguments for ``timm.create_model`` (``img_size``, ``in_chans``,
``drop_path_rate``, a ``norm_layer`` class, ...), typed as timm types its
``**kwargs``: each model's constructor checks its own."""

# "<family>[_window<W>]_<S>", e.g. swin_base_patch4_window6_192 or vit_base_patch16_192.
_SIZED_NAME = re.compile(r"^(?P<family>.+?)(?:_window(?P<window>\d+))?_(?P<size>\d+)$")


def resolve_timm_name(name: str) -> tuple[str, dict[str, int]]:
    """Maps a model name to a registered timm name plus size overrides.

    A registered name (tags such as ``.in1k`` included) is returned as is. Otherwise
    a name that follows timm's naming, ``<family>[_window<W>]_<S>``, is mapped to a
    registered model of the same family, the same way of naming the window, and the
    image size closest to ``S`` (ties: closest window, then name), with overrides
    ``img_size=S`` and, if the name has one, ``window_size=W``. For example
    ``swin_base_patch4_window6_192`` becomes ``swin_base_patch4_window7_224`` with
    ``{"window_size": 6, "img_size": 192}``, and ``vit_base_patch16_192`` becomes
    ``vit_base_patch16_224`` with ``{"img_size": 192}``. Only the architecture is
    derived this way; there are no pretrained weights for such a name.

    Args:
        name: A timm model name.

    Returns:
        (registered timm name, keyword overrides for ``timm.create_model``).

    Raises:
        ValueError: If the name is neither registered nor derivable.
    """
    if timm.is_model(name):
        return name, {}
    parsed = _SIZED_NAME.match(name)
    if parsed is not None:
        family, window = parsed["family"], parsed["window"]
        size = int(parsed["size"])
        candidates = []
        for registered in timm.list_models():
            other = _SIZED_NAME.match(registered)
            if (
                other is None
                or other["family"] != family
                or (other["window"] is None) != (window is None)
            ):
                continue
            window_gap = abs(int(other["window"]) - int(window)) if window else 0
            rank = (abs(int(other["size"]) - size), window_gap, registered)
            candidates.append(rank)
        if candidates:
            base = min(candidates)[2]
            overrides = {"img_size": size}
            if window is not None:
                overrides["window_size"] = int(window)
            return base, overrides
    raise ValueError(
        f"Unknown timm model name {name!r}: it is not registered in timm "
        f"{timm.__version__}, and no registered model has the same family with "
        f"another window / image size (<family>[_window<W>]_<size>). See "
        f"timm.list_models() for the registered names."
    )


class EncoderBuildError(ValueError):
    """timm could not build an encoder from a name and keyword arguments."""


# timm's model constructors check their arguments with asserts and plain arithmetic,
# so a bad keyword argument surfaces as any of these (an unknown keyword is a
# TypeError, embed_dim=130 with 3 heads an AssertionError, num_heads=0 a
# ZeroDivisionError, img_size=[32] an IndexError). Raised while building a model from
# the user's arguments, each means those arguments, not a bug of this package.
_CONSTRUCTOR_ERRORS: tuple[type[Exception], ...] = (
    TypeError,
    ValueError,
    AssertionError,
    ArithmeticError,
    LookupError,
    RuntimeError,
)


def create_timm_model(
    name: str, *, pretrained: bool = False, **kwargs: object
) -> nn.Module:
    """``timm.create_model`` without classifier, accepting derived names.

    Args:
        name: A registered timm name, or one derived from it as described in
            :func:`resolve_timm_name`.
        pretrained: Load timm's pretrained weights (downloads them; only for
            registered names).
        **kwargs: Passed to ``timm.create_model`` (``in_chans=1``, ``img_size``,
            ``drop_path_rate``, ...).

    Returns:
        The timm model with ``num_classes=0`` unless ``kwargs`` says otherwise.

    Raises:
        ValueError: If the name is unknown, or ``kwargs`` contradict the sizes in a
            derived name.
        EncoderBuildError: timm's constructor rejects ``kwargs`` (the message
            names them and timm's reason).
    """
    base, overrides = resolve_timm_name(name)
    for key, value in overrides.items():
        given = kwargs.get(key, value)
        if given != value and given != (value, value):
            raise ValueError(
                f"{name!r} means {key}={value}, but {key}={given!r} was also given."
            )
    if pretrained and overrides:
        raise ValueError(
            f"{name!r} is derived from {base!r} with {overrides}; timm has no "
            f"pretrained weights for it. Use pretrained=False."
        )
    arguments: TimmKwargs = {"num_classes": 0, **overrides, **kwargs}
    try:
        model: nn.Module = timm.create_model(base, pretrained=pretrained, **arguments)
    except _CONSTRUCTOR_ERRORS as error:
        raise EncoderBuildError(
            f"timm cannot build {base!r} with the keyword arguments {kwargs}: "
            f"{type(error).__name__}: {error}. Check them against the model's "
            f"constructor (encoder.kwargs in a run config, the KEY=VALUE part of an "
            f"encoder spec): a misspelt or foreign name (img_size for a ConvNet), a "
            f"value of the wrong type, or sizes that do not fit together."
        ) from error
    return model


def adapter_for(model: nn.Module) -> type[MaskedEncoder]:
    """The registered adapter class that wraps ``model``.

    Every class in the ``lightly.encoders`` entry point group whose ``supports(model)``
    is True is a candidate; when one candidate subclasses another, the more specific
    subclass wins.

    Args:
        model: A timm model instance.

    Returns:
        The adapter class; call it with the model to wrap it.

    Raises:
        ValueError: If no registered adapter supports the model (the message lists
            the registered families), or several unrelated ones do.
    """
    names_by_class: dict[type[MaskedEncoder], list[str]] = {}
    for name, obj in registry.items("encoders").items():
        if not (isinstance(obj, type) and issubclass(obj, MaskedEncoder)):
            warnings.warn(
                f"Ignoring encoder plugin {name!r}: {obj!r} is not a MaskedEncoder "
                f"subclass.",
                stacklevel=2,
            )
            continue
        names_by_class.setdefault(obj, []).append(name)
    matches = [cls for cls in names_by_class if cls.supports(model)]
    # Most specific first: drop an adapter if a subclass of it also matches.
    matches = [
        cls
        for cls in matches
        if not any(other is not cls and issubclass(other, cls) for other in matches)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        families = ", ".join(sorted(n for ns in names_by_class.values() for n in ns))
        raise ValueError(
            f"No SimMIM encoder adapter supports {type(model).__module__}."
            f"{type(model).__name__}. Supported families: {families}. A new family "
            f"is an adapter class registered in the 'lightly.encoders' entry points."
        )
    competing = ", ".join(
        f"{cls.__module__}.{cls.__qualname__} ({'/'.join(names_by_class[cls])})"
        for cls in matches
    )
    raise ValueError(
        f"Several encoder adapters support {type(model).__name__}: {competing}. "
        f"Wrap the model with the adapter class you want directly."
    )


def from_timm(
    model_or_name: str | nn.Module, *, pretrained: bool = False, **kwargs: object
) -> MaskedEncoder:
    """A SimMIM encoder for a timm model, given by name or as an instance.

    A name is created with :func:`create_timm_model` (``num_classes=0``, no weights
    unless ``pretrained=True``; names with another window / image size than the
    registered ones are derived as in :func:`resolve_timm_name`). The adapter is the
    registered ``lightly.encoders`` class that supports the model (see
    :func:`adapter_for`), called with the model as its only argument.

    Args:
        model_or_name: A timm model name, or a timm model instance to wrap (its
            weights are kept and shared; its classifier is removed).
        pretrained: Load timm's pretrained weights for a name.
        **kwargs: ``timm.create_model`` arguments for a name, e.g. ``in_chans=1``,
            ``img_size=64``, ``drop_path_rate=0.1``.

    Returns:
        The adapter wrapping the model.

    Raises:
        ValueError: For an unknown name, an unsupported model (the message lists the
            supported families), or ``kwargs`` / ``pretrained`` with an instance.

    Examples:
        >>> enc = from_timm("vit_base_patch16_224")
        >>> enc = from_timm("swin_base_patch4_window6_192", in_chans=1)
        >>> enc = from_timm(timm.create_model("convnext_tiny"))
    """
    if isinstance(model_or_name, str):
        model = create_timm_model(model_or_name, pretrained=pretrained, **kwargs)
    elif isinstance(model_or_name, nn.Module):
        if kwargs or pretrained:
            raise ValueError(
                f"Keyword arguments ({sorted(kwargs) or ['pretrained']}) only apply "
                f"to a model name; configure the instance when you create it."
            )
        model = model_or_name
    else:
        raise TypeError(
            f"from_timm takes a timm model name or nn.Module, got "
            f"{type(model_or_name).__name__}."
        )
    adapter = adapter_for(model)
    return adapter(model)
