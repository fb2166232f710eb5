"""Config layers to a :class:`RunConfig`: TOML files, ``--set`` overrides, merging, and back to TOML.

Layers, later wins: the core's defaults, the task's ``defaults``, each ``--config`` file, each
``--set key.path=value``. The ``[task]`` table is structured into the task's own config class.
"""

from __future__ import annotations

import datetime
import sys
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from qvl.config.conversion import converter
from qvl.config.messages import ConfigError, _flatten, _render, _Source
from qvl.config.schema import RunConfig

if typing.TYPE_CHECKING:
    from qvl.task import Task


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


def _unset_paths(value: Any, default: Any, prefix: str = "") -> list[str]:
    """The dotted paths that are None in ``value`` and not None in ``default`` (walked alongside)."""
    if not isinstance(value, dict):
        return []
    found = []
    for key, item in value.items():
        item_default = default.get(key) if isinstance(default, dict) else None
        if item is None:
            if item_default is not None:
                found.append(f"{prefix}{key}")
        else:
            found.extend(_unset_paths(item, item_default, f"{prefix}{key}."))
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



def to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain data for TOML. TOML has no null: None values are left out and listed under ``unset``
    where the default is not None, so that reading the file back gives the same config."""
    raw = converter.unstructure(config)
    raw["task"] = converter.unstructure(config.task) if config.task is not None else {}
    defaults = converter.unstructure(RunConfig())
    defaults["task"] = converter.unstructure(type(config.task)()) if config.task is not None else {}
    unset = _unset_paths(raw, defaults)
    result = _drop_none(raw)
    if unset:
        result[UNSET_KEY] = unset
    return result


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def to_toml(config: RunConfig) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(config))
