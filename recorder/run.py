"""`trafficmirror record`: mitmproxy embedded as a reverse proxy with the recorder.

`mitmdump` loads some thirty addons (flow printing, scripting, playback,
header and body rewriting, blocking, ...), and every one of them is asked about
every hook of every exchange. A recorder sidecar needs only these:

* `Core`: the base options and commands;
* `Proxyserver` and `NextLayer`: listening and protocol detection;
* `TlsConfig`: TLS towards clients and towards an https:// upstream;
* `DisableH2C`: strips h2c upgrade requests mitmproxy cannot proxy, as
  mitmdump does, so such clients keep working;
* `UpdateAltSvc`: keeps Alt-Svc answers pointing at the proxy, as mitmdump's
  reverse mode does;
* the `Recorder`, and a tiny addon that checks the proxy really listens.

Left out on purpose: `Dumper`/`TermLog` (logging goes through `logging`),
`Block` (it refuses clients with public addresses, which is wrong for a
reverse proxy in front of an app), `ErrorCheck` (startup errors become one
`TrafficMirrorError` line instead of `sys.exit`), and every addon that is off
by default anyway.

One more addon fixes a live-path bug of mitmproxy 11: an HTTP/2 (or HTTP/3)
request with a body but no Content-Length, forwarded to an HTTP/1.1 upstream,
is sent with no framing at all, so the app reads a request without a body and
then the body as the start of the next request on that connection.
`Http1BodyFraming` adds the Content-Length the HTTP/1.1 hop needs (the body is
complete by then: the recorder does not stream bodies); the recorded event
leaves it out, since the client did not send it.

Per request, the embedded mitmproxy also does less than mitmdump's: hooks go
only to the addons that handle them, and two debug-only checks that `python -O`
would skip are off (see `recorder.lean`).

Two options differ from mitmdump's defaults, both so the live path behaves
like a plain reverse proxy and the recording is complete:

* `keep_host_header`: the client's Host header reaches the app unchanged, as
  a transparent sidecar should, and so it is also what gets recorded;
* `connection_strategy=lazy`: the upstream connection is opened when a request
  arrives, not when the client connects. With mitmdump's eager default an
  upstream that refuses connections makes mitmproxy close the client's
  connection before any request is read, so there is no exchange to record;
  lazily, the client gets a 502 and the error is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Sequence
from typing import Any

from mitmproxy import ctx, exceptions, http, master, options
from mitmproxy.addons import (
    core,
    disable_h2c,
    next_layer,
    proxyserver,
    tlsconfig,
    update_alt_svc,
)

from recorder.addon import Recorder
from recorder.event import ADDED_CONTENT_LENGTH
from recorder.lean import HookTable, skip_debug_checks
from trafficmirror.plumbing.errors import ConfigError, TrafficMirrorError
from trafficmirror.plumbing.kafka import KafkaSettings

logger = logging.getLogger("trafficmirror.recorder")


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


class Http1BodyFraming:
    """Gives HTTP/2 and HTTP/3 requests with a body a Content-Length (see the module doc)."""

    def request(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        body = request.raw_content
        if (
            (request.is_http2 or request.is_http3)
            and body
            and "content-length" not in request.headers
            and "transfer-encoding" not in request.headers
        ):
            request.headers["content-length"] = str(len(body))
            flow.metadata[ADDED_CONTENT_LENGTH] = True


def _ignore_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # asyncio.run() cancels the connections still open at exit; Python 3.11's
    # stream callback then reports each CancelledError as an error (3.12 does
    # not). Those are the expected end of a shutdown, not failures.
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def recorder_options(
    *,
    settings: KafkaSettings,
    topic: str,
    upstream: str,
    listen_host: str,
    listen_port: int,
    max_body_bytes: int,
    recorder_id: str | None,
    flush_timeout: float,
    schema_registry_url: str | None,
    metrics_host: str,
    metrics_port: int | None,
    redact_headers: Sequence[str] = (),
    redact_json: Sequence[str] = (),
    redact_key_file: str | None = None,
    redact_defaults: bool = True,
    confdir: str | None = None,
    tls_certs: Sequence[str] = (),
    filter_expr: str | None = None,
) -> dict[str, Any]:
    """The mitmproxy option values for a recorder in front of `upstream`.

    Clients may connect with plain HTTP or TLS on the same port (mitmproxy's
    reverse mode tells them apart by the first bytes); TLS clients are shown
    `tls_certs` (mitmproxy's `certs`: `DOMAIN=PEM`) or a certificate made by the
    CA in `confdir`. `filter_expr` (a mitmproxy filter expression) records
    only the exchanges that match it.
    """
    extra: dict[str, Any] = {}
    if confdir:
        extra["confdir"] = confdir
    if tls_certs:
        extra["certs"] = list(tls_certs)
    return {
        **extra,
        "mode": [f"reverse:{upstream}"],
        "listen_host": listen_host,
        "listen_port": listen_port,
        "keep_host_header": True,
        "connection_strategy": "lazy",
        "trafficmirror_bootstrap_servers": settings.bootstrap_servers,
        "trafficmirror_kafka_property": [f"{k}={v}" for k, v in settings.properties.items()],
        "trafficmirror_topic": topic,
        "trafficmirror_max_body_bytes": max_body_bytes,
        "trafficmirror_recorder_id": recorder_id or f"{socket.gethostname()}:{listen_port}",
        "trafficmirror_flush_timeout": repr(float(flush_timeout)),
        "trafficmirror_schema_registry_url": schema_registry_url,
        "trafficmirror_metrics_host": metrics_host,
        "trafficmirror_metrics_port": metrics_port,
        "trafficmirror_redact_header": list(redact_headers),
        "trafficmirror_redact_json": list(redact_json),
        "trafficmirror_redact_key_file": redact_key_file,
        "trafficmirror_redact_defaults": redact_defaults,
        "trafficmirror_filter": filter_expr,
    }


def check_listen(host: str, port: int) -> None:
    """Fail with one line, before anything starts, if host:port cannot be bound."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        probe = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise TrafficMirrorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    probe.close()


async def serve(values: dict[str, Any]) -> Recorder:
    """Run the embedded proxy until SIGINT/SIGTERM; return the recorder for its counters."""
    # Typed as Any: mitmproxy's Master, AddonManager and OptManager are unannotated.
    opts: Any = options.Options()
    proxy: Any = master.Master(opts)
    # Before any addon is added: the manager Master made is replaced by one
    # that dispatches each hook to its handlers only (see recorder.lean).
    opts.changed.disconnect(proxy.addons._configure_all)
    proxy.addons = HookTable(proxy)
    recorder = Recorder()
    startup = StartupCheck()
    proxy.addons.add(
        core.Core(),
        proxyserver.Proxyserver(),  # type: ignore[no-untyped-call]
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        disable_h2c.DisableH2C(),
        update_alt_svc.UpdateAltSvc(),
        Http1BodyFraming(),
        recorder,
        startup,
    )
    try:
        opts.update(**values)
    except exceptions.OptionsError as exc:
        raise ConfigError(str(exc)) from None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, proxy.shutdown)
    # A client that hangs up must not kill the process (mitmdump does the same).
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        await proxy.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        loop.set_exception_handler(_ignore_cancelled)
    if startup.error is not None:
        host, port = values["listen_host"], values["listen_port"]
        reason = " ".join(startup.error.split())  # mitmproxy's has a second line
        raise TrafficMirrorError(f"cannot listen on {host}:{port}: {reason}")
    return recorder


def run_recorder(
    *,
    settings: KafkaSettings,
    topic: str,
    upstream: str,
    listen_host: str,
    listen_port: int,
    max_body_bytes: int,
    recorder_id: str | None,
    flush_timeout: float,
    schema_registry_url: str | None,
    metrics_host: str,
    metrics_port: int | None,
    **extras: Any,
) -> None:
    """Record traffic to `upstream` until SIGINT/SIGTERM (the `record` command).

    Raises `TrafficMirrorError` (one line) when the recorder cannot start: the
    port is taken, an option or Kafka setting is invalid. On a signal it stops
    accepting, flushes queued events for at most `flush_timeout` seconds and
    logs the summary line, then returns. `extras` are the redaction and
    client-TLS keyword arguments of `recorder_options`.
    """
    check_listen(listen_host, listen_port)
    logger.debug("trafficmirror recorder: turned off %s", ", ".join(skip_debug_checks()))
    values = recorder_options(
        settings=settings,
        topic=topic,
        upstream=upstream,
        listen_host=listen_host,
        listen_port=listen_port,
        max_body_bytes=max_body_bytes,
        recorder_id=recorder_id,
        flush_timeout=flush_timeout,
        schema_registry_url=schema_registry_url,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        **extras,
    )
    logger.info(
        "trafficmirror recorder: %s:%d -> %s, topic %s on %s",
        listen_host,
        listen_port,
        upstream,
        topic,
        settings.bootstrap_servers,
    )
    asyncio.run(serve(values))
