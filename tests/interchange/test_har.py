"""HAR export is valid HAR 1.2 and import reads it back (and browser HARs) into the same events."""

from __future__ import annotations

import base64
import calendar
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft6Validator, FormatChecker
from referencing import Registry, Resource

from interchange import har
from interchange.exchange import MalformedFile
from tests.interchange.events import BASE_US, event, sample

SCHEMA_DIR = Path(__file__).parent / "har_schema"


def validator() -> Draft6Validator:
    resources = []
    for path in SCHEMA_DIR.glob("*.json"):
        document = json.loads(path.read_text())
        resources.append((document["$id"], Resource.from_contents(document)))
    registry: Registry[Any] = Registry().with_resources(resources)
    root = json.loads((SCHEMA_DIR / "har.json").read_text())
    return Draft6Validator(root, registry=registry, format_checker=FormatChecker())


def export(events: list[Any]) -> str:
    out = io.StringIO()
    assert har.write(events, out, "0.1.0") == len(events)
    return out.getvalue()


def test_export_is_valid_har_1_2() -> None:
    document = json.loads(export(sample()))
    errors = sorted(validator().iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert document["log"]["version"] == "1.2"


def test_the_validator_rejects_a_broken_har() -> None:
    document = json.loads(export(sample()))
    del document["log"]["entries"][0]["request"]["headers"]
    document["log"]["entries"][1]["startedDateTime"] = "yesterday"
    assert len(list(validator().iter_errors(document))) == 2


def test_round_trip_keeps_method_path_headers_bodies_and_times(tmp_path: Path) -> None:
    events = sample()
    path = tmp_path / "t.har"
    path.write_text(export(events))
    back = har.read(str(path))
    assert len(back) == len(events)
    for before, after in zip(events, back, strict=True):
        for key in (
            "id",
            "method",
            "path",
            "scheme",
            "authority",
            "request",
            "client",
            "server",
            "request_start_us",
            "request_end_us",
            "response_start_us",
            "response_end_us",
            "http_version",
        ):
            assert after[key] == before[key], key
        assert after["response"] == before["response"]
        assert after["recorder"]["recorder_id"] == "import:har:t.har"
    assert back[5]["response"] is None and back[5]["error"] == "upstream refused"
    assert back[5]["recorder"]["capture"] == "mirror"
    assert back[0]["recorder"]["capture"] == "proxy"


def test_export_shows_binary_bodies_as_base64_and_decodes_gzip_content() -> None:
    plain = b'{"hello": "world"}'
    packed = gzip.compress(plain)
    gz = event(
        0,
        response_body=packed,
        response_headers=[
            b"Content-Encoding",
            b"gzip",
            b"Content-Length",
            str(len(packed)).encode(),
        ],
    )
    entries = json.loads(export([sample()[2], gz]))["log"]["entries"]
    content = entries[0]["response"]["content"]
    assert content["encoding"] == "base64"
    assert base64.b64decode(content["text"]) == b"\x89PNG\r\n\x1a\n\x00\xff"
    assert entries[1]["response"]["content"]["text"] == plain.decode()
    # Imported again, the body is gzip once more (the header says so), with the same content.
    back = har.read("x.har", json.dumps({"log": {"entries": entries}}).encode())
    assert gzip.decompress(back[1]["response"]["message"]["body"]) == plain


def browser_entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "startedDateTime": "2026-12-02T10:00:00.250Z",
        "time": 12.5,
        "request": {
            "method": "POST",
            "url": "https://api.test/v1/login?next=%2Fhome",
            "httpVersion": "http/2.0",
            "cookies": [],
            "headers": [
                {"name": ":authority", "value": "api.test"},
                {"name": "content-type", "value": "application/json"},
                {"name": "authorization", "value": "Bearer secret"},
            ],
            "queryString": [{"name": "next", "value": "/home"}],
            "postData": {"mimeType": "application/json", "text": '{"user": "ann"}'},
            "headersSize": -1,
            "bodySize": 15,
        },
        "response": {
            "status": 200,
            "statusText": "",
            "httpVersion": "http/2.0",
            "cookies": [],
            "headers": [{"name": "content-type", "value": "text/plain"}],
            "content": {"size": 2, "mimeType": "text/plain", "text": "ok"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 2,
        },
        "cache": {},
        "timings": {"send": 0.5, "wait": 10, "receive": 2},
        "connection": "12345",
    }
    entry.update(changes)
    return entry


def test_import_reads_a_browser_har() -> None:
    data = json.dumps({"log": {"version": "1.2", "entries": [browser_entry()]}}).encode()
    (ev,) = har.read("devtools.har", data)
    assert ev["method"] == "POST" and ev["scheme"] == "https" and ev["authority"] == "api.test"
    assert ev["path"] == b"/v1/login?next=%2Fhome"
    assert ev["http_version"] == "HTTP/2.0"
    assert ev["request"]["headers"] == [
        b"content-type",
        b"application/json",
        b"authorization",
        b"Bearer secret",
    ]
    assert ev["request"]["body"] == b'{"user": "ann"}'
    assert ev["request_start_us"] == calendar.timegm((2026, 12, 2, 10, 0, 0)) * 10**6 + 250_000
    assert ev["request_end_us"] == ev["request_start_us"] + 500
    assert ev["response_start_us"] == ev["request_end_us"] + 10_000
    assert ev["client"] == {"host": "", "port": 0}
    assert ev["id"] == har.read("devtools.har", data)[0]["id"]  # stable across imports


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"{not json", "devtools.har: not JSON"),
        (b'{"log": {}}', "devtools.har: log.entries is missing"),
        ({"startedDateTime": "noon"}, "entry 1: startedDateTime is not an ISO 8601 time"),
        ({"request": {"method": "GET"}}, "entry 1: request.url is missing"),
        ({"response": {"status": "200"}}, "entry 1: response.status is not an integer"),
        (
            {"request": {**browser_entry()["request"], "url": "/relative"}},
            "entry 1: request.url '/relative' is not an absolute http(s) URL",
        ),
        (
            {"request": {**browser_entry()["request"], "headers": [{"name": "a", "value": 1}]}},
            "entry 1: request.headers[0]: name and value must be strings",
        ),
        (
            {"request": {**browser_entry()["request"], "headers": [{"name": "a b", "value": ""}]}},
            "entry 1: request.headers[0]: 'a b' is not a header name",
        ),
        (
            {
                "request": {
                    **browser_entry()["request"],
                    "headers": [{"name": "a", "value": "x\r\nb: 1"}],
                }
            },
            "entry 1: request.headers[0]: the value of 'a' holds a line break",
        ),
    ],
)
def test_malformed_files_name_the_entry(document: Any, message: str) -> None:
    if isinstance(document, dict):
        entries = [browser_entry(), browser_entry(**document)]
        document = json.dumps({"log": {"entries": entries}}).encode()
    with pytest.raises(MalformedFile) as caught:
        har.read("devtools.har", document)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_times_are_exact_to_the_microsecond() -> None:
    (entry,) = json.loads(export([event(0)]))["log"]["entries"]
    assert entry["startedDateTime"].endswith("+00:00")
    assert (
        har.read("x.har", json.dumps({"log": {"entries": [entry]}}).encode())[0]["request_start_us"]
        == BASE_US
    )


def test_without_an_authority_the_url_names_the_server() -> None:
    v6 = event(0, authority="", server=("::1", 8080))
    nowhere = event(1, authority="", server=None)
    entries = json.loads(export([v6, nowhere]))["log"]["entries"]
    assert entries[0]["request"]["url"] == "http://[::1]:8080/items?id=1&q="
    assert entries[1]["request"]["url"].startswith("http://unknown.invalid/")
    back = har.read("x.har", json.dumps({"log": {"entries": entries}}).encode())
    assert back[0]["authority"] == "[::1]:8080" and back[0]["server"] == {
        "host": "::1",
        "port": 8080,
    }


def test_a_boolean_is_not_a_status() -> None:
    document = {"log": {"entries": [browser_entry(response={"status": True})]}}
    with pytest.raises(MalformedFile, match="entry 0: response.status is not an integer"):
        har.read("x.har", json.dumps(document).encode())
