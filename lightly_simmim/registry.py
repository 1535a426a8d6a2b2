"""Entry-point discovery: components by name from installed distributions.

Methods, transforms, heads, losses, encoders and dataset builders are found through
Python entry points, in the groups of :data:`GROUPS`. This package registers its own
components in its ``pyproject.toml`` exactly as a third-party distribution would, so
nothing here is special-cased: installing a distribution that declares, say, ::

    [project.entry-points."lightly.losses"]
    my_loss = "my_package.loss:MyLoss"

makes ``get("losses", "my_loss")`` work and lists it in ``lightly-simmim list``.

Behaviour:

- Discovery (reading distribution metadata) is cached per group and imports nothing;
  :func:`entry_points` and :func:`describe` only use that, so a CLI can list plugins
  without importing them.
- Loading is lazy: :func:`get` imports only the plugin asked for; :func:`items` and
  :func:`list_names` import every plugin of one group. Loaded objects, and load
  failures, are cached until :func:`refresh`.
- A plugin that fails to import is skipped by :func:`items` / :func:`list_names` with a
  :class:`PluginLoadWarning` naming it and the error, so one broken plugin does not
  take the others down; :func:`get` of it raises :class:`PluginLoadError`.
- An unknown name raises :class:`UnknownComponentError`, which lists the known names and
  suggests the nearest one.
- Two distributions registering one name in one group: a
  :class:`DuplicatePluginWarning` names both and one is kept deterministically (this
  package's own distribution if it is one of them, else the first by distribution name).

This module uses the standard library only and imports no other ``lightly_simmim``
module (and not torch), so any layer of the package can use it without import cycles.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import re
import warnings

__all__ = [
    "GROUPS",
    "DuplicatePluginWarning",
    "PluginLoadError",
    "PluginLoadWarning",
    "UnknownComponentError",
    "describe",
    "entry_points",
    "get",
    "items",
    "list_names",
    "refresh",
]

GROUPS: dict[str, str] = {
    "methods": "lightly.methods",
    "transforms": "lightly.transforms",
    "heads": "lightly.heads",
    "losses": "lightly.losses",
    "encoders": "lightly.encoders",
    "datasets": "lightly.datasets",
}
"""Short group name -> entry point group. Every function accepts either spelling."""

# Wins a name clash against any other distribution (see `_pick`).
_OWN_DISTRIBUTION = "lightly-simmim"
_UNKNOWN_DISTRIBUTION = "<unknown distribution>"

# (full group, name) -> loaded object, or the exception its import raised. Failures are
# kept so that a broken module is not re-executed on every call (Python does not cache
# failed imports); `refresh` clears both.
_loaded: dict[tuple[str, str], object] = {}
_failed: dict[tuple[str, str], Exception] = {}


class PluginLoadWarning(UserWarning):
    """A plugin was skipped because importing its entry point failed."""


class DuplicatePluginWarning(UserWarning):
    """Several entry points register the same name in one group; one was kept."""


class PluginLoadError(ImportError):
    """Loading a plugin requested by name failed; the original error is the cause.

    Attributes:
        group: Full entry point group, e.g. ``"lightly.losses"``.
        plugin: Plugin name within the group.
        distribution: Name of the distribution that declares the entry point.
        value: The entry point's ``module:attribute`` reference.
        name: The module part of ``value`` (``ImportError``'s usual meaning).
    """

    def __init__(
        self, message: str, *, group: str, plugin: str, distribution: str, value: str
    ) -> None:
        super().__init__(message, name=value.partition(":")[0].strip())
        self.group = group
        self.plugin = plugin
        self.distribution = distribution
        self.value = value


class UnknownComponentError(KeyError, ValueError):
    """No plugin of the requested name is registered in the group.

    A ``KeyError`` because it is a failed lookup, and a ``ValueError`` because the name
    usually comes from a config value; ``str()`` gives the plain message.

    Attributes:
        group: Full entry point group, e.g. ``"lightly.losses"``.
        name: The name that was asked for.
        known: Sorted names registered in the group (discovered, not necessarily
            importable).
        suggestion: The closest known name, or ``None`` if none is close.
    """

    def __init__(
        self, group: str, name: str, known: list[str], suggestion: str | None
    ) -> None:
        self.group = group
        self.name = name
        self.known = known
        self.suggestion = suggestion
        if known:
            hint = f" Did you mean {suggestion!r}?" if suggestion else ""
            listing = ", ".join(repr(k) for k in known)
            message = (
                f"Unknown name {name!r} in plugin group {_short(group)!r}"
                f" ({group!r}).{hint} Known names: {listing}."
            )
        else:
            message = (
                f"Unknown name {name!r}: no plugins are registered in plugin group"
                f" {_short(group)!r} ({group!r})."
            )
        super().__init__(message)

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and wrap it in quotes.
        return str(self.args[0])


def _short(group: str) -> str:
    """``"lightly.losses"`` -> ``"losses"``, for messages."""
    for short, full in GROUPS.items():
        if full == group:
            return short
    return group


def _resolve_group(group: str) -> str:
    """Maps a short or full group name to the full entry point group.

    Raises:
        ValueError: If ``group`` is neither a short nor a full group name.
    """
    if group in GROUPS:
        return GROUPS[group]
    if group in GROUPS.values():
        return group
    valid = ", ".join(f"{short!r} ({full!r})" for short, full in GROUPS.items())
    raise ValueError(f"Unknown plugin group {group!r}. Valid groups: {valid}.")


def _normalize(distribution: str) -> str:
    """PEP 503 normalisation: ``lightly_simmim`` equals ``Lightly-SimMIM``."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _distribution(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return name if isinstance(name, str) and name else _UNKNOWN_DISTRIBUTION


def _describe_one(group: str, entry_point: importlib.metadata.EntryPoint) -> str:
    return (
        f"{entry_point.name!r} in group {group!r} (entry point {entry_point.value!r}"
        f" from distribution {_distribution(entry_point)!r})"
    )


def _pick(
    group: str, name: str, candidates: list[importlib.metadata.EntryPoint]
) -> importlib.metadata.EntryPoint:
    """Chooses one of several entry points registering ``name``; warns if ambiguous."""
    ranked = sorted(
        candidates,
        key=lambda ep: (
            _normalize(_distribution(ep)) != _OWN_DISTRIBUTION,
            _normalize(_distribution(ep)),
            ep.value,
        ),
    )
    kept = ranked[0]
    if len(ranked) > 1:
        clashing = "; ".join(
            f"{ep.value!r} from {_distribution(ep)!r}" for ep in ranked
        )
        warnings.warn(
            f"Plugin name {name!r} is registered more than once in group {group!r}:"
            f" {clashing}. Using {kept.value!r} from {_distribution(kept)!r}; uninstall"
            " or rename the others to silence this warning.",
            DuplicatePluginWarning,
            stacklevel=2,
        )
    return kept


@functools.cache
def _discover(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """Name -> entry point for one full group, duplicates resolved. Imports nothing.

    Cached: the result is shared, so callers must not mutate it.
    """
    by_name: dict[str, list[importlib.metadata.EntryPoint]] = {}
    # Looked up through the module attribute (not imported by name) so tests can
    # monkeypatch `importlib.metadata.entry_points`.
    for entry_point in importlib.metadata.entry_points(group=group):
        by_name.setdefault(entry_point.name, []).append(entry_point)
    return {
        name: _pick(group, name, candidates)
        for name, candidates in sorted(by_name.items())
    }


def _load(group: str, entry_point: importlib.metadata.EntryPoint) -> object:
    """Imports one entry point, with caching of both success and failure.

    Raises:
        PluginLoadError: If importing the entry point raises; the error is the cause.
    """
    key = (group, entry_point.name)
    if key in _loaded:
        return _loaded[key]
    error = _failed.get(key)
    if error is None:
        try:
            obj = entry_point.load()
        except Exception as exc:  # a plugin's import may fail in any way
            _failed[key] = error = exc
        else:
            _loaded[key] = obj
            return obj
    raise PluginLoadError(
        f"Plugin {_describe_one(group, entry_point)} failed to load:"
        f" {type(error).__name__}: {error}",
        group=group,
        plugin=entry_point.name,
        distribution=_distribution(entry_point),
        value=entry_point.value,
    ) from error


def _load_all(group: str, stacklevel: int) -> dict[str, object]:
    loaded: dict[str, object] = {}
    for name, entry_point in _discover(group).items():
        try:
            loaded[name] = _load(group, entry_point)
        except PluginLoadError as exc:
            warnings.warn(
                f"Skipping plugin {_describe_one(group, entry_point)}: it failed to"
                f" load: {type(exc.__cause__).__name__}: {exc.__cause__}",
                PluginLoadWarning,
                stacklevel=stacklevel + 1,
            )
    return loaded


def entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """Discovered, not yet loaded entry points of one group.

    Args:
        group: Short (``"losses"``) or full (``"lightly.losses"``) group name.

    Returns:
        Name -> entry point, sorted by name, with duplicate names already resolved.
        Nothing is imported.

    Raises:
        ValueError: If ``group`` is not one of :data:`GROUPS`.
    """
    return dict(_discover(_resolve_group(group)))


def describe(group: str) -> list[tuple[str, str, str]]:
    """Plugins of one group as rows for a listing, without importing any of them.

    Args:
        group: Short (``"losses"``) or full (``"lightly.losses"``) group name.

    Returns:
        ``(name, distribution name, entry point value)`` per plugin, sorted by
        name, e.g. ``("simmim", "lightly-simmim", "lightly_simmim.loss:SimMIMLoss")``.

    Raises:
        ValueError: If ``group`` is not one of :data:`GROUPS`.
    """
    return [
        (name, _distribution(entry_point), entry_point.value)
        for name, entry_point in _discover(_resolve_group(group)).items()
    ]


def items(group: str) -> dict[str, object]:
    """Loads every plugin of one group, skipping (with a warning) those that fail.

    Args:
        group: Short (``"losses"``) or full (``"lightly.losses"``) group name.

    Returns:
        Name -> loaded object (usually a class), sorted by name, for every plugin that
        imports successfully.

    Raises:
        ValueError: If ``group`` is not one of :data:`GROUPS`.

    Warns:
        PluginLoadWarning: Once per call for each plugin that fails to import, naming
            the group, the plugin, its distribution, its entry point and the error.
    """
    return _load_all(_resolve_group(group), stacklevel=2)


def list_names(group: str) -> list[str]:
    """Names of the plugins of one group that load successfully.

    This imports every plugin of the group; use :func:`describe` or
    :func:`entry_points` to list without importing.

    Args:
        group: Short (``"losses"``) or full (``"lightly.losses"``) group name.

    Returns:
        Sorted plugin names.

    Raises:
        ValueError: If ``group`` is not one of :data:`GROUPS`.

    Warns:
        PluginLoadWarning: For each plugin that fails to import (see :func:`items`).
    """
    return sorted(_load_all(_resolve_group(group), stacklevel=2))


def get(group: str, name: str) -> object:
    """Loads one plugin by name, importing only that plugin.

    Args:
        group: Short (``"losses"``) or full (``"lightly.losses"``) group name.
        name: Plugin name within the group, e.g. ``"simmim"``.

    Returns:
        The object the entry point refers to (usually a class); the same object on
        every call until :func:`refresh`.

    Raises:
        ValueError: If ``group`` is not one of :data:`GROUPS`.
        UnknownComponentError: If no plugin named ``name`` is registered in the group;
            the message lists the known names and suggests the closest one.
        PluginLoadError: If the plugin is registered but importing it fails; the
            original exception is chained as ``__cause__``.
    """
    full = _resolve_group(group)
    discovered = _discover(full)
    if name not in discovered:
        known = list(discovered)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        raise UnknownComponentError(full, name, known, close[0] if close else None)
    return _load(full, discovered[name])


def refresh() -> None:
    """Forgets discovered entry points and loaded objects.

    Call after installing or removing a distribution in a running process (or after
    changing ``sys.path``) so the next lookup rediscovers plugins. Modules already
    imported stay in ``sys.modules``; only this registry's caches and the import
    system's finder caches are cleared.
    """
    _discover.cache_clear()
    _loaded.clear()
    _failed.clear()
    # Path finders cache directory listings (also used to find dist-info folders).
    importlib.invalidate_caches()
