"""Planted secrets never leave the recorder: record → inspect → replay → report, then grep.

A client sends credentials in every place the recorder redacts: the default
headers (Authorization, Cookie, X-Api-Key), a header of its own
(X-Session-Token, HMAC'd) and JSON body fields (`$.password` masked,
`$.card.number` HMAC'd); production answers with a Set-Cookie and a JSON
`$.token` (dropped). Every secret is a distinct string, and so is the HMAC key.

The whole pipeline runs as real processes, each with `-v` (debug logs):
`record`, `inspect`, `replay range` to a shadow, `report --html`. Then
everything they wrote is searched for every secret: every record (key, value,
headers) of every topic of the (private) cluster, the stdout and stderr of
each process, the HTML report, and what the shadow received.

Secrets given for replay get the same search (`test_replay_secrets_appear_nowhere`):
static `--set-header` values (from `${ENV}` and from a file), an OAuth2 client
secret (from the environment), a JWT signing key (from a file), the token the
shadow's endpoint issues and the JWT re-signed with that key reach the shadow
and nothing else: no log at `-v`, no result, no report, no dead letter; the
recorded JWT's production signature not even the topic.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from tests.support import Kafka, Procs, free_port, run_cli, wait_port
from trafficmirror.plumbing.kafka import dlq_topic, results_topic

pytestmark = pytest.mark.e2e

SECRETS = {
    "authorization": "Bearer-tok-AUTH-1f7c",
    "cookie": "COOKIE-sid-88d1",
    "api_key": "APIKEY-93ab",
    "session": "SESSION-TOKEN-5e20",
    "password": "PASSWORD-hunter2-77",
    "card": "4111222233334444",
    "set_cookie": "SETCOOKIE-srv-0c3a",
    "token": "RESPONSE-TOKEN-b81d",
}
HMAC_KEY = "HMAC-KEY-never-printed-0123456789"


class App(BaseHTTPRequestHandler):
    """Production answers with secrets of its own; the shadow (token=None) with none."""

    token: str | None = None
    received: list[bytes]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append(bytes(self.requestline, "latin-1") + bytes(self.headers) + body)
        payload = json.dumps({"ok": True, "token": self.token or "shadow"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.token:
            self.send_header("Set-Cookie", f"session={SECRETS['set_cookie']}; HttpOnly")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def serve(token: str | None) -> tuple[ThreadingHTTPServer, list[bytes]]:
    received: list[tuple[str, str]] = []
    handler = type("Handler", (App,), {"token": token, "received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


@pytest.fixture
def apps() -> Iterator[tuple[str, str, list[bytes]]]:
    production, _ = serve(SECRETS["token"])
    shadow, shadow_received = serve(None)
    yield (
        f"http://127.0.0.1:{production.server_address[1]}",
        f"http://127.0.0.1:{shadow.server_address[1]}",
        shadow_received,
    )
    for server in (production, shadow):
        server.shutdown()
        server.server_close()


def everything_in_kafka(bootstrap: str) -> list[bytes]:
    """Key, value and headers of every record of every topic in the cluster."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "grep", "enable.auto.commit": False}
    )
    found: list[bytes] = []
    try:
        metadata = consumer.list_topics(timeout=10)
        for name, topic in metadata.topics.items():
            for partition in topic.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(name, partition), timeout=10
                )
                if high <= low:
                    continue
                consumer.assign([TopicPartition(name, partition, OFFSET_BEGINNING)])
                count = 0
                while count < high - low:
                    msg = consumer.poll(5)
                    assert msg is not None, f"{name}/{partition}: stopped at {count}"
                    if msg.error():
                        continue
                    count += 1
                    found.append(msg.key() or b"")
                    found.append(msg.value() or b"")
                    for key, value in msg.headers() or []:
                        found.append(key.encode() + b"=" + (value or b""))
    finally:
        consumer.close()
    return found


def test_planted_secrets_appear_nowhere(
    mock_kafka: Kafka, procs: Procs, apps: tuple[str, str, list[bytes]], tmp_path: Path
) -> None:
    production, shadow, shadow_received = apps
    topic = mock_kafka.new_topic(1)
    mock_kafka.create_topic(results_topic(topic), 1)
    bootstrap = mock_kafka.bootstrap_servers
    port = free_port()
    recorder = procs.start(
        "recorder",
        [
            "-v",
            "record",
            "-b",
            bootstrap,
            "-t",
            topic,
            "--upstream",
            production,
            "--listen",
            f"127.0.0.1:{port}",
            "--redact-header",
            "X-Session-Token=hmac",
            "--redact-json",
            "$.password",
            "--redact-json",
            "$.card.number=hmac",
            "--redact-json",
            "$.token=drop",
        ],
        env={"TRAFFICMIRROR_REDACT_KEY": HMAC_KEY},
    )
    wait_port(port, timeout=15)
    for i in range(2):  # the same card twice: its HMAC must be equal in both events
        body = json.dumps(
            {
                "user": f"user{i}",
                "password": SECRETS["password"],
                "card": {"number": SECRETS["card"], "exp": "12/30"},
            }
        ).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST",
            f"/login/{i}",
            body=body,
            headers={
                "Authorization": f"Bearer {SECRETS['authorization']}",
                "Cookie": f"sid={SECRETS['cookie']}",
                "X-Api-Key": SECRETS["api_key"],
                "X-Session-Token": SECRETS["session"],
                "Content-Type": "application/json",
            },
        )
        response = conn.getresponse()
        answer = response.read()
        conn.close()
        # The live exchange is untouched: production's secrets reach the client.
        assert response.status == 200 and SECRETS["token"].encode() in answer
        assert SECRETS["set_cookie"] in (response.getheader("Set-Cookie") or "")
    assert recorder.stop() == 0
    assert "recorded=2 dropped=0 failed=0" in recorder.stderr, recorder.stderr

    inspect = run_cli(["-v", "inspect", "-b", bootstrap, "-t", topic])
    assert inspect.returncode == 0, inspect.stderr
    events = [json.loads(line) for line in inspect.stdout.splitlines()]
    assert len(events) == 2
    for event in events:
        assert event["recorder"]["redactions"] == [
            "request.header:authorization=mask",
            "request.header:cookie=mask",
            "request.header:x-api-key=mask",
            "request.header:x-session-token=hmac",
            "request.body:$.password=mask",
            "request.body:$.card.number=hmac",
            "response.header:set-cookie=mask",
            "response.body:$.token=drop",
        ]
        sent = json.loads(event["request"]["body"])
        assert sent["password"] == "***" and sent["card"]["number"].startswith("hmac-sha256:")
        assert json.loads(event["response"]["message"]["body"]) == {"ok": True}
    cards = {json.loads(e["request"]["body"])["card"]["number"] for e in events}
    assert len(cards) == 1  # equal values stay equal

    html = tmp_path / "report.html"
    replay = run_cli(
        ["-v", "replay", "range", "-b", bootstrap, "-t", topic, "--start-offset", "0",
         "--target", shadow, "--run-id", "secrets", "--methods", "ALL"]
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert len(shadow_received) == 2
    report = run_cli(["-v", "report", "-b", bootstrap, "-t", topic, "--html", str(html)])
    assert report.returncode == 0, report.stderr
    assert "POST /login/{id}" in report.stdout

    written = {
        "kafka": b"\n".join(everything_in_kafka(bootstrap)),
        "shadow received": b"\n".join(shadow_received),
        "report.html": html.read_bytes(),
    }
    for name, result in (("inspect", inspect), ("replay", replay), ("report", report)):
        written[f"{name} stdout"] = result.stdout.encode()
        written[f"{name} stderr"] = result.stderr.encode()
    written["record stdout"] = recorder.stdout.encode()
    written["record stderr"] = recorder.stderr.encode()
    assert len(written["kafka"]) > 1000
    leaks = [
        (where, what)
        for where, data in written.items()
        for what, secret in [*SECRETS.items(), ("hmac key", HMAC_KEY)]
        if secret.encode() in data
    ]
    assert leaks == []
    # The debug logs did run (so they were searched, not silent).
    assert "DEBUG" in recorder.stderr and "redacting" in recorder.stderr
    assert os.path.getsize(html) > 1000


# -- secrets given for replay ---------------------------------------------------------

REPLAY_SECRETS = {
    "client secret": "CLIENT-SECRET-for-replay-41c9",
    "jwt key": "JWT-KEY-shadow-hs256-0123456789abcdef",
    "issued token": "ISSUED-SHADOW-TOKEN-6a2f",
    "static header from env": "STATIC-ENV-VALUE-93ab",
    "static header from file": "STATIC-FILE-VALUE-1f07",
}
PRODUCTION_JWT_KEY = "production-jwt-key-0123456789abcdef!"


class TokenShadow(BaseHTTPRequestHandler):
    """The shadow with an OAuth2 token endpoint: it issues REPLAY_SECRETS['issued token'].

    Keeps the Authorization, X-Id-Token, X-Shadow-Key and X-Shadow-Session of each
    request it received."""

    received: list[tuple[str, ...]]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/oauth/token":
            pair = f"replayer:{REPLAY_SECRETS['client secret']}".encode()
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(pair).decode():
                self.send_error(401)  # the secret did reach the token endpoint, or no token
                return
            answer = {"access_token": REPLAY_SECRETS["issued token"], "expires_in": 300}
        else:
            self.received.append(
                tuple(
                    self.headers.get(name, "")
                    for name in ("Authorization", "X-Id-Token", "X-Shadow-Key", "X-Shadow-Session")
                )
            )
            answer = {"ok": True}
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def test_replay_secrets_appear_nowhere(
    mock_kafka: Kafka, procs: Procs, apps: tuple[str, str, list[bytes]], tmp_path: Path
) -> None:
    """Tokens, keys and client secrets given for replay: in no log at -v, result, report
    or dead letter; the JWT's production signature not even in the recording."""
    production, _, _ = apps
    received: list[tuple[str, ...]] = []
    shadow = ThreadingHTTPServer(
        ("127.0.0.1", 0), type("Handler", (TokenShadow,), {"received": received})
    )
    threading.Thread(target=shadow.serve_forever, daemon=True).start()
    shadow_url = f"http://127.0.0.1:{shadow.server_address[1]}"
    topic = mock_kafka.new_topic(1)
    for derived in (results_topic(topic), dlq_topic(topic)):
        mock_kafka.create_topic(derived, 1)
    bootstrap = mock_kafka.bootstrap_servers
    id_token = jwt.encode({"sub": "alice", "exp": 4102444800}, PRODUCTION_JWT_KEY, "HS256")
    signature = id_token.rsplit(".", 1)[1]
    port = free_port()
    recorder = procs.start(
        "recorder",
        ["-v", "record", "-b", bootstrap, "-t", topic, "--upstream", production,
         "--listen", f"127.0.0.1:{port}", "--redact-header", "X-Id-Token=jwt-claims"],
    )  # fmt: skip
    wait_port(port, timeout=15)
    for i in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", f"/orders/{i}", body=b"{}", headers={"X-Id-Token": id_token})
        assert conn.getresponse().status == 200
        conn.close()
    assert recorder.stop() == 0
    # A poison record, so the dead-letter queue has something to be searched.
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value=b"not an event", key=b"poison")
    assert producer.flush(10) == 0
    del producer  # closed now, not after the cluster is gone

    transforms = tmp_path / "transforms.yaml"
    key_file = tmp_path / "jwt-key"
    key_file.write_text(REPLAY_SECRETS["jwt key"])
    transforms.write_text(
        "credentials:\n"
        "  - name: shop-oauth\n"
        "    oauth2:\n"
        f"      token_url: {shadow_url}/oauth/token\n"
        "      client_id: replayer\n"
        "      client_secret: ${SHOP_CLIENT_SECRET}\n"
        "  - name: id-token\n"
        "    jwt_resign:\n"
        "      algorithm: HS256\n"
        f"      key: '@{key_file}'\n"
        "      header: X-Id-Token\n"
        "      prefix: ''\n",
        encoding="utf-8",
    )
    static_file = tmp_path / "session"
    static_file.write_text(REPLAY_SECRETS["static header from file"] + "\n")
    env = {
        **os.environ,
        "SHOP_CLIENT_SECRET": REPLAY_SECRETS["client secret"],
        "SHADOW_STATIC": REPLAY_SECRETS["static header from env"],
    }
    replay = run_cli(
        ["-v", "replay", "range", "-b", bootstrap, "-t", topic, "--start-offset", "0",
         "--target", shadow_url, "--run-id", "secrets", "--methods", "ALL",
         "--transforms", str(transforms), "--set-header", "X-Shadow-Key: ${SHADOW_STATIC}",
         "--set-header", f"X-Shadow-Session: @{static_file}"],
        env=env,
    )  # fmt: skip
    shadow.shutdown()
    shadow.server_close()
    # Exit 1: the poison record could not be replayed (it went to the dead-letter queue).
    assert replay.returncode == 1, replay.stderr
    assert "1 of 4 records could not be sent (errors 0, undecodable 1)" in replay.stderr
    html = tmp_path / "report.html"
    report = run_cli(["-v", "report", "-b", bootstrap, "-t", topic, "--html", str(html)])
    assert report.returncode == 0, report.stderr

    # The shadow got what it needs: the issued token, the recorded user's claims
    # signed with its key, and the static values from the environment and the file.
    assert len(received) == 3
    resigned = set()
    for authorization, token, static_env, static_file_value in received:
        assert authorization == f"Bearer {REPLAY_SECRETS['issued token']}"
        assert static_env == REPLAY_SECRETS["static header from env"]
        assert static_file_value == REPLAY_SECRETS["static header from file"]
        claims = jwt.decode(token, REPLAY_SECRETS["jwt key"], algorithms=["HS256"])
        assert claims["sub"] == "alice"
        resigned.add(token)
    assert len(resigned) == 1  # one token to search for: the same claims under one key
    planted = {**REPLAY_SECRETS, "re-signed jwt": resigned.pop(), "production signature": signature}

    kafka_records = everything_in_kafka(bootstrap)
    written = {
        "kafka": b"\n".join(kafka_records),
        "report.html": html.read_bytes(),
        "record stdout": recorder.stdout.encode(),
        "record stderr": recorder.stderr.encode(),
    }
    for name, result in (("replay", replay), ("report", report)):
        written[f"{name} stdout"] = result.stdout.encode()
        written[f"{name} stderr"] = result.stderr.encode()
    leaks = [
        (where, what)
        for where, data in written.items()
        for what, secret in planted.items()
        if secret.encode() in data
    ]
    assert leaks == []
    # What was searched holds what it should: three results, a dead letter, debug logs.
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "count"})
    try:
        for derived, expected in ((results_topic(topic), 3), (dlq_topic(topic), 1)):
            low, high = probe.get_watermark_offsets(TopicPartition(derived, 0), timeout=10)
            assert high - low == expected, derived
    finally:
        probe.close()
    assert "DEBUG" in replay.stderr
    assert "secrets" in report.stdout  # the terminal report was searched too (run id)
