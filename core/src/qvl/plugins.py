"""Plugin discovery: built-in plugins, the ``qvl`` entry-point group, load errors, tracing."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import time
import traceback
from typing import Any

import attrs
import pluggy

from qvl import __version__, hookspec
from qvl.errors import UserError
from qvl.task import Task

ENTRY_POINT_GROUP = "qvl"
LOAD_PLUGINS_ENV = "QVL_LOAD_PLUGINS"
TRACE_ENV = "QVL_TRACE_HOOKS"

# Registered first, exactly as third-party plugins are, so that any of them can be overridden.
DEFAULT_PLUGINS = {
    "qvl.backbone": "qvl.backbone.hooks",
    "qvl.validation": "qvl.runner.validation",
    "qvl.colors": "qvl.builtin.colors",
}


@attrs.define
class PluginInfo:
    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False


@attrs.define
class LoadError:
    name: str
    error: str
    detail: str = ""


@attrs.define
class PluginHost:
    """The plugin manager plus what the core learnt while loading plugins."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo]
    errors: list[LoadError]
    tasks: dict[str, Task]

    def task(self, name: str) -> Task:
        if name not in self.tasks:
            known = ", ".join(sorted(self.tasks)) or "none"
            hint = ""
            if self.errors:
                hint = " (plugins that failed to load: " + ", ".join(e.name for e in self.errors) + ")"
            raise UnknownTaskError(f"unknown task {name!r}; installed tasks: {known}{hint}")
        return self.tasks[name]

    def hook_names(self, plugin_name: str) -> list[str]:
        plugin = self.pm.get_plugin(plugin_name)
        if plugin is None:
            return []
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])

    def call(self, hook_name: str, *, required: bool = True, **kwargs: Any) -> Any:
        """Call a task-level firstresult hook; a required hook nobody answered is an error."""
        return call_hook(self.pm.hook, hook_name, required=required, **kwargs)


def call_hook(relay: pluggy.HookRelay, hook_name: str, *, required: bool = True, **kwargs: Any) -> Any:
    """Call a task-level firstresult hook through ``relay``; a required hook nobody answered is an error."""
    result = getattr(relay, hook_name)(**kwargs)
    if result is None and required:
        task = kwargs.get("task")
        owner = f" (owned by plugin {task.plugin!r})" if task is not None else ""
        raise MissingHookError(
            f"no plugin implements hook {hook_name!r} for task "
            f"{getattr(task, 'name', '?')!r}{owner}; see the plugin guide in the README"
        )
    return result


class UnknownTaskError(UserError, LookupError):
    pass


class MissingHookError(UserError, RuntimeError):
    pass


def _selected() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        # The same distribution found twice on sys.path (editable + site) must not register twice.
        key = (ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    return unique


def _install_tracing(pm: pluggy.PluginManager) -> None:
    started: list[float] = []

    def before(hook_name: str, hook_impls: list, kwargs: dict) -> None:
        task = kwargs.get("task")
        label = f" task={task.name}" if isinstance(task, Task) else ""
        impls = ", ".join(impl.plugin_name for impl in reversed(hook_impls))
        print(f"[qvl hook] {hook_name}{label} -> {impls}", file=sys.stderr)
        started.append(time.perf_counter())

    def after(outcome: Any, hook_name: str, hook_impls: list, kwargs: dict) -> None:
        elapsed = time.perf_counter() - started.pop() if started else 0.0
        exc = outcome.exception
        status = f"raised {type(exc).__name__}" if exc else f"returned {type(outcome.get_result()).__name__}"
        print(f"[qvl hook] {hook_name} {status} in {elapsed * 1000:.1f} ms", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


def _collect_tasks(pm: pluggy.PluginManager, errors: list[LoadError]) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    # Each implementation is called on its own, in registration order (built-ins first), so a task
    # knows its owner, the first registration of a name wins, and one plugin's failure does not
    # hide the tasks of the others.
    for impl in pm.hook.register_tasks.get_hookimpls():
        owner = impl.plugin_name

        def register(task: Task, _owner: str = owner) -> None:
            if not isinstance(task, Task):
                raise TypeError(f"register() expects a qvl.Task, got {type(task).__name__}")
            if task.name in tasks:
                raise ValueError(
                    f"task {task.name!r} is already registered by plugin {tasks[task.name].plugin!r}"
                )
            tasks[task.name] = attrs.evolve(task, plugin=_owner)

        try:
            impl.function(register=register)
        except Exception as exc:  # a broken plugin is reported, the rest keep working
            errors.append(LoadError(owner, f"register_tasks failed: {exc}", traceback.format_exc()))
    return tasks


def load_plugins() -> PluginHost:
    """Build the plugin manager: hook specs, built-in plugins, then installed entry points."""
    pm = pluggy.PluginManager("qvl")
    pm.add_hookspecs(hookspec)
    plugins: list[PluginInfo] = []
    errors: list[LoadError] = []

    for name, module_name in DEFAULT_PLUGINS.items():
        module = importlib.import_module(module_name)
        factory = getattr(module, "plugin", None)  # a module may hand over a plugin object instead
        pm.register(factory(pm.hook) if callable(factory) else module, name=name)
        plugins.append(PluginInfo(name=name, module=module_name, distribution="qvl-core", builtin=True))

    wanted = _selected()
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else None
        if wanted is not None and ep.name not in wanted and (dist or "") not in wanted:
            continue
        if pm.has_plugin(ep.name):
            continue
        module = None
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:
            # pluggy registers hook by hook: a signature error leaves half a plugin behind
            if module is not None and pm.is_registered(module):
                pm.unregister(module)
            errors.append(LoadError(ep.name, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            continue
        plugins.append(
            PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist,
                version=ep.dist.version if ep.dist is not None else None,
            )
        )

    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            # A misspelled hook name: report it against its plugin and drop that plugin only.
            name = pm.get_name(exc.plugin) or str(exc.plugin)
            pm.unregister(exc.plugin)
            plugins[:] = [p for p in plugins if p.name != name]
            errors.append(LoadError(name, f"unknown hook: {exc}"))

    if os.environ.get(TRACE_ENV, "") not in ("", "0"):
        _install_tracing(pm)

    tasks = _collect_tasks(pm, errors)
    return PluginHost(pm=pm, plugins=plugins, errors=errors, tasks=tasks)


def describe(host: PluginHost) -> dict[str, Any]:
    """What ``qvl plugins`` prints."""
    by_plugin: dict[str, list[str]] = {}
    for task in host.tasks.values():
        by_plugin.setdefault(task.plugin, []).append(task.name)
    return {
        "hook_api_version": hookspec.HOOK_API_VERSION,
        "plugins": [
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version or __version__,
                "builtin": info.builtin,
                "hooks": host.hook_names(info.name),
                "tasks": sorted(by_plugin.get(info.name, [])),
            }
            for info in host.plugins
        ],
        "errors": [{"name": e.name, "error": e.error} for e in host.errors],
    }

