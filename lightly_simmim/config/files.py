"""Config files: shipped configs by name, YAML in, the resolved config out."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lightly_simmim.atomic import atomic_write
from lightly_simmim.config.parse import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_yaml,
    method_section,
)
from lightly_simmim.config.schema import Config

__all__ = [
    "dump_config",
    "load_config",
    "read_yaml",
    "resolve_config_path",
    "shipped_configs",
    "to_dict",
]


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = ()
) -> Config:
    """Reads a YAML config, applies overrides and checks every key.

    Args:
        path: A YAML file, or the name of a shipped config (see
            :func:`shipped_configs`); None = typed defaults only.
        overrides: ``section.key=value`` strings, applied after the file.

    Returns:
        The checked :class:`Config`.

    Raises:
        ConfigError: On a missing file, invalid YAML, unknown keys, wrong types or
            values out of range.
    """
    values: dict[str, object] = {}
    if path is not None:
        values = read_yaml(resolve_config_path(path))
    given = copy.deepcopy(values)
    apply_overrides(values, overrides)
    _drop_options_of_a_replaced_method(given, values, overrides)
    return config_from_values(_with_default_mappings(given, values))


def _drop_options_of_a_replaced_method(
    given: Mapping[str, object], values: dict[str, object], overrides: Sequence[str]
) -> None:
    """``--set method.name=mae`` over a SimMIM file: the file's SimMIM options
    (``mask_patch_size``, ...) mean nothing to MAE, so only the options given on the
    command line stay."""
    method, before = values.get("method"), given.get("method")
    if not isinstance(method, dict) or not isinstance(before, Mapping):
        return
    if method.get("name") == before.get("name", Config().method.name):
        return
    empty: dict[str, object] = {}
    from_command_line = apply_overrides(empty, overrides).get("method")
    kept = dict(from_command_line) if isinstance(from_command_line, Mapping) else {}
    values["method"] = kept


def _with_default_mappings(
    given: Mapping[str, object], values: dict[str, object]
) -> dict[str, object]:
    """Fills in the typed defaults of the two mapping-valued settings.

    ``encoder.kwargs`` and the method's options are single values: a file that sets
    them replaces the defaults. Where the file leaves them out, the defaults still
    describe the model, so an override of one key (``encoder.kwargs.depth=1``) goes
    over them, unless the encoder or method itself was changed (the default ViT's
    kwargs mean nothing to a ResNet, SimMIM's mask options nothing to MAE).

    Args:
        given: The file's values, before the overrides.
        values: The values with the overrides applied (changed in place).

    Returns:
        ``values``.
    """
    defaults = Config()
    encoder = values.get("encoder")
    given_encoder = given.get("encoder")
    file_sets_kwargs = isinstance(given_encoder, dict) and "kwargs" in given_encoder
    if isinstance(encoder, dict) and not file_sets_kwargs:
        kwargs = encoder.get("kwargs") or {}
        if encoder.get("name", defaults.encoder.name) != defaults.encoder.name:
            encoder.setdefault("kwargs", {})  # another model: no default kwargs
        elif isinstance(kwargs, dict):
            encoder["kwargs"] = {**defaults.encoder.kwargs, **kwargs}
    method = values.get("method")
    if (
        isinstance(method, dict)
        and "method" not in given
        and method.get("name", defaults.method.name) == defaults.method.name
    ):
        values["method"] = {**defaults.method.options, **method}
    return values


def config_from_values(values: Mapping[str, object]) -> Config:
    """A :class:`Config` from nested dicts as written in YAML (method options inline).

    Raises:
        ConfigError: As :func:`load_config`.
    """
    values = dict(values)
    if "method" in values:
        values["method"] = method_section(values["method"])
    return from_dict(Config, values)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parses a YAML mapping with ``yaml.safe_load``, refusing duplicate keys.

    The values are untyped, as ``yaml.safe_load`` returns them: the readers check
    them key by key (:func:`~lightly_simmim.config.parse.from_dict`).

    Raises:
        ConfigError: If the file cannot be read, is not YAML or not a mapping.
    """
    try:
        loaded = load_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"Cannot read config {str(path)!r}: {error}.") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {loaded!r}.")
    return loaded


def shipped_configs() -> dict[str, Path]:
    """Config name -> path of the YAML files shipped in ``lightly_simmim/configs``."""
    folder = resources.files("lightly_simmim") / "configs"
    if not folder.is_dir():
        return {}
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    }


def resolve_config_path(path: str | Path) -> Path:
    """A file path as given, or the path of a shipped config of that name.

    Raises:
        ConfigError: If neither exists.
    """
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    shipped = shipped_configs()
    if str(path) in shipped:
        return shipped[str(path)]
    raise ConfigError(
        f"Config '{path}' is neither a file nor a shipped config. Shipped configs: "
        f"{', '.join(sorted(shipped))}."
    )


def to_dict(config: Config) -> dict[str, object]:
    """The config as plain nested dicts, the method options inlined into ``method``."""
    values = dataclasses.asdict(config)
    method = values.pop("method")
    options = method.pop("options")
    unset = [key for key, value in method.items() if value is None]
    for key in unset:  # head / loss / transform left to the method
        method.pop(key)
    return {"method": {**method, **options}, **values}


def dump_config(config: Config, path: str | Path) -> Path:
    """Writes the resolved config as YAML (atomically) and returns the path."""
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    return atomic_write(path, text.encode("utf-8"))
