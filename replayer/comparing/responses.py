"""Compare a shadow response with the production response recorded in the event.

`compare()` is pure: two `ResponseView`s and the noise `Rules` in, a list of
`Difference`s out, over the status code, the headers and the body
(`replayer.comparing.content`: decoded; JSON by structure, text by line,
anything else by size and hash).
`classify()` applies Diffy's idea to recorded traffic: a difference that also
occurs between production and a second copy of production (the baseline) is
noise, not a regression. A mirror capture has no production response: the
baseline's takes its place (`compare_exchange`). Values in a `Difference` are
short display strings (JSON text for JSON values, the line for text), cut at
`VALUE_LIMIT` characters; None means absent. A gRPC call's status, trailers and
messages are compared by `replayer.comparing.grpc` instead of the body.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from replayer.comparing.content import MAX_DECODED_BYTES, compare_bodies, decode_content
from replayer.comparing.diff import (
    KINDS,
    MAX_BODY_DIFFERENCES,
    MAX_TEXT_HUNKS,
    VALUE_LIMIT,
    Difference,
    Kind,
    diff_json,
    diff_text,
    short,
    show_json,
)
from replayer.comparing.grpc import STATUS_FIELDS, GrpcCall, compare_call
from replayer.comparing.mapped import MappedValues
from replayer.comparing.noise import Rules
from replayer.comparing.view import ResponseView
from schemas.records import HttpExchange

if TYPE_CHECKING:
    from replayer.comparing.protodesc import ProtoDescriptors

__all__ = [
    "KINDS",
    "MAX_BODY_DIFFERENCES",
    "MAX_DECODED_BYTES",
    "MAX_TEXT_HUNKS",
    "MIRROR_CAPTURE",
    "VALUE_LIMIT",
    "Difference",
    "GrpcCall",
    "Kind",
    "MappedValues",
    "ResponseView",
    "classify",
    "compare",
    "compare_bodies",
    "compare_exchange",
    "compare_headers",
    "decode_content",
    "diff_json",
    "diff_text",
    "is_mirror_capture",
]

#: `recorder.capture` of an event recorded by `record --mirror` (no production response).
MIRROR_CAPTURE = "mirror"
# -- entry points -----------------------------------------------------------------


def compare(
    production: ResponseView,
    shadow: ResponseView,
    rules: Rules | None = None,
    mapped: MappedValues | None = None,
    call: GrpcCall | None = None,
) -> list[Difference]:
    """Every difference between `production` and `shadow` under `rules` (default: none).

    * the status code (not the reason phrase, which servers word freely);
    * headers, by lowercase name, each name's values in order, except the ones
      the rules skip (Date, Server, request ids ...; see
      `noise.DEFAULT_IGNORED_HEADERS`);
    * the body after undoing Content-Encoding (gzip, deflate, and br when the
      brotli module is importable): structurally when both sides are JSON (one
      difference per added, removed or changed path), line by line when both
      are text, by size and SHA-256 otherwise.

    `mapped`: (production, shadow) value pairs of correlated IDs; a header value,
    JSON value or text that differs only by them is equal (`MappedValues`).
    With `call` (a gRPC request), the status code and headers are compared as
    above, and the call's status, trailers and messages instead of the body
    (`replayer.comparing.grpc.compare_call`).
    """
    rules = rules or Rules()
    out: list[Difference] = []
    if production.status != shadow.status:
        out.append(Difference("status", "status", str(production.status), str(shadow.status)))
    if call is not None:
        # A Trailers-Only answer has grpc-status in its headers: compared as the call's status.
        out.extend(
            compare_headers(_without_status(production), _without_status(shadow), rules, mapped)
        )
        out.extend(compare_call(production, shadow, rules, call, mapped))
        return out
    out.extend(compare_headers(production, shadow, rules, mapped))
    out.extend(compare_bodies(production, shadow, rules, mapped))
    return out


def _without_status(response: ResponseView) -> ResponseView:
    headers = tuple(h for h in response.headers if h[0].lower() not in STATUS_FIELDS)
    return replace(response, headers=headers)


def is_mirror_capture(event: HttpExchange) -> bool:
    """True for an event of `record --mirror`: the recorder answered, production is unknown."""
    return event["recorder"]["capture"] == MIRROR_CAPTURE


def compare_exchange(
    event: HttpExchange,
    shadow: ResponseView,
    rules: Rules | None = None,
    baseline: ResponseView | None = None,
    *,
    equal_values: Collection[tuple[str, str]] = (),
    baseline_equal_values: Collection[tuple[str, str]] = (),
    protos: ProtoDescriptors | None = None,
) -> list[Difference]:
    """Compare the shadow with the event's production response, classified by the baseline.

    With `baseline`, the differences production also has with the baseline are
    marked noise. A mirror capture has no production response: with `baseline`
    the baseline's response takes production's place (only the rules say what is
    noise then: no second copy is left to tell a nondeterministic field), and
    without one there are no differences. Neither are there when production
    failed (the event records an upstream error): there is nothing to compare with.
    `equal_values` / `baseline_equal_values`: the (production, shadow) pairs value
    correlation mapped for the shadow's / the baseline's request of this exchange.
    A gRPC request is compared as a call (`GrpcCall`); `protos`, the
    descriptors of `--proto-descriptor-set`, let its messages compare field by field.
    """
    call = _grpc_call(event, protos)
    production = ResponseView.from_event(event)
    if production is None:
        if baseline is not None and is_mirror_capture(event):
            return compare(baseline, shadow, rules, call=call)
        return []
    mapped = MappedValues(equal_values) if equal_values else None
    differences = compare(production, shadow, rules, mapped, call)
    if baseline is not None:
        base_mapped = MappedValues(baseline_equal_values) if baseline_equal_values else None
        differences = classify(differences, compare(production, baseline, rules, base_mapped, call))
    return differences


def _grpc_call(event: HttpExchange, protos: ProtoDescriptors | None) -> GrpcCall | None:
    request = event.get("request")  # absent only in hand-made partial events
    if request is None or event.get("method") != "POST":  # every gRPC call is a POST
        return None
    return GrpcCall.of_request(event["path"], request["headers"], protos)


def classify(
    shadow_diffs: Sequence[Difference], baseline_diffs: Iterable[Difference]
) -> list[Difference]:
    """Mark as noise each shadow difference production also has with the baseline.

    A shadow difference is noise when the baseline differs in the same kind at
    the same path or at a JSON ancestor of it (baseline differs at `$.meta`:
    the shadow's `$.meta.ts` is noise). Values are not compared: a field that
    differs between two copies of production is nondeterministic, whatever it holds.
    """
    noisy = {(d.kind, d.path) for d in baseline_diffs}
    if not noisy:
        return list(shadow_diffs)
    result = []
    for diff in shadow_diffs:
        if not diff.noise and _covered(diff, noisy):
            diff = Difference(diff.kind, diff.path, diff.production, diff.shadow, noise=True)
        result.append(diff)
    return result


def _covered(diff: Difference, noisy: set[tuple[Kind, str]]) -> bool:
    if (diff.kind, diff.path) in noisy:
        return True
    if diff.kind not in ("body_json", "message"):
        return False
    return any(
        kind == diff.kind and (diff.path.startswith(path + ".") or diff.path.startswith(path + "["))
        for kind, path in noisy
    )


# -- headers ----------------------------------------------------------------------


def _header_map(response: ResponseView) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in response.headers:
        key = name.decode("latin-1").lower()
        values.setdefault(key, []).append(value.decode("utf-8", "backslashreplace"))
    return values


def _show_header(values: list[str] | None) -> str | None:
    if values is None:
        return None
    if len(values) == 1:
        return short(values[0])
    return show_json(values)


def compare_headers(
    production: ResponseView,
    shadow: ResponseView,
    rules: Rules,
    mapped: MappedValues | None = None,
) -> list[Difference]:
    """Header differences by lowercase name; duplicate values compare in order."""
    prod, shad = _header_map(production), _header_map(shadow)
    out = []
    for name in [*prod, *(n for n in shad if n not in prod)]:
        policy = rules.header_policy(name)
        if policy == "skip":
            continue
        a, b = prod.get(name), shad.get(name)
        if a != b and a is not None and b is not None and mapped:
            if [mapped.translate(v) for v in a] == b:
                continue
        if a != b:
            out.append(
                Difference("header", name, _show_header(a), _show_header(b), policy == "noise")
            )
    return out
