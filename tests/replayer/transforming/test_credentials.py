"""OAuth2 client credentials against a real aiohttp token endpoint: cache, refresh, single
flight, back-off, skips, and no secret in any log line."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote_plus

import pytest
from aiohttp import web

from replayer.models import OutgoingRequest, Skipped, Target
from replayer.transforming.config import (
    Credential,
    JwtResign,
    OAuth2ClientCredentials,
)
from replayer.transforming.credentials import (
    OAuth2Step,
    Timing,
    build_credential,
    refresh_after,
)
from replayer.transforming.jwtresign import JwtResigner
from replayer.transforming.step import TransformContext
from replayer.transforming.values import parse_value
from schemas.records import HttpExchange
from tests.replayer.events import make_event
from tests.support import free_port
from trafficmirror.plumbing.errors import ConfigError

CLIENT_ID = "shadow-replayer"
SECRET = "client-SECRET-9f3e&x=y"  # form-encoding matters: & and = inside
DESCRIPTION = "DESCRIPTION-mentions-SECRET"


@dataclass
class Endpoint:
    """A token endpoint: answers what `answer` says, records every request."""

    url: str = ""
    forms: list[dict[str, str]] = field(default_factory=list)
    auths: list[str | None] = field(default_factory=list)
    issued: int = 0
    delay: float = 0.0
    status: int = 200
    expires_in: Any = 300

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.forms.append({k: str(v) for k, v in form.items()})
        self.auths.append(request.headers.get("Authorization"))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response(
                {"error": "invalid_client", "error_description": DESCRIPTION}, status=self.status
            )
        self.issued += 1
        answer: dict[str, Any] = {"access_token": f"TOKEN-{self.issued}", "token_type": "Bearer"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        return web.json_response(answer)


@asynccontextmanager
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()
    app = web.Application()
    app.router.add_post("/oauth/token", ep.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    ep.url = f"http://127.0.0.1:{port}/oauth/token"
    try:
        yield ep
    finally:
        await runner.cleanup()


def step_for(url: str, timing: Timing | None = None, **kw: Any) -> OAuth2Step:
    config = OAuth2ClientCredentials(
        url, parse_value(CLIENT_ID, "t"), parse_value(SECRET, "t"), **kw
    )
    return OAuth2Step("shop-oauth", config, origin="t.yaml:2", timing=timing)


def outgoing(*headers: tuple[str, str]) -> OutgoingRequest:
    return OutgoingRequest("GET", Target("http", "127.0.0.1:9"), "/", headers, b"", "ex")


def context() -> TransformContext:
    return TransformContext(key=b"k", event=cast(HttpExchange, make_event()))


def run(test: Callable[[Endpoint], Awaitable[None]]) -> None:
    async def main() -> None:
        async with endpoint() as ep:
            await test(ep)

    asyncio.run(main())


def test_basic_auth_token_replaces_the_recorded_header_one_fetch_for_many() -> None:
    async def test(ep: Endpoint) -> None:
        ep.delay = 0.2  # every request arrives while the one fetch runs
        step = step_for(ep.url, scope="orders write", audience="shop")
        requests = [outgoing(("Authorization", "***"), ("Accept", "*/*"), ("authorization", "x"))]
        requests += [outgoing(("Accept", "*/*"))] * 49
        sent = await asyncio.gather(*(step.apply(r, context()) for r in requests))
        await step.aclose()
        assert sent[0].headers == (("Authorization", "Bearer TOKEN-1"), ("Accept", "*/*"))
        assert all(
            r.headers == (("Accept", "*/*"), ("Authorization", "Bearer TOKEN-1")) for r in sent[1:]
        )
        assert ep.forms == [
            {"grant_type": "client_credentials", "scope": "orders write", "audience": "shop"}
        ]
        scheme, _, encoded = (ep.auths[0] or "").partition(" ")
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        assert scheme == "Basic" and (unquote_plus(user), unquote_plus(password)) == (
            CLIENT_ID,
            SECRET,
        )
        assert step.counts.fetched == 1

    run(test)


def test_form_client_auth_and_a_custom_header() -> None:
    async def test(ep: Endpoint) -> None:
        step = step_for(ep.url, client_auth="form", header="X-Shadow-Token", prefix="")
        sent = await step.apply(outgoing(("Authorization", "***")), context())
        await step.aclose()
        assert sent.headers == (("Authorization", "***"), ("X-Shadow-Token", "TOKEN-1"))
        assert ep.forms == [
            {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}
        ]
        assert ep.auths == [None]

    run(test)


def test_refreshed_in_the_background_before_expiry() -> None:
    async def test(ep: Endpoint) -> None:
        ep.expires_in = 1  # refresh after 0.5 s
        step = step_for(ep.url)
        assert (await step.apply(outgoing(), context())).header("authorization") == "Bearer TOKEN-1"
        await asyncio.sleep(0.6)
        ep.delay = 0.2
        started = time.monotonic()
        # Past the refresh time, still valid: this request does not wait for the new token.
        old = await step.apply(outgoing(), context())
        assert time.monotonic() - started < 0.1 and old.header("authorization") == "Bearer TOKEN-1"
        await asyncio.sleep(0.3)
        new = await step.apply(outgoing(), context())
        assert new.header("authorization") == "Bearer TOKEN-2"
        await step.aclose()
        assert len(ep.forms) == 2

    run(test)


def test_failures_back_off_are_counted_and_skip_waiting_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def test(ep: Endpoint) -> None:
        ep.status = 401
        timing = Timing(max_wait=0.5, backoff_first=0.1, backoff_max=0.2)
        step = step_for(ep.url, timing)
        started = time.monotonic()
        results = await asyncio.gather(
            *(step.apply(outgoing(), context()) for _ in range(10)), return_exceptions=True
        )
        waited = time.monotonic() - started
        assert all(isinstance(r, Skipped) and r.reason == "credentials" for r in results)
        assert "HTTP 401 invalid_client" in str(results[0])
        # Attempts at about 0, 0.1 and 0.3 s (back-off 0.1, 0.2, capped at 0.2), one at a
        # time; the next would come after the 0.5 s the requests wait, so they are skipped.
        assert len(ep.forms) == 3 and step.counts.failed == 3 and step.counts.skipped == 10
        assert 0.3 <= waited < 2.0
        # Backing off for longer than a request may wait: skipped at once, no new attempt.
        patient = step_for(ep.url, Timing(max_wait=0.2, backoff_first=5))
        with pytest.raises(Skipped):
            await patient.apply(outgoing(), context())
        started = time.monotonic()
        with pytest.raises(Skipped):
            await patient.apply(outgoing(), context())
        assert time.monotonic() - started < 0.05 and len(ep.forms) == 4
        await patient.aclose()
        ep.status = 200
        await asyncio.sleep(0.25)
        ok = await step.apply(outgoing(), context())
        assert ok.header("authorization") == "Bearer TOKEN-1"
        await step.aclose()

    run(test)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "failed (HTTP 401 invalid_client); next attempt in" in logged
    for secret in (SECRET, DESCRIPTION, "TOKEN-1", CLIENT_ID):
        assert secret not in logged


def test_unreachable_slow_and_bad_answers() -> None:
    async def test(ep: Endpoint) -> None:
        timing = Timing(max_wait=0.3, fetch_timeout=0.1, backoff_first=5)
        closed = step_for(f"http://127.0.0.1:{free_port()}/token", timing)
        with pytest.raises(Skipped, match="cannot connect"):
            await closed.apply(outgoing(), context())
        await closed.aclose()
        ep.delay = 0.5
        slow = step_for(ep.url, timing)
        with pytest.raises(Skipped, match="timed out"):
            await slow.apply(outgoing(), context())
        await slow.aclose()
        ep.delay, ep.expires_in = 0.0, None  # no expires_in: five minutes assumed
        step = step_for(ep.url)
        await step.apply(outgoing(), context())
        assert step._token is not None
        assert 290 < step._token.expires_at - time.monotonic() <= 300
        await step.aclose()

    run(test)


def test_refresh_after() -> None:
    assert refresh_after(3600) == 2880  # 80 %
    assert refresh_after(100) == 70  # 30 s before the end
    assert refresh_after(10) == 5  # never before half of it


def test_bad_token_url_and_build_credential() -> None:
    with pytest.raises(ConfigError, match="token_url"):
        step_for("ftp://example.com/token")
    config = OAuth2ClientCredentials(
        "http://127.0.0.1:1/t", parse_value("a", "t"), parse_value("b", "t")
    )
    assert isinstance(build_credential(Credential("o", config)), OAuth2Step)
    jwt_config = JwtResign("HS256", parse_value("k" * 32, "t"))
    assert isinstance(build_credential(Credential("j", jwt_config)), JwtResigner)
    assert "hidden" in repr(config) and "b" not in repr(config.client_secret).replace("hidden", "")
