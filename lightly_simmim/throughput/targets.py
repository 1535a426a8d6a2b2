"""What to measure: run configs from a config name, a YAML file or an encoder spec.

A target is one of

- a shipped config name (``lightly-simmim list``) or a run-config YAML file: its
  encoder, data, optimiser and method settings define the model; ``--set`` keys
  address the run config (``data.batch_size=64``);
- a benchmark YAML (top-level ``base`` and ``methods``): its ``base`` with each
  method's own sections, so MAE and BYOL get the benchmark's (small) decoder and
  projection; ``--set`` keys address the benchmark file (``base.data.root=...``),
  as for ``lightly-simmim benchmark``;
- an encoder spec for an ad-hoc model, ``TIMM_NAME[:KEY=VALUE,...]`` with values
  read as YAML, e.g. ``vit_small_patch16_224:img_size=96,embed_dim=384,depth=6,
  num_heads=6``: the typed defaults (the embedded Fashion-MNIST data) with that
  encoder and the methods' default settings; ``--set`` keys address that run
  config.

Each method row (``simmim``, ``mae``, ``byol``) gets a run config: the target's own
if its method is that one (or a benchmark row of that method), else the target's
with that method at its default settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import timm
import yaml

from lightly_simmim.benchmark.config import load_benchmark_config, method_configs
from lightly_simmim.config import (
    Config,
    ConfigError,
    MethodConfig,
    apply_overrides,
    config_from_values,
    load_config,
    read_yaml,
    shipped_configs,
)
from lightly_simmim.encoders import TimmKwargs, resolve_timm_name

__all__ = ["METHOD_ROWS", "Target", "parse_encoder_spec", "resolve_target"]

#: The rows that train one of this package's methods, by method name.
METHOD_ROWS = ("simmim", "mae", "byol")

TargetKind = Literal["config", "benchmark", "spec"]


@dataclasses.dataclass(frozen=True)
class Target:
    """The run configs a throughput table measures.

    Attributes:
        label: The target as given (config name, path or spec).
        kind: ``"config"``, ``"benchmark"`` or ``"spec"``.
        config: The run config of the ``data`` and ``loop`` rows (the target's own;
            for a benchmark, its SimMIM row, else its first).
        methods: Method name -> the run config of that method's row.
    """

    label: str
    kind: TargetKind
    config: Config
    methods: Mapping[str, Config]

    def method_config(self, name: str) -> Config:
        """The run config of the row that trains method ``name``."""
        return self.methods[name]

    def describe_encoder(self) -> str:
        """The encoder as ``timm_name(key=value, ...)``."""
        encoder = self.config.encoder
        kwargs = ", ".join(f"{key}={value}" for key, value in encoder.kwargs.items())
        return f"{encoder.name}({kwargs})"


def _split_top_level(text: str) -> list[str]:
    """Splits at commas outside brackets, so ``img_size=[96,96]`` stays whole."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"[": 1, "(": 1, "{": 1, "]": -1, ")": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_encoder_spec(spec: str) -> tuple[str, TimmKwargs]:
    """``TIMM_NAME[:KEY=VALUE,...]`` -> (timm name, ``timm.create_model`` kwargs).

    Values are read as YAML: ``depth=6`` is an int, ``qkv_bias=false`` a bool,
    ``img_size=[96,128]`` a list.

    Args:
        spec: The spec, e.g. ``vit_small_patch16_224:img_size=96,depth=6``.

    Returns:
        The name and the keyword arguments.

    Raises:
        ConfigError: A malformed pair, or a name timm does not know.
    """
    name, _, arguments = spec.partition(":")
    name = name.strip()
    kwargs: dict[str, object] = {}
    for pair in _split_top_level(arguments):
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"Encoder spec {spec!r}: {pair!r} is not KEY=VALUE (write "
                f"NAME:key=value,key=value, e.g. vit_small_patch16_224:depth=6)."
            )
        try:
            kwargs[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"Encoder spec {spec!r}: {pair!r}: {error}") from None
    try:
        resolve_timm_name(name)
    except ValueError as error:
        raise ConfigError(
            f"{spec!r} is not a shipped config ({', '.join(sorted(shipped_configs()))}"
            f"), not a YAML file, and not an encoder spec: {error}"
        ) from None
    return name, kwargs


def _spec_values(name: str, kwargs: TimmKwargs) -> dict[str, object]:
    """Run-config values for an encoder spec: its size and channels, the data's
    statistics, SimMIM at its paper settings."""
    size = kwargs.get("img_size")
    if size is None:
        size = resolve_timm_name(name)[1].get("img_size")
    if size is None:  # the registered model's own, (C, H, W)
        default = timm.models.get_pretrained_cfg_value(
            resolve_timm_name(name)[0], "input_size"
        )
        size = None if default is None else default[-1]
    if not isinstance(size, int):
        raise ConfigError(
            f"Encoder spec {name}: img_size={size!r}; only square sizes (one int) "
            "can be measured."
        )
    in_chans = int(kwargs.get("in_chans", 3))
    data: dict[str, object] = {"input_size": size, "in_chans": in_chans}
    if in_chans == 3:  # the typed defaults' statistics are Fashion-MNIST's 1 channel
        data |= {"mean": None, "std": None}
    return {
        "encoder": {"name": name, "kwargs": kwargs},
        "data": data,
        "method": {"name": "simmim"},
    }


def _fixed_input_size(name: str) -> bool:
    """Whether timm builds model ``name`` for one input size (ViT, Swin, BEiT: their
    position tables) rather than for any (CNNs), per its pretrained config."""
    try:
        base = resolve_timm_name(name)[0]
    except ValueError:
        return False
    return bool(timm.models.get_pretrained_cfg_value(base, "fixed_input_size"))


def _with_method(config: Config, name: str) -> Config:
    """``config`` with method ``name`` at its default settings."""
    return dataclasses.replace(config, method=MethodConfig(name=name, options={}))


def _resize(config: Config, batch_size: int | None, image_size: int | None) -> Config:
    """Applies ``--batch-size`` / ``--image-size``; the latter also sets the encoder's
    ``img_size`` where its kwargs set one or the model has a fixed input size."""
    data = config.data
    encoder = config.encoder
    if batch_size is not None:
        data = dataclasses.replace(data, batch_size=batch_size)
    if image_size is not None:
        data = dataclasses.replace(data, input_size=image_size)
        if "img_size" in encoder.kwargs or _fixed_input_size(encoder.name):
            kwargs = {**encoder.kwargs, "img_size": image_size}
            encoder = dataclasses.replace(encoder, kwargs=kwargs)
    return dataclasses.replace(config, data=data, encoder=encoder)


def _is_benchmark_file(path: Path) -> bool:
    values = read_yaml(path)
    return "base" in values and "methods" in values


def _configs(
    target: str, overrides: Sequence[str]
) -> tuple[TargetKind, Config, dict[str, Config]]:
    """(kind, main run config, method name -> config given by the target)."""
    path = Path(target)
    if path.is_file() and _is_benchmark_file(path):
        rows = method_configs(load_benchmark_config(path, overrides))
        by_method: dict[str, Config] = {}
        for config in rows.values():
            by_method.setdefault(config.method.name, config)
        main = by_method.get("simmim", next(iter(rows.values())))
        return "benchmark", main, by_method
    if path.is_file() or target in shipped_configs():
        config = load_config(target, overrides)
        return "config", config, {config.method.name: config}
    name, kwargs = parse_encoder_spec(target)
    values = apply_overrides(_spec_values(name, kwargs), overrides)
    config = config_from_values(values)
    return "spec", config, {config.method.name: config}


def resolve_target(
    target: str,
    overrides: Sequence[str] = (),
    *,
    batch_size: int | None = None,
    image_size: int | None = None,
) -> Target:
    """Reads a target into the run configs of every row.

    Args:
        target: A shipped config name, a run-config or benchmark YAML, or an
            encoder spec (see the module docstring).
        overrides: ``--set`` strings, addressing the file (or the spec's config).
        batch_size: Images per step for every row; None = the config's.
        image_size: Image side for every row; None = the config's.

    Returns:
        The target.

    Raises:
        ConfigError: An unreadable or invalid config, or a malformed spec.
    """
    kind, main, given = _configs(target, overrides)
    methods = {
        name: given.get(name) or _with_method(main, name) for name in METHOD_ROWS
    }
    return Target(
        label=target,
        kind=kind,
        config=_resize(main, batch_size, image_size),
        methods={
            name: _resize(config, batch_size, image_size)
            for name, config in methods.items()
        },
    )
