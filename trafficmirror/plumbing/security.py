"""Kafka security settings: reject what librdkafka would only fail on later.

TLS and SASL (PLAIN, SCRAM, OAUTHBEARER) are nothing but librdkafka
properties; the CLI's `--security-protocol`, `--sasl-*` and `--ssl-*` flags
become properties like any `-X`. `check_security` looks at the merged
properties before any client is made, and turns a contradictory or incomplete
combination (a SASL mechanism without SASL, a username without a password, a
certificate file that does not exist) into one `ConfigError` line that names
the flag to fix, instead of a connection that fails deep inside a command.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from trafficmirror.plumbing.errors import ConfigError

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
_SSL_FILES = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location")


def check_security(props: Mapping[str, str]) -> None:
    """Reject contradictory or incomplete security properties with one line (`ConfigError`)."""
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"unknown security.protocol {props['security.protocol']!r} "
            f"(use {', '.join(SECURITY_PROTOCOLS)})"
        )
    mechanism = props.get("sasl.mechanism", props.get("sasl.mechanisms", "")).upper()
    sasl = protocol.startswith("SASL_")
    if mechanism and mechanism not in SASL_MECHANISMS:
        raise ConfigError(
            f"unknown SASL mechanism {mechanism!r} (use {', '.join(SASL_MECHANISMS[:4])})"
        )
    if mechanism and not sasl:
        raise ConfigError(
            f"SASL mechanism {mechanism} needs security protocol SASL_SSL or SASL_PLAINTEXT, "
            f"not {protocol}"
        )
    if sasl and mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        missing = [k for k in ("sasl.username", "sasl.password") if not props.get(k)]
        if missing:
            raise ConfigError(
                f"SASL {mechanism} needs a username and a password (--sasl-username; the "
                f"password in TRAFFICMIRROR_SASL_PASSWORD); missing: {', '.join(missing)}"
            )
    if sasl and mechanism == "OAUTHBEARER":
        oidc = props.get("sasl.oauthbearer.method", "").lower() == "oidc"
        unsecure = props.get("enable.sasl.oauthbearer.unsecure.jwt", "").lower() == "true"
        if not oidc and not unsecure:
            raise ConfigError(
                "SASL OAUTHBEARER needs a token endpoint: --sasl-oauthbearer-token-endpoint-url, "
                "--sasl-oauthbearer-client-id and a client secret"
            )
        if oidc:
            needed = (
                "sasl.oauthbearer.token.endpoint.url",
                "sasl.oauthbearer.client.id",
                "sasl.oauthbearer.client.secret",
            )
            missing = [k for k in needed if not props.get(k)]
            if missing:
                raise ConfigError(f"SASL OAUTHBEARER (OIDC) is missing {', '.join(missing)}")
    given = [k for k in _SSL_FILES if props.get(k)]
    if given and not protocol.endswith("SSL"):
        raise ConfigError(
            f"{given[0]} is set but security protocol {protocol} does not use TLS "
            "(use SSL or SASL_SSL)"
        )
    for key in given:
        path = props[key]
        if key == "ssl.ca.location" and path == "probe":
            continue
        if not os.path.exists(path):
            raise ConfigError(f"{key}: no such file: {path}")
