"""What the recorder changes in mitmproxy's own machinery to cost less per request.

Profiles of the recorder under load (py-spy, instruction counts with
bench/recorder.py) showed per-request costs of mitmproxy itself that a
recorder does not need. In the `record` process: hook dispatch
(`HookTable`: each event goes straight to the addons that handle it) and two
debug-only checks (`skip_debug_checks`, as `python -O` would). Under
`mitmdump -s recorder/addon.py` mitmproxy runs as it is; the script module
only answers mitmproxy's per-hook lookups on it cheaply (`missing_hooks`).
Each change keeps the proxy's behaviour.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from mitmproxy import addonmanager, exceptions, flow, hooks, http
from mitmproxy.utils import asyncio_utils

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
            update = hooks.UpdateHook([args[0]])
            updaters = self._table(update)
            if updaters:
                await self._call(updaters, update.args())

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
