"""Plugin discovery (built-ins, the ``qvl`` entry-point group, load errors, tracing) and dispatch.

Dispatch is by ownership (hook API 4): a task-level hook call reaches the plugin that registered
the task, the plugins that declared ``extend(task)`` in ``register_tasks``, the core's built-in
defaults, and every plugin written against hook API 3 or older (those answer ``None`` for other
tasks themselves, so they keep working unchanged).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from qvl import __version__, hookspec
from qvl.errors import UserError
from qvl.task import Task

ENTRY_POINT_GROUP = "qvl"
LOAD_PLUGINS_ENV = "QVL_LOAD_PLUGINS"
TRACE_ENV = "QVL_TRACE_HOOKS"

# What a plugin module (or plugin object) sets to say which hook API it was written for.
API_ATTRIBUTE = "QVL_HOOK_API"
# Plugins without it predate the attribute: API 3 and older, where every plugin saw every task.
LEGACY_HOOK_API = 3
EVERY_TASK = "*"

# Registered first, exactly as third-party plugins are, so that any of them can be overridden.
DEFAULT_PLUGINS = {
    "qvl.backbone": "qvl.backbone.hooks",
    "qvl.validation": "qvl.runner.validation",
    "qvl.colors": "qvl.builtin.colors",
    "qvl.sft": "qvl.builtin.sft.plugin",
}


@attrs.define
class PluginInfo:
    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    hook_api: int = LEGACY_HOOK_API


@attrs.define
class LoadError:
    name: str
    error: str
    detail: str = ""


class TaskHooks:
    """The hook relay task-level hooks are called through: ``hooks.loss(task=task, ...)``.

    Like ``pm.hook``, but a call whose ``task`` is a :class:`~qvl.task.Task` reaches only the
    plugins entitled to answer for it (see the module docstring); a plugin of hook API 4 never has
    to check ``task.name``. Calls without a task (``register_tasks``) reach every plugin.
    """

    def __init__(self, pm: pluggy.PluginManager):
        self._pm = pm
        # plugin name -> task names it extends; filled while tasks are collected
        self.extensions: dict[str, set[str]] = {}

    def callers_for(self, task: Task) -> list[str]:
        """Names of the plugins a hook call for ``task`` may reach, in registration order."""
        return [name for name, plugin in self._pm.list_name_plugin() if self._reaches(name, plugin, task)]

    def _reaches(self, name: str, plugin: object, task: Task) -> bool:
        if hook_api_of(plugin) <= LEGACY_HOOK_API or name == task.plugin:
            return True
        return bool(self.extensions.get(name, set()) & {task.name, EVERY_TASK})

    def caller(self, hook_name: str, task: Task | None) -> Callable[..., Any]:
        hook = getattr(self._pm.hook, hook_name)
        if not isinstance(task, Task):
            return hook
        left_out = {id(plugin) for name, plugin in self._pm.list_name_plugin() if not self._reaches(name, plugin, task)}
        if not left_out:
            return hook
        # pm.subset_hook_caller does this, but it puts every registered plugin in a set, which fails
        # for unhashable plugin objects (an attrs or dataclass instance); so filter by identity and
        # run the kept implementations through the manager's own executor (wrappers, tracing).
        impls = [impl for impl in hook.get_hookimpls() if id(impl.plugin) not in left_out]
        firstresult = bool(hook.spec and hook.spec.opts.get("firstresult"))

        def call(**kwargs: Any) -> Any:
            return hook._hookexec(hook_name, impls, kwargs, firstresult)

        return call

    def __getattr__(self, hook_name: str) -> Callable[..., Any]:
        if hook_name.startswith("_"):
            raise AttributeError(hook_name)
        getattr(self._pm.hook, hook_name)  # an unknown hook fails here, as on pm.hook

        def call(**kwargs: Any) -> Any:
            return self.caller(hook_name, kwargs.get("task"))(**kwargs)

        call.__name__ = hook_name
        return call


def hook_api_of(plugin: object) -> int:
    """The hook API a plugin declares with ``QVL_HOOK_API`` (3 when it declares none)."""
    return getattr(plugin, API_ATTRIBUTE, LEGACY_HOOK_API)


@attrs.define
class PluginHost:
    """The plugin manager plus what the core learnt while loading plugins."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo]
    errors: list[LoadError]
    tasks: dict[str, Task]
    hooks: TaskHooks

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
        return call_hook(self.hooks, hook_name, required=required, **kwargs)


def call_hook(relay: TaskHooks | pluggy.HookRelay, hook_name: str, *, required: bool = True, **kwargs: Any) -> Any:
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


def _checked_hook_api(name: str, plugin: object) -> int:
    """The plugin's declared hook API; a malformed or too new one is that plugin's load error."""
    api = hook_api_of(plugin)
    if isinstance(api, bool) or not isinstance(api, int) or api < 1:
        raise TypeError(f"{API_ATTRIBUTE} = {api!r}: expected the hook API version as a positive integer")
    if api > hookspec.HOOK_API_VERSION:
        raise PluginApiError(
            f"plugin {name!r} needs qvl hook API {api}, but this qvl-core ({__version__}) provides "
            f"API {hookspec.HOOK_API_VERSION}; upgrade qvl-core (pip install -U qvl-core)"
        )
    return api


class PluginApiError(RuntimeError):
    pass


def _collect_tasks(pm: pluggy.PluginManager, hooks: TaskHooks, errors: list[LoadError]) -> dict[str, Task]:
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

        def extend(task_name: str, _owner: str = owner) -> None:
            if not isinstance(task_name, str) or not task_name:
                raise TypeError(f"extend() expects a task name or {EVERY_TASK!r}, got {task_name!r}")
            hooks.extensions.setdefault(_owner, set()).add(task_name)

        offered = {"register": register, "extend": extend}
        try:
            impl.function(**{arg: offered[arg] for arg in impl.argnames})
        except Exception as exc:  # a broken plugin is reported, the rest keep working
            errors.append(LoadError(owner, f"register_tasks failed: {exc}", traceback.format_exc()))
    return tasks


def load_plugins() -> PluginHost:
    """Build the plugin manager: hook specs, built-in plugins, then installed entry points."""
    pm = pluggy.PluginManager("qvl")
    pm.add_hookspecs(hookspec)
    hooks = TaskHooks(pm)
    plugins: list[PluginInfo] = []
    errors: list[LoadError] = []

    for name, module_name in DEFAULT_PLUGINS.items():
        module = importlib.import_module(module_name)
        factory = getattr(module, "plugin", None)  # a module may hand over a plugin object instead
        plugin = factory(hooks) if callable(factory) else module
        pm.register(plugin, name=name)
        plugins.append(PluginInfo(name=name, module=module_name, distribution="qvl-core", builtin=True,
                                  hook_api=hook_api_of(plugin)))

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
            api = _checked_hook_api(ep.name, module)
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
                hook_api=api,
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

    tasks = _collect_tasks(pm, hooks, errors)
    return PluginHost(pm=pm, plugins=plugins, errors=errors, tasks=tasks, hooks=hooks)


def required_core(distribution: str | None) -> str | None:
    """The ``qvl-core`` requirement a plugin's distribution declares (``"qvl-core<0.2,>=0.1"``), if any."""
    if distribution is None or distribution == "qvl-core":
        return None
    try:
        requirements = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for line in requirements:
        match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*([^;]*)", line)
        if match and re.sub(r"[-_.]+", "-", match[1]).lower() == "qvl-core":
            return "qvl-core" + match[2].strip().strip("()").replace(" ", "")
    return None


def describe(host: PluginHost) -> dict[str, Any]:
    """What ``qvl plugins`` prints: the core's version and hook API, and for each plugin the hook API
    it was written for and the qvl-core versions its distribution requires."""
    by_plugin: dict[str, list[str]] = {}
    for task in host.tasks.values():
        by_plugin.setdefault(task.plugin, []).append(task.name)
    return {
        "core_version": __version__,
        "hook_api_version": hookspec.HOOK_API_VERSION,
        "plugins": [
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version or __version__,
                "builtin": info.builtin,
                "hook_api": info.hook_api,
                "requires_core": required_core(info.distribution),
                "hooks": host.hook_names(info.name),
                "tasks": sorted(by_plugin.get(info.name, [])),
                "extends": sorted(host.hooks.extensions.get(info.name, set())),
            }
            for info in host.plugins
        ],
        "errors": [{"name": e.name, "error": e.error} for e in host.errors],
    }

