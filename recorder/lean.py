"""What the recorder changes in mitmproxy's own machinery to cost less per request.

Profiles of the recorder under load (py-spy, instruction counts with
bench/recorder.py and bench/live_path.py) showed per-request costs of
mitmproxy itself that a recorder does not need. In the `record` process: hook
dispatch (`HookTable`: each event goes straight to the addons that handle
it), two debug-only checks (`skip_debug_checks`, as `python -O` would), and
three helpers mitmproxy calls dozens of times per request, replaced by
equivalents that do less (`cheaper_lookups`). Under `mitmdump -s
recorder/addon.py` mitmproxy runs as it is; the script module only answers
mitmproxy's per-hook lookups on it cheaply (`missing_hooks`). Each change
keeps the proxy's behaviour.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from mitmproxy import addonmanager, exceptions, flow, hooks, http, optmanager
from mitmproxy.utils import asyncio_utils, strutils

logger = logging.getLogger("mitmproxy.addonmanager")  # where mitmproxy logs addon errors


class HookTable(addonmanager.AddonManager):
    """An `AddonManager` that finds the handlers of each event once, not on every event.

    mitmproxy's manager walks every addon for every event of every exchange (a
    generator, a `getattr` and a context manager per addon), and after each
    flow event triggers an `update` event too, all for the three or four
    addons that handle anything per request. This one calls just those, with
    mitmproxy's error policy (`safecall`: an addon error is logged and the next
    handler runs; `AddonHalt` stops the chain), and triggers `update` only when
    an addon handles it. `record`'s addon set is fixed; any change through
    `add`/`remove`/`clear` drops the table anyway.
    """

    def __init__(self, master: Any) -> None:
        super().__init__(master)  # type: ignore[no-untyped-call]
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    # -- the table ----------------------------------------------------------------

    def _table(self, event: hooks.Hook) -> list[Callable[..., Any]]:
        handlers = self._handlers.get(event.name)
        if handlers is None:
            # _iter_hooks is mitmproxy's own lookup (children, module attributes
            # named like a hook, non-callable handlers), in chain order.
            handlers = [func for top in self.chain for _, func in self._iter_hooks(top, event)]
            self._handlers[event.name] = handlers
        return handlers

    def register(self, addon: Any) -> Any:
        self._handlers.clear()
        return super().register(addon)  # type: ignore[no-untyped-call]

    def add(self, *addons: Any) -> None:
        self._handlers.clear()
        super().add(*addons)  # type: ignore[no-untyped-call]
        self._handlers.clear()

    def remove(self, addon: Any) -> None:
        self._handlers.clear()
        super().remove(addon)  # type: ignore[no-untyped-call]

    def clear(self) -> None:
        self._handlers.clear()
        super().clear()  # type: ignore[no-untyped-call]

    # -- dispatch -----------------------------------------------------------------

    async def trigger_event(self, event: hooks.Hook) -> None:
        handlers = self._table(event)
        if handlers:
            await self._call(handlers, event.args())

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        handlers = self._table(event)
        args = event.args()
        if handlers:
            await self._call(handlers, args)
        if isinstance(args[0], flow.Flow):
            # Looked up by name: building an UpdateHook for every event only to
            # find that nobody handles it costs more than the lookup.
            updaters = self._handlers.get(hooks.UpdateHook.name)
            if updaters is None:
                updaters = self._table(hooks.UpdateHook([args[0]]))
            if updaters:
                await self._call(updaters, [[args[0]]])

    @staticmethod
    async def _call(handlers: list[Callable[..., Any]], args: list[Any]) -> None:
        for func in handlers:
            try:
                result = func(*args)
                # Hooks may be sync or async, as in mitmproxy.
                if result is not None and inspect.isawaitable(result):
                    await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as exc:  # mitmproxy's policy: log, go on with the next addon
                logger.error(f"Addon error: {exc}", exc_info=True)


def _no_check(self: Any) -> None:
    pass


def _task_debug_info(task: Any, *, name: str, client: tuple[Any, ...] | None = None) -> None:
    # What mitmproxy records on a task for its debug views, without the
    # per-task environment lookup that only matters under pytest.
    task.created = time.time()
    task.set_name(name)
    if client:
        task.client = client


def skip_debug_checks() -> list[str]:
    """Turn off mitmproxy's `__debug__`-only per-request checks in this process.

    mitmproxy type-checks every field of every request and response it creates
    (`MessageData.__post_init__`) and looks `PYTEST_CURRENT_TEST` up in the
    environment for every task it creates (several per request), both only
    unless Python runs with `-O`. Only these two are turned off, not the
    assertions of every other library in the process. Returns what was turned
    off (a later mitmproxy that moved them is left alone).
    """
    done = []
    message_data: Any = http.MessageData
    if callable(getattr(message_data, "__post_init__", None)):
        message_data.__post_init__ = _no_check
        done.append("MessageData type checks")
    if callable(getattr(asyncio_utils, "set_task_debug_info", None)):
        asyncio_utils.set_task_debug_info = _task_debug_info
        done.append("task debug info lookups")
    return done


#: Option values mitmproxy may hand out as they are: nothing can change them in place.
_IMMUTABLE = frozenset({str, bytes, int, float, bool, type(None)})
#: Each hook class's field names, in order (what `Hook.args()` returns the values of).
_HOOK_FIELDS: dict[type, tuple[str, ...]] = {}


def _option_current(self: Any) -> Any:
    # mitmproxy deep-copies an option's value on every read (twice while it has
    # its default), so that no caller can change it in place; a string, number
    # or None cannot be changed in place anyway. Others are still copied.
    value = self._default if self.value is optmanager.unset else self.value
    return value if type(value) in _IMMUTABLE else copy.deepcopy(value)


def _hook_args(self: Any) -> list[Any]:
    # mitmproxy asks `dataclasses.fields()` on every call; the fields of a
    # hook class never change.
    names = _HOOK_FIELDS.get(type(self))
    if names is None:
        names = _HOOK_FIELDS[type(self)] = tuple(f.name for f in dataclasses.fields(self))
    return [getattr(self, name) for name in names]


def _headers_get_all(self: Any, name: str | bytes) -> list[str]:
    # mitmproxy's: the name made bytes, then each field's name lowered through
    # two method lookups, then each value decoded; the same, inline.
    if isinstance(name, str):
        key = name.encode("utf-8", "surrogateescape").lower()
    else:
        key = strutils.always_bytes(name, "utf-8", "surrogateescape").lower()
    return [
        value.decode("utf-8", "surrogateescape")
        for field, value in self.fields
        if field.lower() == key
    ]


def _headers_get(self: Any, key: str | bytes, default: Any = None) -> Any:
    # Mapping.get goes through __getitem__, which raises KeyError for every
    # header a message lacks: most lookups, per request.
    values = self.get_all(key)
    return ", ".join(values) if values else default


def _headers_contains(self: Any, key: object) -> bool:
    return bool(self.get_all(key))


def cheaper_lookups() -> list[str]:
    """Faster equivalents of three mitmproxy helpers that run many times per request.

    Reading an option (`ctx.options.x`: mitmproxy deep-copies the value, twice
    while it has its default; about ten reads per request), a hook's arguments
    (`Hook.args()`: `dataclasses.fields()` each time; twice per hook) and a
    header (`Headers.get`, `in`, `get_all`: Mapping's generic versions raise and
    catch KeyError for every header a message lacks; some twenty lookups per
    request). Each returns what mitmproxy's own returns, for every input.
    Returns what was replaced (a later mitmproxy that reshaped one is left alone).
    """
    done = []
    option: Any = optmanager._Option
    if callable(getattr(option, "current", None)) and hasattr(optmanager, "unset"):
        option.current = _option_current
        done.append("option reads")
    hook: Any = hooks.Hook
    if callable(getattr(hook, "args", None)):
        hook.args = _hook_args
        done.append("hook arguments")
    headers: Any = http.Headers
    if callable(getattr(headers, "get_all", None)):
        headers.get_all = _headers_get_all
        headers.get = _headers_get
        headers.__contains__ = _headers_contains
        done.append("header lookups")
    return done


def missing_hooks(namespace: Mapping[str, object]) -> dict[str, None]:
    """`{name: None}` for every mitmproxy hook a script module's `namespace` lacks.

    mitmproxy asks a script's module for every hook of every exchange before
    it goes on to the module's `addons`. A name the module lacks costs CPython
    3.11 two AttributeErrors with formatted messages, a name that is None ("no
    handler", as mitmproxy's lookup reads it) one dictionary lookup, so a
    script declares these (`globals().update(missing_hooks(globals()))`)
    before `addons = [...]`. `add_log` is left out: mitmproxy warns about any
    addon that has it.
    """
    # Hooks register themselves when the module defining them is imported.
    import mitmproxy.addonmanager  # noqa: F401
    import mitmproxy.proxy.layers  # noqa: F401
    import mitmproxy.proxy.server_hooks  # noqa: F401

    return {name: None for name in hooks.all_hooks if name != "add_log" and name not in namespace}


def lighten() -> list[str]:
    """`skip_debug_checks()` and `cheaper_lookups()` for a recorder process; what was done."""
    return [*skip_debug_checks(), *cheaper_lookups()]
