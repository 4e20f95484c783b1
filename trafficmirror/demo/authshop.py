"""An authenticated, stateful shop: what replaying to a real service runs into.

`AuthShop` checks every request's `Authorization: Bearer` token: either a JWT
signed with its own key (HS256 secret or an RS256/ES256 public key; the user
is `sub`) or an opaque token it issued at its OAuth2 token endpoint
(`POST /oauth/token`, client-credentials grant, client id and secret by HTTP
Basic or in the form; the user is `client:<id>`). Anything else is 401. It
creates its own order IDs, counting from `first_id`, so production and a
shadow disagree about every ID:

* `POST /orders` `{"item", "qty"}` → 201, `Location: /orders/{id}`, the order;
* `GET /orders/{id}` → the order, or 404 (unknown, or another user's);
* `POST /payments` `{"order_id", "amount"}` → the payment, the order is paid;
* `GET /receipts?order={id}` → the order's receipt.

Answers are deterministic apart from the IDs (no clocks). `seen` lists every
request with the user it was authenticated as (None: refused) and the status,
for the tests. Served like the other sample apps (`apps._Server`).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import jwt
from aiohttp import web

from trafficmirror.demo.apps import _Server


@dataclass(frozen=True)
class Seen:
    """One request as the shop handled it."""

    method: str
    path: str  # raw path with query
    user: str | None  # None: not authenticated
    status: int


@dataclass
class _Order:
    id: int
    owner: str
    item: str
    qty: int
    status: str = "open"

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "item": self.item, "qty": self.qty, "status": self.status}


class AuthShop(_Server):
    """See the module docstring. `jwt_key`: the HS256 secret or the public key to check
    JWTs with; `clients`: OAuth2 client id → secret; `token_lifetime`: seconds."""

    def __init__(
        self,
        *,
        jwt_key: Any,
        jwt_algorithm: str = "HS256",
        first_id: int = 1,
        clients: dict[str, str] | None = None,
        token_lifetime: int = 300,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.jwt_key = jwt_key
        self.jwt_algorithm = jwt_algorithm
        self.clients = dict(clients or {})
        self.token_lifetime = token_lifetime
        self._next_id = first_id
        self._orders: dict[int, _Order] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # token → (client id, expiry)
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        #: Token requests answered, by outcome (`issued`, `refused`).
        self.token_requests = {"issued": 0, "refused": 0}

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/oauth/token" and request.method == "POST":
            return await self._token(request)
        user = self._user(request.headers.get("Authorization", ""))
        if user is None:
            response: web.Response = web.json_response(
                {"error": "unauthorized"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="shop"'},
            )
        else:
            response = await self._api(request, user)
        with self._lock:
            self._seen.append(Seen(request.method, request.raw_path, user, response.status))
        return response

    # -- authentication ---------------------------------------------------------------

    def _user(self, authorization: str) -> str | None:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        issued = self._tokens.get(token)
        if issued is not None:
            client, expires = issued
            return f"client:{client}" if time.time() < expires else None
        try:
            claims = jwt.decode(token, self.jwt_key, algorithms=[self.jwt_algorithm])
        except jwt.InvalidTokenError:
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) and sub else None

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(encoded, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                pair = ""
            user, _, password = pair.partition(":")
            client_id, secret = unquote_plus(user), unquote_plus(password)
        known = self.clients.get(client_id)
        if (
            form.get("grant_type") != "client_credentials"
            or known is None
            or not secrets.compare_digest(known, secret)
        ):
            self.token_requests["refused"] += 1
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_urlsafe(24)
        self._tokens[token] = (client_id, time.time() + self.token_lifetime)
        self.token_requests["issued"] += 1
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime}
        )

    # -- the API ----------------------------------------------------------------------

    async def _api(self, request: web.Request, user: str) -> web.Response:
        parts = request.path.strip("/").split("/")
        if parts == ["orders"] and request.method == "POST":
            body = await _json(request)
            if not isinstance(body.get("item"), str) or not isinstance(body.get("qty"), int):
                return web.json_response({"error": "item and qty required"}, status=400)
            with self._lock:
                order = _Order(self._next_id, user, body["item"], body["qty"])
                self._orders[order.id] = order
                self._next_id += 1
            return web.json_response(
                order.public(), status=201, headers={"Location": f"/orders/{order.id}"}
            )
        if len(parts) == 2 and parts[0] == "orders" and request.method == "GET":
            found = self._order(parts[1], user)
            if found is None:
                return _missing()
            return web.json_response(found.public())
        if parts == ["payments"] and request.method == "POST":
            body = await _json(request)
            paid = self._order(str(body.get("order_id", "")), user)
            if paid is None:
                return _missing()
            paid.status = "paid"
            return web.json_response(
                {"order_id": paid.id, "amount": body.get("amount"), "status": "paid"}
            )
        if parts == ["receipts"] and request.method == "GET":
            receipt = self._order(request.query.get("order", ""), user)
            if receipt is None or receipt.status != "paid":
                return _missing()
            return web.json_response({"order_id": receipt.id, "item": receipt.item, "paid": True})
        return web.json_response({"error": "not found"}, status=404)

    def _order(self, text: str, user: str) -> _Order | None:
        if not text.isdigit():
            return None
        order = self._orders.get(int(text))
        return order if order is not None and order.owner == user else None


def _missing() -> web.Response:
    return web.json_response({"error": "no such order"}, status=404)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
