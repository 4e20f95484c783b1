"""The alert record: `schemas/alert.v1.avsc`, its TypedDict, and a codec round trip."""

from __future__ import annotations

from monitor.alerts import to_alert
from monitor.findings import Finding, Source
from schemas.codec import Codec
from schemas.records import Alert
from tests.schemas.test_records import check, newest


def finding() -> Finding:
    return Finding(
        kind="status_burst",
        severity="warning",
        message="client addr:10.0.0.7: 25x404 of 25 responses in 10s",
        window_start_us=10_000_000,
        window_end_us=20_000_000,
        client="addr:10.0.0.7",
        count=25,
        observed_rate=2.5,
        statuses=((404, 25),),
        exchange_ids=("a", "b"),
        source=Source("traffic", 3, 17),
    )


def test_the_typed_dict_matches_the_newest_schema() -> None:
    check(Alert, newest("alert"), {}, "alert")


def test_an_alert_round_trips_through_the_codec() -> None:
    codec = Codec("alert")
    alert = to_alert(finding(), "host:1", 123)
    encoded = codec.encode(alert)
    assert encoded.value[:2] == b"\xc3\x01"
    assert dict(encoded.headers)["content-type"].startswith(
        b"application/avro; schema=io.trafficmirror.Alert; v=1"
    )
    decoded = codec.decode_alert(encoded.value)
    assert decoded == alert
    assert decoded["statuses"] == [{"status": 404, "count": 25}]
    assert decoded["source"] == {"topic": "traffic", "partition": 3, "offset": 17}


def test_optional_fields_default_when_left_out() -> None:
    codec = Codec("alert")
    alert = to_alert(finding(), "host:1", 123)
    for name in ("client", "endpoint", "observed_rate", "baseline_rate", "statuses", "location",
                 "detector", "exchange_ids", "source"):  # fmt: skip
        del alert[name]  # type: ignore[misc]
    decoded = codec.decode_alert(codec.encode(alert).value)
    assert decoded["client"] is None and decoded["statuses"] == [] and decoded["source"] is None
