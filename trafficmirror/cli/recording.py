"""The redaction, client-TLS, filter and memory options of `record`, as one click decorator.

The command gets them as a single `recorder_extras` argument, a dict of
validated fields of `recorder.config.RecordConfig`; bad input is a
`click.BadParameter` naming the option (one line, exit code 2). Redaction is
checked here, before anything starts, with the same `recorder.redact.Redactor`
the recorder builds (it imports nothing heavy).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_PARAMS = (
    "redact_headers",
    "redact_json",
    "redact_params",
    "redact_key_file",
    "no_default_redaction",
    "confdir",
    "tls_certs",
    "filter_expr",
    "max_buffered_bytes",
)


def recorder_extra_options(func: F) -> F:
    """Redaction (`--redact-*`) and client-TLS (`--confdir`, `--tls-cert`) options of `record`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _PARAMS}
        kwargs["recorder_extras"] = build_extras(**values)
        return func(*args, **kwargs)

    options = [
        click.option(
            "--redact-header",
            "redact_headers",
            multiple=True,
            metavar="NAME[=MODE]",
            help="Redact this header (requests, responses, trailers) before the event leaves "
            "the recorder. MODE: mask (value becomes ***; the default), drop, hmac "
            "(hmac-sha256:<hex> under your key: equal values stay equal), or jwt-claims "
            "(a JWT keeps header and claims, its signature is emptied: 'Bearer h.c.', for "
            "re-signing at replay; any other value is masked). Authorization, "
            "Proxy-Authorization, Cookie, Set-Cookie and X-Api-Key are masked by default; "
            "name one of them to change its mode. Repeatable.",
        ),
        click.option(
            "--redact-json",
            "redact_json",
            multiple=True,
            metavar="PATH[=MODE]",
            help="Redact values at this JSON path in request and response bodies: "
            "'$.password', '$.card.number=hmac', '$.users[*].token', '$..secret'. Changed bodies "
            "are stored as compact JSON (Content-Length updated in the event); a JSON body that "
            "cannot be parsed is left out of the event. Repeatable.",
        ),
        click.option(
            "--redact-param",
            "redact_params",
            multiple=True,
            metavar="NAME[=MODE]",
            help="Redact this query parameter and form field (urlencoded and multipart "
            "bodies of requests and responses) by name, compared percent-decoded and without "
            "case. MODE: mask (the default), drop (the field is removed) or hmac. The usual "
            "secret names (access_token, api_key, apikey, password, secret, signature, token, "
            "X-Amz-Signature, ...: see the security docs) are masked by default; name one to "
            "change its mode. Paths where nothing matched stay byte for byte. Repeatable.",
        ),
        click.option(
            "--redact-key-file",
            envvar="TRAFFICMIRROR_REDACT_KEY_FILE",
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="File holding the HMAC key (16+ bytes) for MODE hmac (env "
            "TRAFFICMIRROR_REDACT_KEY_FILE; or the key itself in TRAFFICMIRROR_REDACT_KEY).",
        ),
        click.option(
            "--no-default-redaction",
            is_flag=True,
            help="Do not mask the default headers, query parameters and form fields; "
            "only the --redact-* options apply.",
        ),
        click.option(
            "--confdir",
            envvar="TRAFFICMIRROR_CONFDIR",
            type=click.Path(file_okay=False),
            metavar="DIR",
            help="mitmproxy's folder: its CA (mitmproxy-ca.pem, created on first start) signs "
            "the certificates shown to clients that connect with TLS; clients must trust "
            "DIR/mitmproxy-ca-cert.pem. Default ~/.mitmproxy (env TRAFFICMIRROR_CONFDIR).",
        ),
        click.option(
            "--tls-cert",
            "tls_certs",
            multiple=True,
            metavar="[DOMAIN=]PEM",
            help="Show this certificate (PEM file with the certificate chain and its private "
            "key) to TLS clients, for DOMAIN or for every name ('*'); repeatable. Without it "
            "the CA in --confdir makes one.",
        ),
        click.option(
            "--filter",
            "filter_expr",
            envvar="TRAFFICMIRROR_RECORD_FILTER",
            metavar="EXPR",
            help="Record only exchanges matching this mitmproxy filter expression, e.g. "
            "'~u /api & !~m OPTIONS'; matched when the exchange ends, so '~c 500' works. "
            "Body operators (~b, ~bq, ~bs) match nothing: bodies stream through unkept. "
            "The others are proxied as usual, not recorded, and counted as filtered "
            "(env TRAFFICMIRROR_RECORD_FILTER).",
        ),
        click.option(
            "--max-buffered-bytes",
            type=click.IntRange(0),
            default=64 * 1024 * 1024,
            show_default=True,
            envvar="TRAFFICMIRROR_MAX_BUFFERED_BYTES",
            metavar="BYTES",
            help="Body bytes kept at most for all exchanges in flight together (64 MiB by "
            "default). Bodies stream through the recorder; each keeps its first "
            "--max-body-bytes for its event. Past this bound further bodies are recorded cut "
            "(flagged truncated, full length kept) and counted (budget_cut); live traffic is "
            "never slowed or failed (env TRAFFICMIRROR_MAX_BUFFERED_BYTES).",
        ),
    ]
    result: Any = wrapper
    for option in reversed(options):
        result = option(result)
    return result  # type: ignore[no-any-return]


def build_extras(
    *,
    redact_headers: tuple[str, ...],
    redact_json: tuple[str, ...],
    redact_key_file: str | None,
    redact_params: tuple[str, ...] = (),
    no_default_redaction: bool,
    confdir: str | None,
    tls_certs: tuple[str, ...],
    filter_expr: str | None = None,
    max_buffered_bytes: int = 64 * 1024 * 1024,
) -> dict[str, Any]:
    """Validated `RecordConfig` fields; bad input raises `click.BadParameter`."""
    from recorder.redact import Redactor
    from trafficmirror.plumbing.errors import ConfigError

    try:
        Redactor.from_options(
            redact_headers,
            redact_json,
            redact_key_file,
            not no_default_redaction,
            param_specs=redact_params,
        )
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="redaction") from None
    certs = []
    for spec in tls_certs:
        domain, sep, path = spec.rpartition("=")
        if not sep:
            domain, path = "*", spec
        if not domain or not path:
            raise click.BadParameter(f"{spec!r} is not [DOMAIN=]PEM", param_hint="--tls-cert")
        if not os.path.isfile(path):
            raise click.BadParameter(f"no such file: {path}", param_hint="--tls-cert")
        certs.append(f"{domain}={os.path.abspath(path)}")
    if filter_expr is not None:
        from recorder.selection import parse_flow_filter

        try:
            if parse_flow_filter(filter_expr) is None:
                raise ConfigError("the filter expression is empty")
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--filter") from None
    return {
        "redact_headers": list(redact_headers),
        "redact_json": list(redact_json),
        "redact_params": list(redact_params),
        "redact_key_file": redact_key_file,
        "redact_defaults": not no_default_redaction,
        "confdir": os.path.abspath(confdir) if confdir else None,
        "tls_certs": certs,
        "filter_expr": filter_expr,
        "max_buffered_bytes": max_buffered_bytes,
    }
