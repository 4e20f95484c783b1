"""Kafka security options (TLS, SASL) shared by every command that talks to Kafka.

Each flag, or its environment variable, is one librdkafka property. The
command does not see the flags: they are folded into its `kafka_properties`
(the `-X` list), ahead of the user's own `-X` items, so `build_settings` and
everything after it handle them like any other property. Precedence: the
`--kafka-config` file, then these flags and `-X`; a flag and a `-X` that set
the same property to different values are contradictory (exit code 2).

Passwords and client secrets are best given through the environment or the
properties file: a command line is visible to every user of the machine
(`ps`). Nothing here ever prints a secret; `trafficmirror kafka-config` shows
the effective configuration with secrets masked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_VISIBLE = "; a value given here is visible in the process list, prefer the environment"

#: (parameter, flag, librdkafka property, environment variable, help)
_FLAGS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "security_protocol",
        "--security-protocol",
        "security.protocol",
        "TRAFFICMIRROR_SECURITY_PROTOCOL",
        "How to talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL.",
    ),
    (
        "sasl_mechanism",
        "--sasl-mechanism",
        "sasl.mechanism",
        "TRAFFICMIRROR_SASL_MECHANISM",
        "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (with a SASL_* protocol).",
    ),
    (
        "sasl_username",
        "--sasl-username",
        "sasl.username",
        "TRAFFICMIRROR_SASL_USERNAME",
        "SASL user name (PLAIN, SCRAM).",
    ),
    (
        "sasl_password",
        "--sasl-password",
        "sasl.password",
        "TRAFFICMIRROR_SASL_PASSWORD",
        "SASL password (PLAIN, SCRAM)" + _VISIBLE + ".",
    ),
    (
        "ssl_ca_location",
        "--ssl-ca-location",
        "ssl.ca.location",
        "TRAFFICMIRROR_SSL_CA_LOCATION",
        "CA certificate(s) (PEM file) that signed the brokers' certificates; default: "
        "the system's.",
    ),
    (
        "ssl_certificate_location",
        "--ssl-certificate-location",
        "ssl.certificate.location",
        "TRAFFICMIRROR_SSL_CERTIFICATE_LOCATION",
        "Client certificate (PEM) for mutual TLS.",
    ),
    (
        "ssl_key_location",
        "--ssl-key-location",
        "ssl.key.location",
        "TRAFFICMIRROR_SSL_KEY_LOCATION",
        "Private key (PEM) of the client certificate.",
    ),
    (
        "ssl_key_password",
        "--ssl-key-password",
        "ssl.key.password",
        "TRAFFICMIRROR_SSL_KEY_PASSWORD",
        "Password of the private key" + _VISIBLE + ".",
    ),
    (
        "sasl_oauthbearer_token_endpoint_url",
        "--sasl-oauthbearer-token-endpoint-url",
        "sasl.oauthbearer.token.endpoint.url",
        "TRAFFICMIRROR_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
        "OAUTHBEARER: the OIDC token endpoint (client credentials grant).",
    ),
    (
        "sasl_oauthbearer_client_id",
        "--sasl-oauthbearer-client-id",
        "sasl.oauthbearer.client.id",
        "TRAFFICMIRROR_SASL_OAUTHBEARER_CLIENT_ID",
        "OAUTHBEARER: the OIDC client id.",
    ),
    (
        "sasl_oauthbearer_client_secret",
        "--sasl-oauthbearer-client-secret",
        "sasl.oauthbearer.client.secret",
        "TRAFFICMIRROR_SASL_OAUTHBEARER_CLIENT_SECRET",
        "OAUTHBEARER: the OIDC client secret" + _VISIBLE + ".",
    ),
    (
        "sasl_oauthbearer_scope",
        "--sasl-oauthbearer-scope",
        "sasl.oauthbearer.scope",
        "TRAFFICMIRROR_SASL_OAUTHBEARER_SCOPE",
        "OAUTHBEARER: scope(s) to ask the token endpoint for.",
    ),
)


def kafka_security_options(func: F) -> F:
    """The TLS/SASL flags; the command gets them inside its `kafka_properties`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {param: kwargs.pop(param) for param, *_ in _FLAGS}
        kwargs["kafka_properties"] = merge_properties(values, kwargs.get("kafka_properties", ()))
        return func(*args, **kwargs)

    result: Any = wrapper
    for param, flag, prop, env, text in reversed(_FLAGS):
        kwargs: dict[str, Any] = {}
        if param == "security_protocol":
            kwargs["type"] = click.Choice(
                ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], case_sensitive=False
            )
        elif param == "sasl_mechanism":
            kwargs["type"] = click.Choice(
                ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"], case_sensitive=False
            )
        else:
            kwargs["metavar"] = "FILE" if "location" in param else "TEXT"
        result = click.option(
            flag, param, envvar=env, help=f"{text} (-X {prop}; env {env})", **kwargs
        )(result)
    return result  # type: ignore[no-any-return]


def merge_properties(values: dict[str, str | None], extra: tuple[str, ...]) -> tuple[str, ...]:
    """`KEY=VALUE` items for the given flags, then the user's `-X` items.

    Raises `click.BadParameter` when a flag and a `-X` item disagree.
    """
    props: dict[str, str] = {}
    for param, flag, prop, _env, _text in _FLAGS:
        value = values.get(param)
        if value is None or value == "":
            continue
        if param in ("security_protocol", "sasl_mechanism"):
            value = value.upper()
        props[prop] = value
        if param == "sasl_oauthbearer_token_endpoint_url":
            if props.setdefault("sasl.mechanism", "OAUTHBEARER") != "OAUTHBEARER":
                raise click.BadParameter(
                    f"a token endpoint is for OAUTHBEARER, not {props['sasl.mechanism']}",
                    param_hint=flag,
                )
            props["sasl.oauthbearer.method"] = "oidc"
    flags = {prop: flag for _param, flag, prop, _env, _text in _FLAGS}
    for item in extra:
        key, sep, value = item.partition("=")
        key = key.strip()
        if key == "sasl.mechanisms":
            key = "sasl.mechanism"
        if sep and key in props and props[key] != value.strip():
            hint = flags.get(key, "a flag")
            raise click.BadParameter(f"-X {key} contradicts {hint} (give it once)", param_hint="-X")
    return tuple(f"{k}={v}" for k, v in props.items()) + tuple(extra)
