"""Run configuration: attrs classes, TOML files and ``--set`` overrides, errors a person can read.

Layers, later wins: the core's defaults, the task's ``defaults``, each ``--config`` file, each
``--set key.path=value``. The ``[task]`` table is structured into the task's own config class.

By idea: :mod:`~qvl.config.schema` (the config classes and the validators a task's own config
uses), :mod:`~qvl.config.conversion` (the strict cattrs converter), :mod:`~qvl.config.messages`
(cattrs' errors as one readable line per problem, with file and line), :mod:`~qvl.config.loading`
(TOML files, ``--set`` overrides, merging the layers, and back to TOML). Every name is importable
from ``qvl.config`` itself.
"""

from qvl.config.conversion import converter
from qvl.config.loading import (
    UNSET_KEY,
    class_defaults,
    load_config,
    parse_override,
    read_toml,
    structure,
    to_dict,
    to_toml,
)
from qvl.config.messages import ConfigError
from qvl.config.schema import (
    BackboneConfig,
    EvalConfig,
    LoraConfig,
    PredictConfig,
    QuantizationConfig,
    RunConfig,
    TrainConfig,
    even,
    fraction,
    model_image_size,
    non_negative,
    not_with,
    positive,
)

__all__ = [
    "UNSET_KEY",
    "BackboneConfig",
    "ConfigError",
    "EvalConfig",
    "LoraConfig",
    "PredictConfig",
    "QuantizationConfig",
    "RunConfig",
    "TrainConfig",
    "class_defaults",
    "converter",
    "even",
    "fraction",
    "load_config",
    "model_image_size",
    "non_negative",
    "not_with",
    "parse_override",
    "positive",
    "read_toml",
    "structure",
    "to_dict",
    "to_toml",
]
