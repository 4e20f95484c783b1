"""is_grpc_media: gRPC's content types, with or without a subtype and parameters; not gRPC-Web."""

from __future__ import annotations

import pytest

from trafficmirror.plumbing.grpcmedia import is_grpc_media


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/grpc", True),
        ("application/grpc+proto", True),
        (b"application/grpc+json", True),
        ("application/grpc; charset=utf-8", True),
        (b" application/grpc+proto ; x=1", True),
        ("Application/GRPC", True),
        (b"APPLICATION/GRPC+PROTO; Charset=x", True),
        ("application/grpc-web", False),
        (b"application/grpc-web+proto", False),
        ("application/grpc-web-text", False),
        ("application/grpcx", False),
        ("application/json", False),
        (b"", False),
        (None, False),
    ],
    ids=[
        "grpc",
        "grpc-proto",
        "grpc-json-bytes",
        "params",
        "spaces-params-bytes",
        "upper",
        "upper-params-bytes",
        "grpc-web",
        "grpc-web-proto",
        "grpc-web-text",
        "longer-name",
        "json",
        "empty",
        "none",
    ],
)
def test_is_grpc_media(content_type: bytes | str | None, expected: bool) -> None:
    assert is_grpc_media(content_type) is expected
