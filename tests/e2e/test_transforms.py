"""Transforms through real processes: `replay range` rewrites, routes and hooks what it sends.

Events go straight into the broker (the recorder's key and timestamp
conventions) for three services sharing one topic; real aiohttp shadows keep
what they receive. Checked: `--set-header` (from the environment and from a
file), `--remove-header` and `--target-map` across two shadows (the third
authority skipped and counted); a `--transforms` file with regex and JSON
rules (what each shadow receives, Content-Length included, and the rule names
in `<topic>.results` and in `trafficmirror report`); a bad file as one line
with its line number, exit 2; a hook module that skips some records and raises
for others (counted as skipped-transform, the first failure logged once).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from schemas.codec import Codec
from schemas.records import ReplayResult
from tests.replayer.events import make_event, produce_events
from tests.support import Kafka, run_cli
from trafficmirror.demo.apps import Received, RecordingShadow
from trafficmirror.plumbing.kafka import results_topic

pytestmark = pytest.mark.e2e

SHOP, API, OTHER = "shop.example.com", "api.example.com:8443", "other.example.com"


def replay(kafka: Kafka, topic: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return run_cli(
        ["-v", "replay", "range", "-b", kafka.bootstrap_servers, "-t", topic,
         "--start-offset", "0", "--speed", "max", "--methods", "ALL", *args],
        timeout=90,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def counts(stdout: str) -> dict[str, int]:
    """The summary's `total:` line as {name: number}."""
    line = next(ln for ln in stdout.splitlines() if ln.startswith("total: "))
    return {m[1]: int(m[2]) for m in re.finditer(r"([a-z-]+) (\d+)", line)}


def results(kafka: Kafka, topic: str) -> list[ReplayResult]:
    codec = Codec("replay_result")
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"read-{topic}",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([results_topic(topic)])
    out: list[ReplayResult] = []
    ended: set[int] = set()
    try:
        while len(ended) < 2:
            message = consumer.poll(10)
            assert message is not None, "results topic read timed out"
            if message.error():
                ended.add(message.partition())
                continue
            out.append(codec.decode_result(message.value()))
    finally:
        consumer.close()
    return out


def by_tag(received: list[Received]) -> dict[str, Received]:
    return {r.header("X-Tag") or "?": r for r in received}


def test_headers_and_a_target_map_across_two_shadows(kafka: Kafka, tmp_path: Path) -> None:
    topic = kafka.new_topic(2)
    kafka.create_topic(results_topic(topic), 2)
    events = [
        make_event(
            authority=authority,
            path=f"/{n}",
            client=("10.0.0.1", 40000 + n),
            headers=[("Host", authority), ("X-Tag", f"{authority}-{n}"), ("Authorization", "***"),
                     ("Cookie", "session=***"), ("cookie", "more=***"), ("Accept", "*/*")],
        )
        for n in range(4)
        for authority in (SHOP, API, OTHER)
    ]  # fmt: skip
    produce_events(kafka.bootstrap_servers, topic, events, spread=2)
    token_file = tmp_path / "tenant"
    token_file.write_text("tenant-42\n")
    with RecordingShadow() as shop, RecordingShadow() as api:
        done = replay(
            kafka,
            topic,
            "--target-map", f"{SHOP}={shop.url}",
            "--target-map", f"API.example.com={api.url}",  # any port of that host
            "--set-header", "Authorization: Bearer ${SHADOW_TOKEN}",
            "--set-header", f"X-Tenant: @{token_file}",
            "--remove-header", "cookie",
            env={"SHADOW_TOKEN": "shadow-t0ken"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        shop_got, api_got = shop.wait_for(4), api.wait_for(4)
    assert sorted(by_tag(shop_got)) == [f"{SHOP}-{n}" for n in range(4)]
    assert sorted(by_tag(api_got)) == [f"{API}-{n}" for n in range(4)]
    for item in shop_got + api_got:
        names = [k.decode().lower() for k, _ in item.headers]
        assert item.header("Authorization") == "Bearer shadow-t0ken"
        assert names.count("authorization") == 1
        assert "cookie" not in names
        assert item.header("X-Tenant") == "tenant-42"
    assert {r.header("Host") for r in shop_got} == {shop.url.removeprefix("http://")}
    assert counts(done.stdout)["skipped-unmapped-authority"] == 4
    assert counts(done.stdout)["sent"] == 8
    assert f"{SHOP}={shop.url}" in done.stdout  # the summary says where records went
    # The secret given for replay is in no log line, even at -v.
    assert "shadow-t0ken" not in done.stderr + done.stdout

    stored = results(kafka, topic)
    assert len(stored) == 12
    sent = [r for r in stored if r["outcome"] != "skipped"]
    assert {r["target"] for r in sent} == {shop.url, api.url}
    for result in sent:
        assert result["transforms"] == [
            "set-header:Authorization",
            "set-header:X-Tenant",
            "remove-header:cookie",
        ]
    skipped = [r for r in stored if r["outcome"] == "skipped"]
    assert {r["error"] for r in skipped} == {"unmapped-authority"}
    assert "shadow-t0ken" not in json.dumps(stored)


RULES = """\
rules:
  - name: api-v2
    when: {path: '^/api/v1/', method: [GET, POST]}
    replace_path: {pattern: '^/api/v1/', with: /api/v2/}
  - name: tenant
    replace_query: {pattern: 'tenant=prod', with: 'tenant=shadow'}
  - name: referer
    replace_header: {name: Referer, pattern: '//prod\\.', with: '//shadow.'}
  - name: email
    when: {method: POST}
    json_set: {path: $.user.email, value: "replay@shadow.example"}
  - name: no-card
    json_delete: $.payment.card
  - name: text-env
    replace_body: {pattern: 'env=prod', with: 'env=shadow-environment'}
"""


def test_a_transforms_file_rewrites_path_query_headers_and_bodies(
    kafka: Kafka, tmp_path: Path
) -> None:
    topic = kafka.new_topic(2)
    kafka.create_topic(results_topic(topic), 2)
    order = json.dumps({"user": {"email": "a@prod.example"}, "payment": {"card": "4111"}}).encode()
    events = [
        make_event(path="/api/v1/orders/17?tenant=prod&page=2",
                   headers=[("X-Tag", "get"), ("Referer", "https://prod.example.com/cart")]),
        make_event(method="POST", path="/api/v1/orders", body=order,
                   headers=[("X-Tag", "post-json"), ("Content-Type", "application/json"),
                            ("Content-Length", str(len(order)))]),
        make_event(method="PUT", path="/settings", body=b"env=prod&x=1",
                   headers=[("X-Tag", "put-text"), ("Content-Type", "text/plain"),
                            ("Content-Length", "12")]),
        make_event(path="/static/logo.png", headers=[("X-Tag", "untouched")]),
    ]  # fmt: skip
    produce_events(kafka.bootstrap_servers, topic, events, partition=0)
    rules = tmp_path / "transforms.yaml"
    rules.write_text(RULES)
    with RecordingShadow() as shadow:
        done = replay(kafka, topic, "--target", shadow.url, "--transforms", str(rules))
        assert done.returncode == 0, done.stderr
        got = by_tag(shadow.wait_for(4))
    assert got["get"].path == "/api/v2/orders/17?tenant=shadow&page=2"
    assert got["get"].header("Referer") == "https://shadow.example.com/cart"
    posted = got["post-json"]
    assert posted.path == "/api/v2/orders"
    assert json.loads(posted.body) == {"user": {"email": "replay@shadow.example"}, "payment": {}}
    assert posted.header("Content-Length") == str(len(posted.body)) != str(len(order))
    put = got["put-text"]
    assert put.body == b"env=shadow-environment&x=1"
    assert put.header("Content-Length") == str(len(put.body))
    assert got["untouched"].path == "/static/logo.png"

    applied = {r["path"]: r["transforms"] for r in results(kafka, topic)}
    assert applied == {
        "/api/v1/orders/17?tenant=prod&page=2": ["api-v2", "tenant", "referer"],
        "/api/v1/orders": ["api-v2", "email", "no-card"],
        "/settings": ["text-env"],
        "/static/logo.png": [],
    }
    report = run_cli(["report", "-b", kafka.bootstrap_servers, "-t", topic])
    assert report.returncode == 0, report.stderr
    assert "Transforms applied" in report.stdout
    assert re.search(r"POST /api/v1/orders: api-v2 ×1, email ×1, no-card ×1", report.stdout)


def test_a_bad_transforms_file_is_one_line_with_its_line_number(
    kafka: Kafka, tmp_path: Path
) -> None:
    rules = tmp_path / "bad.yaml"
    rules.write_text("rules:\n  - name: ok\n    remove_header: Cookie\n  - name: broken\n"
                     "    replace_path: {pattern: '(unclosed', with: x}\n")  # fmt: skip
    done = replay(kafka, "no-topic-needed", "--target", "http://127.0.0.1:9",
                  "--transforms", str(rules))  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{rules}:5: bad regular expression '(unclosed'" in lines[0]
    assert done.stdout == ""


HOOK = """
import json

def transform(request):
    tag = request.header("X-Tag")
    if tag.startswith("skip"):
        return None
    if tag.startswith("boom"):
        raise RuntimeError("hook failed on " + tag)
    request.set_header("X-Hooked", request.meta.exchange_id + "/" + request.meta.role)
    status = request.meta.event["response"]["status"]
    request.body = json.dumps({"original_status": status}).encode()
    return request
"""


def test_a_hook_module_changes_skips_and_fails_without_crashing(
    kafka: Kafka, tmp_path: Path
) -> None:
    topic = kafka.new_topic(2)
    kafka.create_topic(results_topic(topic), 2)
    tags = ["keep-1", "skip-1", "boom-1", "keep-2", "skip-2", "boom-2", "boom-3"]
    events = [
        make_event(method="POST", path=f"/{tag}", status=201, exchange_id=f"ex-{tag}",
                   headers=[("X-Tag", tag), ("Content-Length", "0")])
        for tag in tags
    ]  # fmt: skip
    produce_events(kafka.bootstrap_servers, topic, events, partition=0)
    (tmp_path / "replay_hooks.py").write_text(HOOK)
    with RecordingShadow() as shadow:
        done = run_cli(
            ["replay", "range", "-b", kafka.bootstrap_servers, "-t", topic, "--start-offset", "0",
             "--speed", "max", "--methods", "ALL", "--target", shadow.url,
             "--transform-module", "replay_hooks:transform"],
            timeout=90,
            cwd=tmp_path,  # the working directory is on the path for the hook
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        got = by_tag(shadow.wait_for(2))
    assert sorted(got) == ["keep-1", "keep-2"]
    assert got["keep-1"].header("X-Hooked") == "ex-keep-1/shadow"
    assert json.loads(got["keep-1"].body) == {"original_status": 201}
    assert got["keep-1"].header("Content-Length") == str(len(got["keep-1"].body))
    total = counts(done.stdout)
    assert (total["sent"], total["skipped-transform"]) == (2, 5)
    # The first failure of the kind is logged with its traceback, the others only counted.
    assert done.stderr.count("the transform hook raised RuntimeError") == 1
    assert done.stderr.count("Traceback") == 1
    by_path = {r["path"]: r for r in results(kafka, topic)}
    assert by_path["/boom-2"]["outcome"] == "skipped"
    assert by_path["/boom-2"]["error"] == "transform"
    assert by_path["/keep-1"]["transforms"] == ["hook:replay_hooks:transform"]
