"""The transforms row: authenticated, stateful traffic and the transforms file that fixes it.

The topic holds the same small JSON GETs as the others (replaying/traffic.py),
each with a JWT as the recorder's `jwt-claims` redaction keeps it (`Bearer
header.claims.`, one user per recorded connection) and a path naming the
connection's order (`/api/orders/{order}/items/{item}`). The first exchange of
each connection is the order's creation: production answered it with the
order's own ID, the shadow answers every request with `"id":1`, so value
correlation learns `order → 1` there and replaces the order in every later
path of that connection; later exchanges recorded the same answer the shadow
gives. The transforms file has five rewrite rules (a header set, one
removed, regex replacements in a header, the path and the query), the
correlation rule and a JWT re-sign; the row compares the same topic replayed
with and without it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from replaying.traffic import BASE_US, PARTITIONS, RESPONSE_BODY, make_event

#: Recorded connections (users) in the topic, as in replaying/traffic.py.
CONNECTIONS = 200
#: The secret the re-sign uses (HS256 keeps the row about the replay, not about RSA).
JWT_SECRET = "bench-shadow-jwt-secret-0123456789abcdef"  # noqa: S105 (a bench key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_claims(conn: int) -> str:
    """A recorded JWT without its signature, as `jwt-claims` stores it."""
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "prod"}).encode())
    claims = {"sub": f"user-{conn}", "scope": "shop", "iat": 1_760_000_000, "exp": 1_760_003_600}
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def make_auth_event(index: int, start_us: int, prefix: str) -> dict[str, object]:
    """`make_event` with a JWT and an order ID the shadow does not know."""
    event = make_event(index, start_us, prefix)
    conn = index % CONNECTIONS
    order = 100_000 + conn
    item = index % 5000
    event["path"] = f"/api/orders/{order}/items/{item}?fields=name,price".encode()
    request = event["request"]
    assert isinstance(request, dict)
    request["headers"] = [
        *request["headers"],
        b"Authorization",
        f"Bearer {jwt_claims(conn)}".encode(),
    ]
    if index < CONNECTIONS:  # the connection's first exchange: the order's creation
        body = RESPONSE_BODY.replace(b'"id":1', b'"id":%d' % order)
        response = event["response"]
        assert isinstance(response, dict)
        response["message"]["body"] = body
        response["message"]["body_length"] = len(body)
    return event


def fill_auth(bootstrap: str, topic: str, count: int, gap_us: int, prefix: str) -> None:
    """Like `traffic.fill`, with `make_auth_event`."""
    from confluent_kafka import Producer

    from schemas.codec import Codec

    codec = Codec()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 500000}
    )
    for index in range(count):
        start_us = BASE_US + index * gap_us
        conn = index % CONNECTIONS
        encoded = codec.encode(make_auth_event(index, start_us, prefix))
        producer.produce(
            topic,
            value=encoded.value,
            key=f"10.1.2.3:{40000 + conn}".encode(),
            headers=encoded.headers,
            timestamp=start_us // 1000,
            partition=conn % PARTITIONS,
        )
        if index % 10000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered to {topic}")


TRANSFORMS = """\
rules:
  - name: shadow-marker
    set_header: {name: X-Shadow, value: bench}
  - name: no-cookie
    remove_header: Cookie
  - name: agent
    replace_header: {name: User-Agent, pattern: 'bench/(\\d+)', with: 'bench-shadow/\\1'}
  - name: api-v2
    replace_path: {pattern: '^/api/', with: '/api/v2/'}
  - name: more-fields
    replace_query: {pattern: 'fields=name,price', with: 'fields=name,price,tags'}
credentials:
  - name: shop-jwt
    jwt_resign: {algorithm: HS256, key: '@SECRET'}
correlate:
  - name: order-id
    response_json: $.id
"""


def write_transforms(folder: Path) -> Path:
    """The transforms file (and the key file it names) in `folder`."""
    secret = folder / "jwt-secret"
    secret.write_text(JWT_SECRET)
    path = folder / "transforms.yaml"
    path.write_text(TRANSFORMS.replace("@SECRET", f"@{secret}"))
    return path
