"""Results of gRPC calls: the endpoint is the method's path, message paths aggregate."""

from __future__ import annotations

from typing import Any

from replayer.comparing.responses import Difference, ResponseView
from replayer.results.aggregate import Aggregate
from replayer.results.build import build_result
from tests.replayer.events import make_event

NAME = Difference("message", "messages[3].user.name", '"bob"', '"BOB"')


def grpc_result(
    path: str, content_type: str, differences: tuple[Difference, ...] = ()
) -> dict[str, Any]:
    event = make_event(method="POST", path=path, headers=[("content-type", content_type)])
    return dict(
        build_result(
            event,  # type: ignore[arg-type]  # a plain dict, as the codec gives it
            topic="t",
            partition=0,
            offset=1,
            target="http://127.0.0.1:9",
            sent_us=event["request_start_us"],
            shadow=ResponseView(200),
            shadow_latency_s=0.01,
            differences=differences,
        )
    )


def test_grpc_endpoint_is_the_method_path_untemplated() -> None:
    # A method name that the path heuristics would take for a token stays as it is.
    call = grpc_result("/pkg.v1.Svc/GetByIdX9aB3cD4eF5gH6?x=1", "application/grpc+proto")
    assert call["endpoint"] == "/pkg.v1.Svc/GetByIdX9aB3cD4eF5gH6"
    web = grpc_result("/pkg.v1.Svc/GetByIdX9aB3cD4eF5gH6", "application/grpc-web")
    assert web["endpoint"] == "POST /pkg.v1.Svc/{token}"


def test_message_differences_count_by_field_across_messages() -> None:
    results = [
        dict(grpc_result("/shop.v1.Users/ListUsers", "application/grpc", (NAME,)), id=f"x{n}")
        for n in range(3)
    ]
    stats = Aggregate().add_all(results).total()  # type: ignore[arg-type]
    assert stats.top_paths() == [("message", "messages[*].user.name", 3)]
    assert stats.mismatch_by_kind["message"] == 3
