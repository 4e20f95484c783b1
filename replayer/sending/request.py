"""Turn a recorded `HttpExchange` event into the request sent to the shadow.

The request is the recorded one, byte for byte where the wire allows: method,
raw path with query (never re-quoted), body, and headers in their recorded
order, case and duplicates. What must change does: the target's scheme, host
and port replace the recorded ones, hop-by-hop headers go, Host names the
target, Content-Length states the body sent, and a replay header marks it.
A truncated body is not sent at all (`Skipped`), and an event no valid request
can be made of raises `Unsendable`, a poison record for the dead-letter queue
(`replayer.results.dlq`). `build_request` lists each rule and why.
"""

from __future__ import annotations

import re
from functools import lru_cache

from replayer.models import OutgoingRequest, Skipped, Target, Unsendable
from schemas.records import HttpExchange

#: Marks every replayed request; its value is the recorded exchange id.
REPLAY_HEADER = "X-Trafficmirror-Replay"

#: Connection-specific headers (RFC 9110 section 7.6.1, plus the Proxy-* family).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"}
)

_REPLAY_MARKER = REPLAY_HEADER.lower()


# Regular expressions rather than loops over the bytes: these run for every
# header of every replayed record.
#: An RFC 9110 token (methods, header names).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_IN_VALUE = re.compile(rb"[\r\n\x00]")
_BAD_IN_ID = re.compile("[\r\n\x00]")
_BAD_IN_AUTHORITY = re.compile(rb"[\x00-\x20\x7f/?#@\\]")
#: A 253-character DNS name, ":65535", or an IPv6 literal in brackets with a port.
MAX_AUTHORITY = 262


def _is_token(raw: bytes) -> bool:
    return _TOKEN.fullmatch(raw) is not None


@lru_cache(maxsize=256)
def _is_method(method: str) -> bool:
    return _is_token(method.encode("utf-8", "surrogatepass"))


# Cached, like `_header_name`: a topic holds few distinct authorities and methods.
# (An exception is not cached: a bad one is checked again each time.)
@lru_cache(maxsize=1024)
def check_authority(authority: str) -> None:
    """Raise `Unsendable` for an authority that cannot name a host (see the module doc)."""
    raw = authority.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_AUTHORITY:
        raise Unsendable(f"authority of {len(raw)} bytes is not a host[:port]")
    if _BAD_IN_AUTHORITY.search(raw):
        raise Unsendable(f"authority {authority[:80]!r} is not a host[:port]")


#: Bytes that cannot appear in a request line as they are.
_NOT_IN_REQUEST_LINE = re.compile(rb"[\x00-\x20\x7f-\xff]")

#: What a recorded header name means for the request (see `build_request`).
_DROP, _KEEP, _LENGTH, _CONNECTION, _BAD_NAME = range(5)


@lru_cache(maxsize=4096)
def _header_name(raw: bytes) -> tuple[str, int]:
    """The name as text and its role; cached: traffic has few distinct header names."""
    name = _text(raw)
    lowered = name.lower()
    if lowered == "connection":
        return name, _CONNECTION
    if (
        lowered in HOP_BY_HOP
        or lowered.startswith("proxy-")
        or lowered == "host"
        or lowered == _REPLAY_MARKER
        or lowered.startswith(":")  # HTTP/2 pseudo-headers never belong in the list
    ):
        return name, _DROP
    if not _is_token(raw):
        return name, _BAD_NAME
    if lowered == "content-length":
        return name, _LENGTH
    return name, _KEEP


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _path(raw: bytes) -> str:
    """The origin-form request target (`/path?query`) from what the recorder saw."""
    if raw.startswith(b"/"):
        path = raw
    elif raw.lower().startswith((b"http://", b"https://")):
        # Absolute form (a client that spoke to the recorder as a forward proxy).
        slash = raw.find(b"/", raw.index(b"//") + 2)
        query = raw.find(b"?")
        if slash == -1 or (query != -1 and query < slash):
            path = b"/" + (raw[query:] if query != -1 else b"")
        else:
            path = raw[slash:]
    elif raw == b"*":
        raise Skipped("unsupported", "asterisk-form request target (OPTIONS *)")
    elif not raw:
        path = b"/"
    else:
        raise Unsendable(f"request target {raw[:80]!r} is not a path")
    # Bytes outside printable ASCII cannot appear in a request line; escape them
    # the way a client would rather than refusing the whole request.
    if _NOT_IN_REQUEST_LINE.search(path):
        path = b"".join(b"%%%02X" % b if (b <= 0x20 or b >= 0x7F) else bytes((b,)) for b in path)
    return path.decode("ascii")


def build_request(event: HttpExchange, target: Target) -> OutgoingRequest:
    """The request to send for `event`; raises `Skipped` when it must not be replayed.

    Headers keep their recorded order, case and duplicates, except:

    * hop-by-hop headers describe the recorded client's connection to the
      recorder, not the request, so they are dropped: Connection, Keep-Alive,
      Proxy-* (Proxy-Connection, Proxy-Authorization, ...), TE, Trailer,
      Transfer-Encoding, Upgrade, and every header the Connection header names;
    * Host is set to the target's `host[:port]` (the port only when it is not
      the scheme's default) and sent first, like GoReplay does: a shadow behind
      a virtual host or a load balancer must be reachable by the name it is
      called by. The original is in the event's `authority` field;
    * Content-Length stays where it was but always states the length of the
      body actually sent (the body is sent whole: chunked uploads arrive with a
      Content-Length instead of Transfer-Encoding);
    * `X-Trafficmirror-Replay: <exchange id>` is appended, so the shadow (and
      its logs) can tell replayed traffic apart; a recorded one is replaced.

    Header values that are not valid UTF-8 are read as Latin-1 (every byte maps
    to one character), which keeps them printable but means their bytes on the
    wire differ: the HTTP client writes UTF-8.

    A request whose body the recorder truncated (`body_truncated`) raises
    `Skipped("truncated")`: sending the first bytes as if they were the whole
    body would test the shadow with a request nobody made. `Unsendable` is
    raised for a request target that is neither origin form, absolute form nor
    `*`; a method that is not an RFC 9110 token; a header name that is not a
    token, or a value holding CR, LF or NUL (they would split or end the
    request on the wire); an authority longer than 262 characters (a
    253-character DNS name, a port and brackets) or holding whitespace,
    control characters or `/?#@\\`; an exchange id with CR, LF or NUL (it is
    the value of the replay header).

    Nothing else is raised for an event the codec decoded (every field there,
    with its schema type): tests/schemas/test_codec_fuzz.py feeds it mutated
    records.
    """
    message = event["request"]
    if message["body_truncated"]:
        length = message["body_length"]
        known = f"{length} bytes" if length >= 0 else "unknown length"
        raise Skipped("truncated", f"request body was truncated by the recorder ({known})")
    body = message["body"]
    flat = message["headers"]
    named = [(flat[i], _header_name(flat[i]), flat[i + 1]) for i in range(0, len(flat) - 1, 2)]
    method = event["method"]
    if not _is_method(method):
        raise Unsendable(f"method {method[:40]!r} is not an HTTP token")
    check_authority(event["authority"])
    path = _path(event["path"])

    connection_named: set[str] = set()
    for _, (_, role), raw_value in named:
        if role == _CONNECTION:
            connection_named.update(
                token.strip().lower() for token in _text(raw_value).split(",") if token.strip()
            )

    headers: list[tuple[str, str]] = [("Host", target.host_port)]
    seen_length = False
    for raw_name, (name, role), raw_value in named:
        if role == _DROP or role == _CONNECTION:
            continue
        if connection_named and name.lower() in connection_named:
            continue
        if role == _BAD_NAME:
            raise Unsendable(f"header name {raw_name[:40]!r} is not an HTTP token")
        if _BAD_IN_VALUE.search(raw_value):
            raise Unsendable(f"header {raw_name[:40]!r} has a value with CR, LF or NUL")
        if role == _LENGTH:
            if seen_length:
                continue
            seen_length = True
            headers.append((name, str(len(body))))
            continue
        try:
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            value = raw_value.decode("latin-1")
        headers.append((name, value))
    exchange_id = event["id"]
    if _BAD_IN_ID.search(exchange_id):
        raise Unsendable(f"exchange id {exchange_id[:40]!r} cannot be a header value")
    headers.append((REPLAY_HEADER, exchange_id))
    return OutgoingRequest(
        method=method,
        target=target,
        path=path,
        headers=tuple(headers),
        body=body,
        exchange_id=exchange_id,
        http_version=event["http_version"],
        trailers=_pairs(event["request"]["trailers"]),
    )


def _pairs(flat: list[bytes] | None) -> tuple[tuple[str, str], ...]:
    """Flat recorded [name, value, ...] pairs as text pairs (undecodable bytes replaced)."""
    if not flat:
        return ()
    text = [raw.decode("utf-8", "replace") for raw in flat]
    return tuple(zip(text[0::2], text[1::2], strict=False))
