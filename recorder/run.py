"""`trafficmirror record`: mitmproxy embedded as a reverse proxy with the recorder.

`mitmdump` loads some thirty addons, and every one of them is asked about every
hook of every exchange; a recorder sidecar needs a handful (`serve()` says
which, and why the others are left out). Per request the embedded proxy also does
less than mitmdump (`recorder.lean`). Two options differ from mitmdump's
defaults so the live path behaves like a plain reverse proxy and the recording
is complete (`RecordConfig.mitmproxy_options`): `keep_host_header` (the app and
the event see the client's Host) and `connection_strategy=lazy` (an upstream
that refuses connections gives the client a 502, and that error is recorded,
instead of a closed connection and no exchange at all). On the first
SIGTERM/SIGINT the proxy drains (`recorder.drain`: no new connections,
exchanges in flight finish or are recorded cut off) before it shuts down and
the recorder flushes; a second signal cuts the drain short.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from mitmproxy import ctx, exceptions, master, options
from mitmproxy.addons import (
    core,
    disable_h2c,
    next_layer,
    proxyserver,
    tlsconfig,
    update_alt_svc,
)

from recorder import reuseport
from recorder.addon import Recorder
from recorder.config import RecordConfig
from recorder.drain import Drainer
from recorder.framing import Http1BodyFraming
from recorder.h2c import PriorKnowledge
from recorder.lean import HookTable, lighten
from recorder.mirror import Mirror
from trafficmirror.plumbing.errors import ConfigError, TrafficMirrorError

logger = logging.getLogger(__name__)


class StartupCheck:
    """Notices when the proxy failed to listen, and stops the master."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.listening: list[str] = []

    def running(self) -> None:
        master_: Any = ctx.master
        server = master_.addons.get("proxyserver")
        # `servers` and its instances are what mitmweb reads too; guarded in
        # case a later mitmproxy reshapes them.
        for instance in getattr(server, "servers", ()):
            if not getattr(instance, "is_running", True):
                exc = getattr(instance, "last_exception", None)
                self.error = str(exc) if exc else "the proxy server did not start"
        if self.error is None:
            try:
                self.listening = [f"{a[0]}:{a[1]}" for a in server.listen_addrs()]
            except Exception:  # noqa: S110 (only used for a log line)
                pass
        else:
            master_.shutdown()


class SignalStop:
    """The signal handler of `serve()`: the first signal drains, then shuts the proxy down;
    the next one cuts the drain short (the flush and the summary still follow)."""

    def __init__(self, proxy: Any, drainer: Drainer, recorder: Recorder) -> None:
        self._proxy = proxy
        self._drainer = drainer
        self._recorder = recorder
        self.task: asyncio.Task[None] | None = None

    def __call__(self) -> None:
        if self.task is None:
            self._drainer.signals_cut_short = True
            self.task = asyncio.get_running_loop().create_task(
                self._stop(time.monotonic() + self._recorder.drain_timeout),
                name="trafficmirror drain",
            )
        else:
            logger.info("trafficmirror recorder: second signal: stopping at once")
            self._drainer.force()

    async def _stop(self, deadline: float) -> None:
        try:
            await self._drainer.drain(deadline)
        finally:
            self._proxy.shutdown()


def _ignore_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # asyncio.run() cancels the connections still open at exit; Python 3.11's
    # stream callback then reports each CancelledError as an error (3.12 does
    # not). Those are the expected end of a shutdown, not failures.
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


async def serve(values: dict[str, Any]) -> Recorder:
    """Run the embedded proxy until SIGINT/SIGTERM, drain, flush; return the recorder.

    By then the summary line was logged; its counts are `Recorder.last_counts`
    (`recorder.accounting.Counts`, which add up across processes).
    """
    # Typed as Any: mitmproxy's Master, AddonManager and OptManager are unannotated.
    opts: Any = options.Options()
    proxy: Any = master.Master(opts)
    # Before any addon is added: the manager Master made is replaced by one
    # that dispatches each hook to its handlers only (see recorder.lean).
    opts.changed.disconnect(proxy.addons._configure_all)
    proxy.addons = HookTable(proxy)
    recorder = Recorder()
    drainer = Drainer(recorder, install_signals=False)
    # record --mirror: the addon that answers every request itself (recorder.mirror).
    mirror = [Mirror(recorder.budget)] if values.get("trafficmirror_mirror") else []
    startup = StartupCheck()
    # The addons, in mitmproxy's order: Core (base options and commands);
    # Proxyserver and NextLayer (listening, protocol detection); PriorKnowledge
    # (HTTP/2 to clear-text clients that start with its preface); TlsConfig (TLS
    # to clients and to an https:// upstream); DisableH2C (strips the h2c
    # upgrades mitmproxy cannot proxy, as mitmdump does); UpdateAltSvc (keeps
    # Alt-Svc pointing at the proxy, as mitmdump's reverse mode does); then
    # ours (the Drainer before the Recorder: it marks responses during a stop
    # and drains before the Recorder flushes). Left out on purpose:
    # Dumper/TermLog (logging goes through `logging`), Block (it refuses
    # clients with public addresses, wrong in front of an app), ErrorCheck
    # (start-up errors become one TrafficMirrorError line, not sys.exit), and
    # those off by default anyway.
    proxy.addons.add(
        core.Core(),
        proxyserver.Proxyserver(),  # type: ignore[no-untyped-call]
        next_layer.NextLayer(),
        PriorKnowledge(),
        tlsconfig.TlsConfig(),
        disable_h2c.DisableH2C(),
        update_alt_svc.UpdateAltSvc(),
        Http1BodyFraming(),
        drainer,
        *mirror,
        recorder,
        startup,
    )
    try:
        opts.update(**values)
    except exceptions.OptionsError as exc:
        # The addon's refusals start with "trafficmirror: "; the CLI adds its own prefix.
        raise ConfigError(str(exc).removeprefix("trafficmirror: ")) from None

    loop = asyncio.get_running_loop()
    stop = SignalStop(proxy, drainer, recorder)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    # A client that hangs up must not kill the process (mitmdump does the same).
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        await proxy.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        loop.set_exception_handler(_ignore_cancelled)
        if stop.task is not None and not stop.task.done():
            stop.task.cancel()
    if startup.error is not None:
        host, port = values["listen_host"], values["listen_port"]
        reason = " ".join(startup.error.split())  # mitmproxy's has a second line
        raise TrafficMirrorError(f"cannot listen on {host}:{port}: {reason}")
    return recorder


def run_recorder(config: RecordConfig) -> None:
    """Record traffic to `config.upstream` until SIGINT/SIGTERM (the `record` command).

    With `config.mirror` there is no upstream: every request is answered by
    the recorder itself (`recorder.mirror`).

    Raises `TrafficMirrorError` (one line) when the recorder cannot start: the
    port is taken, an option or Kafka setting is invalid. On a signal it stops
    accepting, drains for at most `config.drain_timeout` seconds, flushes
    queued events for at most `config.flush_timeout` seconds and logs the
    summary line, then returns.
    """
    reuseport.check_free(config.listen_host, config.listen_port)
    logger.debug("trafficmirror recorder: lighter mitmproxy: %s", ", ".join(lighten()))
    logger.info(
        "trafficmirror recorder: %s:%d -> %s, topic %s on %s",
        config.listen_host,
        config.listen_port,
        config.upstream or "(mirror: answers itself, no upstream)",
        config.topic,
        config.settings.bootstrap_servers,
    )
    asyncio.run(serve(config.mitmproxy_options()))
