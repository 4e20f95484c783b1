"""Replaying to an authenticated, stateful shadow, through real processes: the problem and the fix.

Production and the shadow are `AuthShop`s with keys of their own: production
checks HS256 JWTs signed with its secret, the shadow RS256 JWTs signed with
its own RSA key and the opaque tokens of its own OAuth2 token endpoint; each
creates its own order IDs (production from 17, the shadow from 900). Two
users, each on one keep-alive connection (one Kafka key), create orders and
follow up on them: read, pay, fetch the receipt, by path segment, JSON body
and query value.

`trafficmirror record` records them twice, with the default redaction
(Authorization masked) and with `--redact-header Authorization=jwt-claims`.
Each recording is replayed with `replay range` (the OAuth2 one also by two
`worker` processes in one group) to a fresh shadow without
transforms (every request 401: the problem) and with a transforms file
(OAuth2 client credentials, or JWT re-sign with the times moved, plus value
correlation of `$.id`): every request is authenticated on the shadow, as the
recorded user where the claims were kept, every follow-up reaches an order
the shadow created, and the replay and `trafficmirror report` show 0
mismatches. The JWT recording's tokens have expired by the time it is
replayed, so the re-sign must move `iat`/`nbf`/`exp`.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import Kafka, Procs, free_port, run_cli, wait_port
from trafficmirror.demo.authshop import AuthShop
from trafficmirror.plumbing.kafka import results_topic

pytestmark = pytest.mark.e2e

PROD_SECRET = "production-hs256-secret-0123456789abcdef"
CLIENT_SECRET = "shadow-client-secret-7d1e"
USERS = ("alice", "bob")
#: Requests each user sends (two orders, with their follow-ups).
PER_USER = 9
SHADOW_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def production_token(user: str, lifetime: int) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "nbf": now, "exp": now + lifetime}
    return jwt.encode(claims, PROD_SECRET, algorithm="HS256", headers={"kid": "prod-2025"})


def call(
    conn: http.client.HTTPConnection, token: str, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, Any], str | None]:
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read() or b"{}")
    return response.status, answer, response.getheader("Location")


def shop_session(port: int, user: str, token: str) -> list[int]:
    """One user's orders and follow-ups on one connection; the order IDs production gave."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ids = []
    try:
        for item, qty in (("book", 1), ("pen", 3)):
            status, order, location = call(
                conn, token, "POST", "/orders", {"item": item, "qty": qty}
            )
            assert status == 201 and location == f"/orders/{order['id']}"
            number = order["id"]
            ids.append(number)
            assert call(conn, token, "GET", f"/orders/{number}")[0] == 200
            paid = call(conn, token, "POST", "/payments", {"order_id": number, "amount": 5 * qty})
            assert paid[0] == 200 and paid[1]["order_id"] == number
            assert call(conn, token, "GET", f"/receipts?order={number}")[0] == 200
        assert call(conn, token, "GET", f"/orders/{ids[0]}")[1]["status"] == "paid"
    finally:
        conn.close()
    return ids


def record(
    kafka: Kafka, procs: Procs, topic: str, production: AuthShop, lifetime: int, *redact: str
) -> float:
    """Record both users' sessions; returns when the last token expires (time.time())."""
    port = free_port()
    recorder = procs.start(
        f"recorder-{topic}",
        ["record", "-b", kafka.bootstrap_servers, "-t", topic, "--upstream", production.url,
         "--listen", f"127.0.0.1:{port}", *redact],
    )  # fmt: skip
    wait_port(port, timeout=15)
    expiry = time.time() + lifetime
    ids = [shop_session(port, user, production_token(user, lifetime)) for user in USERS]
    assert sorted(n for user_ids in ids for n in user_ids) == [17, 18, 19, 20]
    assert recorder.stop() == 0
    recorded = len(USERS) * PER_USER
    assert f"recorded={recorded} dropped=0 failed=0" in recorder.stderr, recorder.stderr
    return expiry


def replay(kafka: Kafka, topic: str, shadow: AuthShop, run_id: str, *extra: str) -> dict[str, int]:
    """`replay range` to the shadow; its comparison line as numbers."""
    result = run_cli(
        ["-v", "replay", "range", "-b", kafka.bootstrap_servers, "-t", topic,
         "--start-offset", "0", "--target", shadow.url, "--run-id", run_id,
         "--methods", "ALL", *extra],
        env=_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    line = re.search(
        r"comparison: match (\d+) \(noise only \d+\), mismatch (\d+), errors (\d+), "
        r"skipped (\d+)",
        result.stdout + result.stderr,
    )
    assert line is not None, result.stdout + result.stderr
    return dict(
        zip(("match", "mismatch", "errors", "skipped"), map(int, line.groups()), strict=True)
    )


def _env() -> dict[str, str]:
    return {**os.environ, "SHOP_CLIENT_SECRET": CLIENT_SECRET}


def report(kafka: Kafka, topic: str, run_id: str) -> str:
    result = run_cli(["report", "-b", kafka.bootstrap_servers, "-t", topic, "--run", run_id])
    assert result.returncode == 0, result.stderr
    return result.stdout


ENDPOINTS = {
    "POST /orders",
    "GET /orders/{id}",
    "POST /payments",
    "GET /receipts",
}


def endpoint_rows(report: str) -> dict[str, list[str]]:
    """Endpoint → [requests, mismatch, status, headers, JSON, ...] from the report's table."""
    rows = {}
    for line in report.splitlines():
        cells = line.split()
        if len(cells) > 4 and cells[0] in ("GET", "POST") and cells[2].isdigit():
            rows[f"{cells[0]} {cells[1]}"] = cells[2:]
    return rows


def shadow_shop() -> AuthShop:
    return AuthShop(
        jwt_key=SHADOW_KEY.public_key(),
        jwt_algorithm="RS256",
        first_id=900,
        clients={"replayer": CLIENT_SECRET},
    )


def assert_the_problem(kafka: Kafka, topic: str) -> None:
    """Without transforms every replayed request is refused and compared as a mismatch."""
    with shadow_shop() as shadow:
        counts = replay(kafka, topic, shadow, "plain")
        seen = shadow.seen
    total = len(USERS) * PER_USER
    assert len(seen) == total and {s.status for s in seen} == {401}
    assert {s.user for s in seen} == {None}
    assert counts == {"match": 0, "mismatch": total, "errors": 0, "skipped": 0}
    out = report(kafka, topic, "plain")
    assert f"{total} results: 0 match (0 only in noise), {total} mismatch" in out
    # The 401s are what differs: every endpoint's status differs every time.
    rows = endpoint_rows(out)
    assert set(rows) == ENDPOINTS, out
    assert all(cells[2] == "100.0%" for cells in rows.values()), out


def assert_the_fix(
    kafka: Kafka,
    topic: str,
    transforms: Path,
    yaml_for: Callable[[str], str],
    users: set[str],
) -> AuthShop:
    """With the transforms: all authenticated, follow-ups reach the shadow's orders, 0 mismatch.

    `yaml_for(shadow URL)` is the transforms file (the token endpoint is the shadow's).
    """
    with shadow_shop() as shadow:
        transforms.write_text(yaml_for(shadow.url), encoding="utf-8")
        counts = replay(kafka, topic, shadow, "fixed", "--transforms", str(transforms))
    seen = shadow.seen
    total = len(USERS) * PER_USER
    assert len(seen) == total
    assert {s.user for s in seen} == users
    assert all(s.status in (200, 201) for s in seen), seen
    paths = [s.path for s in seen]
    # Every follow-up names an order the shadow created; none names a production ID.
    assert not any(re.search(r"\b(17|18|19|20)\b", p) for p in paths), paths
    assert sum(p.startswith("/orders/9") for p in paths) == 3 * len(USERS)
    assert sum(p.startswith("/receipts?order=9") for p in paths) == 2 * len(USERS)
    assert counts == {"match": total, "mismatch": 0, "errors": 0, "skipped": 0}
    out = report(kafka, topic, "fixed")
    assert f"{total} results: {total} match (0 only in noise), 0 mismatch, 0 errors" in out
    # The results name what changed each request (never a value): the credential on
    # every request, the correlation rule on each follow-up naming an order.
    per_endpoint = {line.split(": ")[0].strip(): line for line in out.splitlines() if " ×" in line}
    credential = "shop-oauth" if "client:replayer" in users else "shop-jwt"
    assert f"{credential} ×4" in per_endpoint["POST /orders"]
    assert "order-id" not in per_endpoint["POST /orders"]
    for endpoint, count in (("GET /orders/{id}", 6), ("POST /payments", 4), ("GET /receipts", 4)):
        assert f"{credential} ×{count}" in per_endpoint[endpoint]
        assert f"order-id ×{count}" in per_endpoint[endpoint]
    return shadow


CORRELATE = "correlate:\n  - name: order-id\n    response_json: $.id\n"


def test_default_redaction_replayed_with_oauth2_and_correlation(
    kafka: Kafka, procs: Procs, tmp_path: Path
) -> None:
    topic = kafka.new_topic(2, prefix="e2e-auth-oauth")
    kafka.create_topic(results_topic(topic), 2)
    with AuthShop(jwt_key=PROD_SECRET, first_id=17) as production:
        record(kafka, procs, topic, production, 300)
    assert_the_problem(kafka, topic)

    def oauth2(url: str) -> str:
        return (
            "credentials:\n"
            "  - name: shop-oauth\n"
            "    oauth2:\n"
            f"      token_url: {url}/oauth/token\n"
            "      client_id: replayer\n"
            "      client_secret: ${SHOP_CLIENT_SECRET}\n"
            "      scope: orders\n" + CORRELATE
        )

    shadow = assert_the_fix(kafka, topic, tmp_path / "t.yaml", oauth2, {"client:replayer"})
    assert shadow.token_requests == {"issued": 1, "refused": 0}  # one token for every request
    # The same transforms in two `worker` processes sharing the topic's partitions:
    # each user's connection is one key, so its follow-ups still meet its own orders.
    assert_two_workers_fix(kafka, procs, topic, tmp_path / "w.yaml", oauth2)


def assert_two_workers_fix(
    kafka: Kafka, procs: Procs, topic: str, transforms: Path, yaml_for: Callable[[str], str]
) -> None:
    total = len(USERS) * PER_USER
    with shadow_shop() as shadow:
        transforms.write_text(yaml_for(shadow.url), encoding="utf-8")
        workers = [
            procs.start(
                f"worker-{n}-{topic}",
                [
                    "worker",
                    "-b",
                    kafka.bootstrap_servers,
                    "-t",
                    topic,
                    "--group",
                    f"g-{topic}",
                    "--start-from",
                    "earliest",
                    "--target",
                    shadow.url,
                    "--methods",
                    "ALL",
                    "--run-id",
                    "workers",
                    "--transforms",
                    str(transforms),
                ],
                env=_env(),
            )
            for n in range(2)
        ]
        deadline = time.monotonic() + 60
        while len(shadow.seen) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = shadow.seen
        for worker in workers:
            assert worker.stop() == 0, procs.dump()
    assert len(seen) == total, procs.dump()
    assert all(s.status in (200, 201) for s in seen), seen
    assert {s.user for s in seen} == {"client:replayer"}
    paths = [s.path for s in seen]
    assert not any(re.search(r"\b(17|18|19|20)\b", p) for p in paths), paths
    assert sum(p.startswith("/orders/9") for p in paths) == 3 * len(USERS)
    assert sum(p.startswith("/receipts?order=9") for p in paths) == 2 * len(USERS)
    for worker in workers:
        assert "Traceback" not in worker.stderr
        assert CLIENT_SECRET not in worker.stderr + worker.stdout


def test_jwt_claims_replayed_with_resign_and_correlation(
    kafka: Kafka, procs: Procs, tmp_path: Path
) -> None:
    topic = kafka.new_topic(2, prefix="e2e-auth-jwt")
    kafka.create_topic(results_topic(topic), 2)
    lifetime = 3
    with AuthShop(jwt_key=PROD_SECRET, first_id=17) as production:
        redact = ("--redact-header", "Authorization=jwt-claims")
        expiry = record(kafka, procs, topic, production, lifetime, *redact)
    inspect = run_cli(["inspect", "-b", kafka.bootstrap_servers, "-t", topic])
    assert inspect.returncode == 0, inspect.stderr
    events = [json.loads(line) for line in inspect.stdout.splitlines()]
    assert len(events) == len(USERS) * PER_USER
    for event in events:
        value = dict(event["request"]["headers"])["Authorization"]
        assert re.fullmatch(r"Bearer [\w-]+\.[\w-]+\.", value), value  # signature gone
        claims = json.loads(base64.urlsafe_b64decode(value.split(".")[1] + "=="))
        assert claims["sub"] in USERS
        assert "request.header:authorization=jwt-claims" in event["recorder"]["redactions"]
    time.sleep(max(0.0, expiry - time.time() + 1))  # every recorded token has expired

    assert_the_problem(kafka, topic)
    key = tmp_path / "shadow-key.pem"
    key.write_bytes(
        SHADOW_KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    def resign(url: str) -> str:
        return (
            "credentials:\n"
            "  - name: shop-jwt\n"
            "    jwt_resign:\n"
            "      algorithm: RS256\n"
            f"      key: '@{key}'\n"
            "      refresh_times: true\n" + CORRELATE
        )

    assert_the_fix(kafka, topic, tmp_path / "t.yaml", resign, set(USERS))
