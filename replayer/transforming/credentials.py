"""Replay-time credentials: an OAuth2 client-credentials token in every request.

`build_credential` builds the step of one `credentials:` entry: `OAuth2Step`
here, or a JWT re-sign (`replayer.transforming.jwtresign`). `OAuth2Step` gets
a token from the token endpoint (grant `client_credentials`; client id and
secret by HTTP Basic or in the form; scope and audience if set) with aiohttp,
and sets the header (default `Authorization: Bearer <token>`) of every
request, replacing what was recorded. The token is cached and refreshed in the
background before it expires (`refresh_after`); only one fetch runs at a time,
however many requests wait for it. A failed fetch is counted and the next one
backs off exponentially (1 s doubling to 60 s). A request that finds no valid
token waits at most `Timing.max_wait` (10 s) for one; if none comes, or the
next attempt is further away than that, it is skipped as `skipped-credentials`
(the shadow would only answer 401). Neither the secret nor a token is logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlsplit

import aiohttp

from replayer.models import OutgoingRequest, Skipped, rebuilt
from replayer.transforming.config import Credential, JwtResign, OAuth2ClientCredentials
from replayer.transforming.jwtresign import build_jwt_resign
from replayer.transforming.step import Step, TransformContext
from replayer.transforming.tally import Tally
from replayer.transforming.values import ValueReader
from trafficmirror.plumbing.errors import ConfigError

logger = logging.getLogger(__name__)

TOKEN_FETCHES = Tally(
    "trafficmirror_replayer_token_fetches",
    "OAuth2 client-credentials token requests to the token endpoint, by outcome "
    "(ok, failed); failed ones back off exponentially.",
    "outcome",
    {"ok": "fetched", "failed": "failed"},
)

#: Lifetime assumed when the token endpoint gives no `expires_in`.
DEFAULT_LIFETIME_SECONDS = 300.0
#: Longest error code taken from a token endpoint's error answer.
_MAX_ERROR_CODE = 40


@dataclass(frozen=True)
class Timing:
    """How long things may take: the fetch, a request's wait for a token, the back-off."""

    fetch_timeout: float = 10.0
    max_wait: float = 10.0
    backoff_first: float = 1.0
    backoff_max: float = 60.0


@dataclass
class TokenCounts:
    """What the step did in this process (one role)."""

    fetched: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class Token:
    """A token and when to refresh and drop it (`time.monotonic()` seconds)."""

    value: str = field(repr=False)
    refresh_at: float
    expires_at: float


class TokenError(Exception):
    """The token endpoint gave no token; the message is safe to log (no secret, no token)."""


def refresh_after(lifetime: float) -> float:
    """Seconds after a fetch to fetch again: 80 % of the lifetime or 30 s before its end,
    whichever comes first, but not before half of it."""
    return max(min(lifetime * 0.8, lifetime - 30.0), lifetime * 0.5)


Fetcher = Callable[[], Awaitable[tuple[str, float]]]


class OAuth2Step:
    """The OAuth2 client-credentials step of one credential and role."""

    def __init__(
        self,
        name: str,
        config: OAuth2ClientCredentials,
        *,
        origin: str = "",
        timing: Timing | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.where = f"credentials {name!r}" + (f" ({origin})" if origin else "")
        self.timing = timing or Timing()
        self.counts = TokenCounts()
        TOKEN_FETCHES.track(self, self.counts)
        parts = urlsplit(config.token_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{self.where}: token_url must be an http:// or https:// URL")
        #: The endpoint as logs show it: no query, no user info.
        self.endpoint = (
            f"{parts.scheme}://{parts.hostname}"
            + (f":{parts.port}" if parts.port else "")
            + parts.path
        )
        self._id = ValueReader(config.client_id)
        self._secret = ValueReader(config.client_secret)
        self._fetch = fetcher or self._request_token
        self._session: aiohttp.ClientSession | None = None
        self._token: Token | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_attempt = float("-inf")
        self._backoff = 0.0
        self._last_error = "no token yet"
        self._header = config.header.lower()

    # -- the step ---------------------------------------------------------------------

    async def apply(self, request: OutgoingRequest, context: TransformContext) -> OutgoingRequest:
        """The request with the header set to the current token; `Skipped` if there is none."""
        value = self.config.prefix + await self.token()
        headers: list[tuple[str, str]] = []
        placed = False
        for name, old in request.headers:
            if name.lower() != self._header:
                headers.append((name, old))
            elif not placed:
                headers.append((name, value))
                placed = True
        if not placed:
            headers.append((self.config.header, value))
        # Not dataclasses.replace: it costs several times as much, on every request.
        return rebuilt(request, request.method, request.path, tuple(headers), request.body)

    async def aclose(self) -> None:
        """Stop a fetch in progress and close the HTTP session."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the token --------------------------------------------------------------------

    async def token(self) -> str:
        """A valid token: the cached one, or one fetched now (waiting at most `max_wait`)."""
        now = time.monotonic()
        current = self._token
        if current is not None and now < current.expires_at:
            if now >= current.refresh_at:
                self._start_fetch(now)  # in the background; this request goes with the old one
            return current.value
        deadline = now + self.timing.max_wait
        while True:
            self._start_fetch(now)
            task = self._task
            if task is None:  # backing off
                if self._next_attempt > deadline:
                    break
                await asyncio.sleep(max(self._next_attempt - now, 0.0))
            else:
                try:
                    async with asyncio.timeout(max(deadline - now, 0.0)):
                        await asyncio.shield(task)
                except TimeoutError:
                    break
            now = time.monotonic()
            current = self._token
            if current is not None and now < current.expires_at:
                return current.value
            if now >= deadline:
                break
        self.counts.skipped += 1
        raise Skipped("credentials", f"no token for {self.where}: {self._last_error}")

    def _start_fetch(self, now: float) -> None:
        if self._task is None and now >= self._next_attempt:
            self._task = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        """One fetch; never raises (the outcome is in the token, the counts and the back-off)."""
        try:
            value, lifetime = await self._fetch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc if isinstance(exc, TokenError) else _describe(exc))
        else:
            now = time.monotonic()
            self._token = Token(value, now + refresh_after(lifetime), now + lifetime)
            self._backoff = 0.0
            self._next_attempt = float("-inf")
            self.counts.fetched += 1
            logger.debug("%s: new token from %s for %.0f s", self.where, self.endpoint, lifetime)
        finally:
            self._task = None

    def _failed(self, error: TokenError) -> None:
        timing = self.timing
        self._backoff = min(
            timing.backoff_max, self._backoff * 2 if self._backoff else timing.backoff_first
        )
        self._next_attempt = time.monotonic() + self._backoff
        self._last_error = str(error)
        self.counts.failed += 1
        logger.warning(
            "%s: token request to %s failed (%s); next attempt in %.1f s",
            self.where,
            self.endpoint,
            error,
            self._backoff,
        )

    async def _request_token(self) -> tuple[str, float]:
        """POST the client-credentials grant; (token, lifetime in seconds) or `TokenError`."""
        config = self.config
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timing.fetch_timeout), trust_env=False
            )
        form = {"grant_type": "client_credentials"}
        if config.scope:
            form["scope"] = config.scope
        if config.audience:
            form["audience"] = config.audience
        client_id, secret = self._id.get(), self._secret.get()
        headers = {"Accept": "application/json"}
        if config.client_auth == "basic":
            # RFC 6749 2.3.1: both are form-encoded before they go into Basic.
            pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form["client_id"], form["client_secret"] = client_id, secret
        async with self._session.post(config.token_url, data=form, headers=headers) as response:
            raw = await response.read()
            status = response.status
        answer = _json(raw)
        if status != 200:
            code = answer.get("error") if isinstance(answer, dict) else None
            detail = f" {code}" if _is_error_code(code) else ""
            raise TokenError(f"HTTP {status}{detail}")
        if not isinstance(answer, dict):
            raise TokenError("the answer is not a JSON object")
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError("the answer has no access_token")
        if any(c in token for c in "\r\n\x00"):
            raise TokenError("the access_token holds CR, LF or NUL: it cannot be a header value")
        expires = answer.get("expires_in")
        try:
            lifetime = float(expires) if expires is not None else DEFAULT_LIFETIME_SECONDS
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_SECONDS
        return token, max(lifetime, 0.0)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _is_error_code(code: Any) -> bool:
    """RFC 6749 5.2 error codes are short words; anything else is not repeated in logs."""
    return (
        isinstance(code, str)
        and 0 < len(code) <= _MAX_ERROR_CODE
        and all(c.isalnum() or c in "_-." for c in code)
    )


def _describe(exc: Exception) -> TokenError:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return TokenError("timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TokenError(f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}")
    return TokenError(type(exc).__name__)


def build_credential(credential: Credential) -> Step:
    """The step of one `credentials:` entry (OAuth2 client credentials or JWT re-sign)."""
    if isinstance(credential.kind, JwtResign):
        return build_jwt_resign(credential)
    return OAuth2Step(credential.name, credential.kind, origin=credential.origin)
