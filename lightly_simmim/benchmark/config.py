"""The schema of a benchmark YAML: one base run config, the methods, the protocols.

A benchmark file looks like::

    name: fashion_mnist_cpu
    output_dir: benchmarks/results/fashion_mnist_cpu
    base:                  # a run config (the `pretrain` schema), shared by all
      encoder: {name: vit_tiny_patch16_224, kwargs: {...}}
      data: {...}
      trainer: {epochs: 1, ...}
      finetune: {epochs: 1, ...}      # the fine-tune protocol's recipe
    methods:               # row label -> sections merged over `base`
      simmim: {method: {name: simmim, mask_patch_size: 8}}
      mae: {method: {name: mae}}                # method name = the label
      byol: {optim: {base_lr: 1.0e-3}, seeds: [0]}  # this row: one seed only
    protocols: [knn, linear, finetune, layers]   # layers: every block probed
    linear: {epochs: 10}   # the linear probe (lightly_simmim.evaluation.LinearRecipe)
    seeds: [0, 1]          # every row pretrained and evaluated once per seed
    baselines:
      from_scratch: true   # the encoder fine-tuned from random init (+ its kNN/linear)
      raw_pixels: true     # kNN on the normalised pixels
      single_token: simmim # SimMIM with one-token masks at ratio 0.75, from this row

With ``seeds``, each row is one run per seed (``runs/<label>-seed<N>``, the run
config's ``seed`` set to N, which seeds its evaluations too) and every cell of the
table is the mean and standard deviation over them; a row's own ``seeds`` key
replaces the list for that row (a slow baseline at one seed). Without ``seeds``,
each row is one run at the run config's ``seed`` (``runs/<label>``).

Every key is checked as strictly as in run configs (a misspelt key names the nearest
valid one), every method's run config is resolved and its method looked up through
the ``lightly.methods`` entry points before anything trains, so a third-party method
takes part by name and a typo fails in a second rather than after an hour.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lightly_simmim.build import method_settings
from lightly_simmim.config import (
    Config,
    ConfigError,
    apply_overrides,
    from_dict,
    method_section,
    read_yaml,
)
from lightly_simmim.evaluation.protocol import PROTOCOLS, Protocol
from lightly_simmim.evaluation.recipes import LinearRecipe
from lightly_simmim.evaluation.results import JsonDict

__all__ = [
    "PROTOCOLS",
    "Baselines",
    "BenchmarkConfig",
    "SeededRun",
    "load_benchmark_config",
    "method_configs",
    "seeded_runs",
]


@dataclass
class Baselines:
    """The reference rows of the table."""

    #: The encoder from random init: fine-tuned with the same recipe (what
    #: pretraining buys), plus kNN / linear on its untrained features.
    from_scratch: bool = True
    #: kNN on the normalised, flattened pixels (no encoder at all).
    raw_pixels: bool = True
    #: Label of a SimMIM row to ablate: the same run with masks of single model
    #: patches (``mask_patch_size`` = the encoder's patch size) at
    #: ``single_token_mask_ratio``, as in lightly's simplified SimMIM example.
    #: None = no ablation row; the default ablates the row labelled ``simmim`` if
    #: there is one.
    single_token: str | None = "simmim"
    single_token_mask_ratio: float = 0.75


@dataclass
class BenchmarkConfig:
    """A whole benchmark (see the module docstring for the YAML)."""

    #: The run config every method starts from (sections of the pretrain schema).
    base: JsonDict = field(default_factory=dict)
    #: Row label -> sections merged over ``base`` (``method.name`` defaults to the
    #: label). Labels name the run folders, so they must be plain names.
    methods: JsonDict = field(default_factory=dict)
    protocols: list[Protocol] = field(default_factory=lambda: list(PROTOCOLS))
    #: The linear probe; the fine-tune recipe is ``base.finetune``.
    linear: LinearRecipe = field(default_factory=LinearRecipe)
    baselines: Baselines = field(default_factory=Baselines)
    name: str = "benchmark"
    #: Results, tables and plots go here; every run folder is ``output_dir/runs/``.
    output_dir: str = "benchmarks/results"
    #: One run of every row per seed (None: one run at ``base.seed``); see the
    #: module docstring.
    seeds: list[int] | None = None


@dataclass(frozen=True)
class SeededRun:
    """One run of a table row: its label, its seed and its run config."""

    label: str
    #: None: the benchmark has no ``seeds`` (one run, at the config's own seed).
    seed: int | None
    config: Config

    @property
    def name(self) -> str:
        """The run's folder name: the label, with ``-seed<N>`` under ``seeds``."""
        return self.label if self.seed is None else f"{self.label}-seed{self.seed}"


def _merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> JsonDict:
    """``base`` with ``update`` merged in (mappings merge; other values replace)."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _check_label(label: str) -> None:
    if not label or Path(label).name != label or label in {".", ".."}:
        raise ConfigError(
            f"Method label {label!r} must be a plain name (it names a run folder)."
        )


def _check_seeds(seeds: object, key: str) -> None:
    if seeds is None:
        return
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(type(seed) is int and seed >= 0 for seed in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(
            f"{key} must be a non-empty list of distinct integers >= 0 (e.g. [0, 1]), "
            f"got {seeds!r}."
        )


def _row_seeds(label: str, sections: Mapping[str, Any]) -> tuple[JsonDict, Any]:
    """(the row's config sections, its own ``seeds`` or None)."""
    sections = dict(sections)
    seeds = sections.pop("seeds", None)
    _check_seeds(seeds, f"methods.{label}.seeds")
    return sections, seeds


def load_benchmark_config(
    path: str | Path, overrides: Sequence[str] = ()
) -> BenchmarkConfig:
    """Reads a benchmark YAML, applies ``section.key=value`` overrides, checks it.

    Overrides address the benchmark file, so a run setting shared by every method
    is ``base.data.root=/data``, and one method's is ``methods.mae.method.mask_ratio
    =0.5``.

    Raises:
        ConfigError: A missing file, unknown key, wrong type, no methods, or a
            method config that does not resolve (see :func:`method_configs`).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Benchmark config {str(path)!r} does not exist. The repository's are in "
            "benchmarks/configs/ (fashion_mnist_smoke.yaml, fashion_mnist_cpu.yaml, "
            "...)."
        )
    values = apply_overrides(read_yaml(path), overrides)
    config = from_dict(BenchmarkConfig, values)
    if not config.methods:
        raise ConfigError(f"{path}: 'methods' lists no method to benchmark.")
    if not config.protocols:
        raise ConfigError(
            f"protocols is empty: the benchmark would pretrain every row and measure "
            f"nothing; list some of {list(PROTOCOLS)}."
        )
    unknown = set(config.protocols) - set(PROTOCOLS)
    if unknown:  # from_dict checks Literal items; this is a second guard.
        raise ConfigError(f"Unknown protocols {sorted(unknown)}.")
    _check_seeds(config.seeds, "seeds")
    method_configs(config)  # every run config resolves now, not after an hour
    single = config.baselines.single_token
    if single is not None and single not in config.methods:
        if "single_token" not in (values.get("baselines") or {}):
            # The default names the row "simmim"; without one there is no ablation.
            config.baselines.single_token = None
        else:
            raise ConfigError(
                f"baselines.single_token = {single!r} is not a row of 'methods' "
                f"({', '.join(config.methods)}); name the SimMIM row to ablate, or "
                "null."
            )
    return config


def method_configs(benchmark: BenchmarkConfig) -> dict[str, Config]:
    """Row label -> the checked run config of that method.

    Each is ``base`` merged with the row's sections, its ``name`` the label and its
    ``output_dir`` ``<benchmark output_dir>/runs``.

    Raises:
        ConfigError: A row is not a mapping, its label is not a plain name, or its
            merged config is invalid (method options included).
        UnknownComponentError: A method is not a ``lightly.methods`` entry point.
    """
    configs = {}
    for label, sections in benchmark.methods.items():
        _check_label(label)
        if sections is None:
            sections = {}
        if not isinstance(sections, Mapping):
            raise ConfigError(
                f"'methods.{label}' must be a mapping of config sections, got "
                f"{sections!r}."
            )
        sections, _ = _row_seeds(label, sections)
        values = _merge(benchmark.base, sections)
        method = values.get("method")
        if method is None or (isinstance(method, Mapping) and "name" not in method):
            values["method"] = {"name": label, **(method or {})}
        values["method"] = method_section(values["method"])
        for key in ("name", "output_dir"):
            if key in values:
                raise ConfigError(
                    f"'methods.{label}.{key}' / 'base.{key}' is set by the benchmark "
                    "(run folders are <output_dir>/runs/<label>); remove it."
                )
        try:
            config = from_dict(Config, values)
            # The method by its entry point name, and its options.
            method_settings(config)
        except ConfigError as error:
            raise ConfigError(f"methods.{label}: {error}") from error
        configs[label] = replace(
            config, name=label, output_dir=str(Path(benchmark.output_dir) / "runs")
        )
    return configs


def seeded_runs(
    benchmark: BenchmarkConfig, label: str, config: Config
) -> list[SeededRun]:
    """The runs of row ``label`` (``config``: its run config): one per seed.

    The row's own ``methods.<label>.seeds`` if it has one, else the benchmark's
    ``seeds``; without either, one run at ``config.seed`` named ``label``.
    """
    sections = benchmark.methods.get(label)
    own = None
    if isinstance(sections, Mapping):
        own = _row_seeds(label, sections)[1]
    seeds = own if own is not None else benchmark.seeds
    if seeds is None:
        return [SeededRun(label, None, config)]
    runs = []
    for seed in seeds:
        run = SeededRun(label, seed, config)
        runs.append(replace(run, config=replace(config, name=run.name, seed=seed)))
    return runs
