"""The typed schema of the YAML run configs: defaults < YAML < ``--set`` overrides.

Only this module and the CLI know the YAML; components take explicit arguments. Every
key is checked: a misspelt or unknown key is an error naming the nearest valid key, and
a value of the wrong type is an error naming the key and the expected type. The
``method`` section holds ``name`` plus the options of that method, which are checked
against the method's own ``Settings`` dataclass (see :mod:`lightly_simmim.methods`).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from lightly_simmim.atomic import atomic_write


class ConfigError(ValueError):
    """A config that cannot be used, with a message saying what to change."""


@dataclass
class EncoderConfig:
    """Which timm encoder to build (``lightly_simmim.encoders.from_timm`` names)."""

    name: str = "vit_tiny_patch16_224"
    #: Keyword arguments for ``timm.create_model`` (img_size, patch_size, depth, ...).
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Training data and its augmentation size."""

    dataset: str = "fashion-mnist-embedded"
    root: str | None = None
    download: bool = False
    #: "skip" corrupt / non-image files with a warning, or "error" on the first.
    on_corrupt: Literal["skip", "error"] = "skip"
    #: Decode every image of an image folder once at start-up to find corrupt ones.
    check_images: bool = True
    input_size: int = 32
    #: Channels the model sees: 1 keeps grayscale data native, 3 repeats channels.
    in_chans: int = 1
    #: Per-channel normalisation; None = ImageNet statistics (3 channels only).
    mean: list[float] | None = field(default_factory=lambda: [0.2860])
    std: list[float] | None = field(default_factory=lambda: [0.3530])
    #: Images per device and step.
    batch_size: int = 128
    num_workers: int = 2
    #: Use only N evenly spaced training images (quick runs, tests); None = all.
    limit_train: int | None = None
    #: Use only N evenly spaced evaluation images; None = all.
    limit_eval: int | None = None


@dataclass
class OptimConfig:
    """Optimiser; the learning rate is scaled by the global batch size."""

    optimizer: str = "adamw"
    #: lr = base_lr * global_batch / base_batch_size (global = per-device batch x
    #: devices x nodes x accumulate_grad_batches).
    base_lr: float = 1.5e-3
    base_batch_size: int = 512
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.9
    #: Gradient norm clipping; None = off.
    clip_grad: float | None = 5.0
    accumulate_grad_batches: int = 1


@dataclass
class ScheduleConfig:
    """Per-step learning-rate schedule with linear warmup."""

    name: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup_epochs: float = 1.0
    warmup_lr: float = 1e-6
    #: Final learning rate of the cosine schedule (not scaled by batch size).
    min_lr: float = 1e-5
    #: Epochs at which multistep multiplies the rate by gamma.
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1


@dataclass
class TrainerConfig:
    """What goes to Lightning's Trainer, plus checkpoints and images."""

    epochs: int = 10
    #: Stop after this many optimiser steps; None = run all epochs.
    max_steps: int | None = None
    precision: Literal["32", "32-true", "bf16-mixed", "16-mixed"] = "32"
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    compile: bool = False
    #: Also write a checkpoint every N steps (besides every epoch); None = off.
    checkpoint_every_n_steps: int | None = None
    #: Keep only the newest N ``epoch=NNN.ckpt`` files (``last.ckpt`` always stays);
    #: None keeps every epoch's file.
    keep_epoch_checkpoints: int | None = None
    log_every_n_steps: int = 20
    #: Save a reconstruction PNG every N epochs (and at the end); 0 = only at the end.
    reconstruction_every_n_epochs: int = 1
    #: Train a linear classifier on detached features where labels exist.
    online_classifier: bool = True
    progress_bar: bool = True


@dataclass
class EvalConfig:
    """Evaluation run at the end of pretraining."""

    knn: bool = True
    knn_k: int = 20
    knn_temperature: float = 0.07
    dataset: str | None = None  # None = the training dataset's test split


@dataclass
class FinetuneConfig:
    """Fine-tune recipe of ``lightly-simmim evaluate --protocol finetune``.

    Defaults are SimMIM's ViT-B recipe; the CLI's ``--epochs`` etc. override them.
    """

    epochs: int = 100
    warmup_epochs: float = 20.0
    #: Images per device and step; the learning rate scales with it.
    batch_size: int = 128
    #: Learning rate per 512 images.
    base_lr: float = 1.25e-3
    weight_decay: float = 0.05
    #: Layer-wise LR decay, or "auto": 0.65 for ViT / BEiT, 0.9 otherwise.
    layer_decay: float | Literal["auto"] = "auto"
    label_smoothing: float = 0.1
    #: Stochastic depth of the encoder while fine-tuning (set when it is rebuilt).
    drop_path_rate: float = 0.1
    #: Smallest area fraction of the training crop (RandomResizedCrop): 0.08 as on
    #: ImageNet; raise it for small images or a schedule of a few epochs.
    crop_min_scale: float = 0.08


@dataclass
class MethodConfig:
    """``name`` of a ``lightly.methods`` entry point plus that method's options."""

    name: str = "simmim"
    #: The method's own options, checked against its Settings dataclass.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    """A whole run."""

    method: MethodConfig = field(default_factory=MethodConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    seed: int = 0
    #: Run folder: ``output_dir/name``.
    output_dir: str = "runs"
    name: str | None = None


T = TypeVar("T")


def _nearest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"{hint} Valid keys: {', '.join(sorted(valid))}."


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Checks ``value`` against the annotation ``tp``; converts int -> float."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"'{where}' = {value!r} is not a {_type_name(tp)}.")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"'{where}' must be null.")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        if isinstance(value, int | float) and str(value) in choices:
            return str(value)  # precision: 32 written as a number
        raise ConfigError(
            f"'{where}' = {value!r} is not one of {', '.join(map(repr, choices))}."
        )
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}.")
        return from_dict(tp, value, prefix=f"{where}.")  # type: ignore[arg-type]
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"'{where}' must be a list, got {value!r}.")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}.")
        return dict(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads "1e-4" (no dot) as a string; accept what float() accepts.
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    raise ConfigError(
        f"'{where}' = {value!r} must be of type {_type_name(tp)}, "
        f"got {type(value).__name__}."
    )


def from_dict(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    """Builds dataclass ``cls`` from a mapping, strictly.

    Args:
        cls: A dataclass type.
        values: Keys and values; missing keys take the dataclass defaults.
        prefix: Dotted path of this section, for messages.

    Returns:
        The dataclass instance.

    Raises:
        ConfigError: On an unknown key (naming the nearest valid one) or a value of
            the wrong type.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"Unknown config key '{prefix}{key}'.{_nearest(key, names)}"
            )
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    # YAML scalars: numbers, true/false, null, [lists] and {maps} work on the CLI.
    return yaml.safe_load(text)


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``section.key=value`` overrides to a nested dict (in place).

    Args:
        values: The config as nested dicts.
        overrides: Strings like ``optim.base_lr=2e-4`` or ``method.mask_ratio=0.5``
            (values parsed as YAML).

    Returns:
        ``values``.

    Raises:
        ConfigError: If an override has no ``=``.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"Override '{item}' must look like section.key=value, e.g. "
                f"optim.base_lr=2e-4."
            )
        parts = key.strip().split(".")
        node = values
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"Override '{item}': '{part}' is not a section.")
            node = child
        node[parts[-1]] = _parse_value(text)
    return values


def _method_options(values: dict[str, Any]) -> dict[str, Any]:
    """Moves every key of the ``method`` section except ``name`` into ``options``."""
    section = values.get("method")
    if isinstance(section, str):
        return {"name": section, "options": {}}
    if section is None:
        return {"name": MethodConfig.name, "options": {}}
    if not isinstance(section, Mapping):
        raise ConfigError(f"'method' must be a name or a mapping, got {section!r}.")
    options = {k: v for k, v in section.items() if k not in ("name", "options")}
    options.update(section.get("options") or {})
    return {"name": section.get("name", MethodConfig.name), "options": options}


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
        ConfigError: On a missing file, invalid YAML, unknown keys or wrong types.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values = read_yaml(resolve_config_path(path))
    apply_overrides(values, overrides)
    values["method"] = _method_options(values)
    return from_dict(Config, values)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parses a YAML mapping with ``yaml.safe_load``."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
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


def to_dict(config: Config) -> dict[str, Any]:
    """The config as plain nested dicts, the method options inlined into ``method``."""
    values = dataclasses.asdict(config)
    method = values.pop("method")
    values = {"method": {"name": method["name"], **method["options"]}, **values}
    return values


def dump_config(config: Config, path: str | Path) -> Path:
    """Writes the resolved config as YAML (atomically) and returns the path."""
    text = yaml.safe_dump(to_dict(config), sort_keys=False)
    return atomic_write(path, text.encode("utf-8"))
