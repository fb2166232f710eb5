"""Run configuration: attrs classes, TOML files and ``--set`` overrides, errors a person can read.

Layers, later wins: the core's defaults, the task's ``defaults``, each ``--config`` file, each
``--set key.path=value``. The ``[task]`` table is structured into the task's own config class.
"""

from __future__ import annotations

import datetime
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from qvl.errors import UserError

if typing.TYPE_CHECKING:
    from qvl.task import Task


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"'{attribute.name}' must be > 0, got {value!r}")


def non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value < 0:
        raise ValueError(f"'{attribute.name}' must be >= 0, got {value!r}")


def model_image_size(instance: Any, attribute: attrs.Attribute, value: list[int]) -> None:
    """``[width, height]`` the model sees: multiples of 32 (Qwen-VL's 2x2-merged patches of 14 or 16
    pixels come out whole after qwen-vl-utils rounds), at least 32."""
    if len(value) != 2 or any(v < 32 or v % 32 for v in value):
        raise ValueError(f"'{attribute.name}' must be [width, height], multiples of 32, at least 32; got {value}")


def fraction(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"'{attribute.name}' must be in [0, 1), got {value!r}")


def _workers(instance: Any, attribute: attrs.Attribute, value: int | str) -> None:
    if value != "auto":
        non_negative(instance, attribute, value)


@attrs.define
class LoraConfig:
    r: int = attrs.field(default=16, validator=positive)
    alpha: int = attrs.field(default=32, validator=positive)
    dropout: float = attrs.field(default=0.05, validator=fraction)
    target_modules: list[str] = attrs.field(
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    bias: Literal["none", "all", "lora_only"] = "none"
    modules_to_save: list[str] = attrs.field(factory=list)
    # tokens (by their text) whose embedding rows train beside the adapters: the special tokens a
    # task adds in prepare_backbone (peft's trainable_token_indices; cheaper than modules_to_save,
    # which trains a copy of the whole embedding)
    trainable_tokens: list[str] = attrs.field(factory=list)


@attrs.define
class QuantizationConfig:
    """bitsandbytes 4-bit settings, used when ``finetune = "qlora"`` (or ``quantize = true``)."""

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


@attrs.define
class BackboneConfig:
    """Which Qwen-VL model to load and how to train it.

    ``name``: ``embedded:qwen3-vl-tiny`` / ``embedded:qwen2.5-vl-tiny`` (built locally, no
    download), ``preset:qwen3-vl-2b`` etc. (real shapes, random weights, for benchmarks), a hub id
    such as ``Qwen/Qwen3-VL-2B-Instruct``, or a local directory.
    """

    name: str = "embedded:qwen3-vl-tiny"
    finetune: Literal["full", "lora", "qlora", "frozen"] = "lora"
    quantize: bool = False
    adapter: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    lora: LoraConfig = attrs.field(factory=LoraConfig)
    quantization: QuantizationConfig = attrs.field(factory=QuantizationConfig)
    freeze_vision: bool = False
    freeze_embeddings: bool = False  # full fine-tune: keep the token embedding (and a tied LM head) fixed
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    revision: str | None = None


@attrs.define
class TrainConfig:
    steps: int = attrs.field(default=100, validator=positive)
    epochs: int | None = attrs.field(default=None, validator=positive)  # when set, replaces steps
    batch_size: int = attrs.field(default=8, validator=positive)
    grad_accum: int = attrs.field(default=1, validator=positive)
    lr: float = attrs.field(default=2e-4, validator=positive)
    weight_decay: float = attrs.field(default=0.0, validator=non_negative)
    # transformers' get_scheduler names
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts",
                       "polynomial"] = "cosine"
    warmup_steps: int = attrs.field(default=10, validator=non_negative)
    warmup_ratio: float | None = attrs.field(default=None, validator=attrs.validators.optional(fraction))
    max_grad_norm: float = attrs.field(default=1.0, validator=non_negative)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    log_every: int = attrs.field(default=10, validator=positive)
    save_every: int = attrs.field(default=0, validator=non_negative)
    keep_checkpoints: int = attrs.field(default=2, validator=positive)
    # tasks that support it read decoded, resized training samples from qvl.prepared's cache
    prepared_cache: bool = True
    # DataLoader worker processes (persistent, prefetching); "auto": measured best for this machine
    num_workers: int | Literal["auto"] = attrs.field(default="auto", validator=_workers)
    ddp_find_unused_parameters: bool = False
    # validation during training (0: off); the best checkpoint is kept as checkpoints/best
    eval_every: int = attrs.field(default=0, validator=non_negative)
    eval_split: str = "val"
    eval_samples: int = attrs.field(default=64, validator=positive)
    best_metric: str = "val/loss"
    best_mode: Literal["auto", "min", "max"] = "auto"  # auto: min for losses and errors, else max
    patience: int = attrs.field(default=0, validator=non_negative)  # evaluations without improvement; 0: off


@attrs.define
class EvalConfig:
    split: str = "val"
    batch_size: int = attrs.field(default=8, validator=positive)
    max_samples: int | None = attrs.field(default=None, validator=positive)
    save_vis: bool = False  # tasks that draw their metrics (curves, confusion matrices) do so


@attrs.define
class PredictConfig:
    input: str | None = None
    split: str = "test"
    batch_size: int = attrs.field(default=8, validator=positive)
    max_samples: int | None = attrs.field(default=None, validator=positive)
    save_vis: bool = False


@attrs.define
class RunConfig:
    """Everything one run needs. ``task`` holds the task's own config instance."""

    task: Any = None
    task_name: str = ""
    seed: int = 0
    output_dir: str = "runs"
    run_name: str | None = None
    backbone: BackboneConfig = attrs.field(factory=BackboneConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    eval: EvalConfig = attrs.field(factory=EvalConfig)
    predict: PredictConfig = attrs.field(factory=PredictConfig)


class ConfigError(UserError, ValueError):
    """Bad configuration; ``str()`` is meant for a person, one problem a line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# ---------------------------------------------------------------------------------------------
# Strict structuring: cattrs by default turns "x" into ["x"] and 1.5 into 1; a config must not.


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    return getattr(tp, "__name__", str(tp))


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)

    def struct_int(value: Any, _: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        return value

    def struct_float(value: Any, _: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)

    def struct_str(value: Any, _: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value

    def struct_bool(value: Any, _: Any) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value

    conv.register_structure_hook(int, struct_int)
    conv.register_structure_hook(float, struct_float)
    conv.register_structure_hook(str, struct_str)
    conv.register_structure_hook(bool, struct_bool)
    conv.register_structure_hook(Any, lambda value, _: value)

    def is_list(tp: Any) -> bool:
        return typing.get_origin(tp) is list

    def struct_list(value: Any, tp: Any) -> list:
        if not isinstance(value, list):
            raise TypeError(f"expected {_type_name(tp)}, got {value!r}")
        (item_type,) = typing.get_args(tp) or (Any,)
        errors, items = [], []
        for index, item in enumerate(value):
            try:
                items.append(conv.structure(item, item_type))
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), _IndexNote(index)]
                errors.append(exc)
        if errors:
            raise IterableValidationError("list items", errors, tp)
        return items

    conv.register_structure_hook_func(is_list, struct_list)

    def is_literal(tp: Any) -> bool:
        return typing.get_origin(tp) is Literal

    def struct_literal(value: Any, tp: Any) -> Any:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise ValueError(f"expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
        return value

    conv.register_structure_hook_func(is_literal, struct_literal)

    def is_int_or_choice(tp: Any) -> bool:
        args = typing.get_args(tp)
        return (typing.get_origin(tp) in (typing.Union, types.UnionType) and int in args
                and all(a is int or typing.get_origin(a) is Literal for a in args))

    def struct_int_or_choice(value: Any, tp: Any) -> Any:
        choices = [c for a in typing.get_args(tp) if a is not int for c in typing.get_args(a)]
        if value in choices or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise ValueError(f"expected an integer or one of {', '.join(repr(c) for c in choices)}, got {value!r}")

    conv.register_structure_hook_func(is_int_or_choice, struct_int_or_choice)
    return conv


class _IndexNote(str):
    def __new__(cls, index: int) -> _IndexNote:
        note = super().__new__(cls, f"list item {index}")
        note.index = index
        return note


converter = _make_converter()

_ATTRS_MESSAGE = re.compile(r"^'(?P<name>\w+)' (?P<rest>.*)$", re.S)


def _flatten(exc: BaseException, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
    """(key path, message) pairs from cattrs' nested exception groups."""
    if isinstance(exc, ForbiddenExtraKeysError):
        return [(path + (key,), "unknown key") for key in sorted(exc.extra_fields)]
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        found = []
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                if isinstance(note, (_IndexNote, IterableValidationNote)):
                    sub_path = path + (f"[{note.index}]",)
                elif isinstance(note, AttributeValidationNote):
                    sub_path = path + (note.name,)
            found.extend(_flatten(sub, sub_path))
        return found
    message = str(exc)
    match = _ATTRS_MESSAGE.match(message)
    if isinstance(exc, ValueError) and match:  # an attrs validator: name the attribute
        return [(path + (match["name"],), match["rest"])]
    if isinstance(exc, KeyError):
        return [(path + (str(exc.args[0]),), "required key is missing")]
    return [(path, message)]


# ---------------------------------------------------------------------------------------------
# Sources: where each key came from, to point at the file and line in errors.


@attrs.define
class _Source:
    label: str
    text: str | None = None

    def where(self, dotted: str) -> str:
        line = _find_line(self.text, dotted) if self.text is not None else None
        return f"{self.label}, line {line}" if line else self.label


_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")


def _find_line(text: str, dotted: str) -> int | None:
    """Best-effort line of a dotted key in a TOML text (tomllib keeps no positions)."""
    table = ""
    header_line = None
    for number, line in enumerate(text.splitlines(), start=1):
        table_match = _TABLE.match(line)
        if table_match:
            table = table_match.group(1).replace('"', "").replace(" ", "")
            if table == dotted:
                header_line = number
            continue
        key_match = _KEY.match(line)
        if key_match:
            key = key_match.group(1).replace('"', "").replace("'", "").replace(" ", "")
            full = f"{table}.{key}" if table else key
            if full == dotted:
                return number
    return header_line


def _merge(into: dict, new: Mapping, sources: dict[str, _Source], source: _Source, prefix: str = "") -> None:
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value, sources, source, dotted + ".")
        elif isinstance(value, Mapping):
            into[key] = {}
            _merge(into[key], value, sources, source, dotted + ".")
        else:
            into[key] = value
        sources[dotted] = source


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=2e-4`` -> (["train", "lr"], 0.0002); values are TOML, bare words are strings."""
    if "=" not in text:
        raise ConfigError([f"--set {text!r}: expected KEY.PATH=VALUE, for example train.lr=2e-4"])
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError([f"--set {text!r}: the key {key!r} is not a dotted key path"])
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if isinstance(value, (datetime.date, datetime.time)):  # run_name=2024-06-01 is a name, not a date
        value = raw.strip()
    return key.split("."), value


def read_toml(path: Path) -> tuple[dict, str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file ({exc.strerror})"]) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def load_config(
    task: Task,
    files: Iterable[Path | str] = (),
    overrides: Iterable[str] = (),
    base: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Build the effective :class:`RunConfig` of ``task``; raises :class:`ConfigError`."""
    # Start from every default, so that a table given later (a file, --set a.b.c=X) merges into a
    # dict-valued default instead of replacing it.
    data: dict[str, Any] = class_defaults(task)
    sources: dict[str, _Source] = {}
    _merge(data, task.defaults, sources, _Source(f"defaults of task {task.name!r}"))
    if base:
        base = dict(base)
        unset = base.pop(UNSET_KEY, [])
        _merge(data, base, sources, _Source("saved run config"))
        for dotted in unset if isinstance(unset, list) else []:
            _set_path(data, str(dotted).split("."), None)
    for file in files:
        loaded, text = read_toml(Path(file))
        _merge(data, loaded, sources, _Source(str(file), text))
    for override in overrides:
        keys, value = parse_override(override)
        nested: dict[str, Any] = value
        for key in reversed(keys):
            nested = {key: nested}
        _merge(data, nested, sources, _Source(f"--set {override}"))
    data.pop("task_name", None)
    return structure(task, data, sources)


UNSET_KEY = "unset"  # saved configs list here the keys whose value is None (TOML has no null)


def class_defaults(task: Task) -> dict[str, Any]:
    """The default run config of ``task`` as plain data (its own config class's defaults included)."""
    data = converter.unstructure(RunConfig())
    data["task"] = converter.unstructure(task.config_class())
    data.pop("task_name", None)
    return _drop_none(data)


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        child = data.get(key)
        if not isinstance(child, dict):
            return
        data = child
    data[keys[-1]] = value


def _none_paths(value: Any, prefix: str = "") -> list[str]:
    if not isinstance(value, dict):
        return []
    found = []
    for key, item in value.items():
        if item is None:
            found.append(f"{prefix}{key}")
        else:
            found.extend(_none_paths(item, f"{prefix}{key}."))
    return found


def structure(task: Task, data: dict[str, Any], sources: dict[str, _Source] | None = None) -> RunConfig:
    sources = sources or {}
    data = dict(data)
    task_data = data.pop("task", {})
    problems: list[tuple[tuple[str, ...], str]] = []
    task_config = None
    if not isinstance(task_data, Mapping):
        problems.append((("task",), "expected a table of the task's settings"))
    else:
        try:
            task_config = converter.structure(dict(task_data), task.config_class)
        except Exception as exc:
            problems.extend(_flatten(exc, ("task",)))
    run_config = None
    try:
        run_config = converter.structure(data, RunConfig)
    except Exception as exc:
        problems.extend(_flatten(exc, ()))
    if problems:
        raise ConfigError([_render(path, message, sources) for path, message in problems])
    assert run_config is not None
    return attrs.evolve(run_config, task=task_config, task_name=task.name)


def _render(path: tuple[str, ...], message: str, sources: dict[str, _Source]) -> str:
    dotted = ".".join(path).replace(".[", "[")
    lookup = dotted.split("[")[0]
    source = None
    probe = lookup
    while probe:
        if probe in sources:
            source = sources[probe]
            break
        probe = probe.rpartition(".")[0]
    where = source.where(lookup) + ": " if source else ""
    if message == "unknown key":
        parent, _, leaf = lookup.rpartition(".")
        return f"{where}unknown key {leaf!r} in [{parent}]" if parent else f"{where}unknown key {leaf!r}"
    return f"{where}{dotted}: {message}"


def to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain data for TOML. TOML has no null: None values are left out and listed under ``unset``
    where the default is not None, so that reading the file back gives the same config."""
    raw = converter.unstructure(config)
    raw["task"] = converter.unstructure(config.task) if config.task is not None else {}
    defaults = converter.unstructure(RunConfig())
    defaults["task"] = converter.unstructure(type(config.task)()) if config.task is not None else {}
    unset = [path for path in _none_paths(raw) if _lookup(defaults, path) is not None]
    result = _drop_none(raw)
    if unset:
        result[UNSET_KEY] = unset
    return result


def _lookup(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def to_toml(config: RunConfig) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(config))
