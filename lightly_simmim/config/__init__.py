"""The typed schema of the YAML run configs: defaults < YAML < ``--set`` overrides.

Only this package and the CLI know the YAML; components take explicit arguments (the
settings dataclasses the schema reuses as sections). Every key is checked: a misspelt
or unknown key is an error naming the nearest valid key, a value of the wrong type is
an error naming the key and the expected type, and a value out of range names the key
and the allowed range. The ``method`` section holds ``name`` (plus ``head``, ``loss``
and ``transform`` entry point names) and the options of that method, which are checked
against the method's own ``Settings`` dataclass (see :mod:`lightly_simmim.methods`).

- :mod:`.schema`: the sections (:class:`Config` and its parts);
- :mod:`.parse`: strict reading of values (:func:`from_dict`, overrides);
- :mod:`.files`: YAML files, shipped configs, the resolved dump.
"""

from lightly_simmim.config.files import (
    config_from_values,
    dump_config,
    load_config,
    read_yaml,
    resolve_config_path,
    shipped_configs,
    to_dict,
)
from lightly_simmim.config.parse import (
    ConfigError,
    apply_overrides,
    from_dict,
    method_section,
)
from lightly_simmim.config.schema import (
    Config,
    DataConfig,
    EncoderConfig,
    EvalConfig,
    FinetuneConfig,
    MethodConfig,
    OptimConfig,
    ScheduleConfig,
    TrainerConfig,
)

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EncoderConfig",
    "EvalConfig",
    "FinetuneConfig",
    "MethodConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainerConfig",
    "apply_overrides",
    "config_from_values",
    "dump_config",
    "from_dict",
    "load_config",
    "method_section",
    "read_yaml",
    "resolve_config_path",
    "shipped_configs",
    "to_dict",
]
