"""Requests, contexts and rules for the transforming unit tests."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from replayer.models import OutgoingRequest, Target
from replayer.sending.request import build_request
from replayer.transforming.chain import Chain, entry
from replayer.transforming.config import Role, Rule
from replayer.transforming.loader import parse_text
from replayer.transforming.rules import RuleStep
from replayer.transforming.step import TransformContext
from schemas.records import HttpExchange
from tests.replayer.events import make_event

TARGET = Target.parse("http://shadow:8080")


def event(**kw: Any) -> HttpExchange:
    return cast(HttpExchange, make_event(**kw))


def request_of(ev: HttpExchange, target: Target = TARGET) -> OutgoingRequest:
    return build_request(ev, target)


def context(ev: HttpExchange, role: Role = "shadow", key: bytes | None = b"c1") -> TransformContext:
    return TransformContext(key, ev, role=role)


def rules(yaml_rules: str, environ: dict[str, str] | None = None) -> tuple[Rule, ...]:
    """The rules of a `rules:` list written in YAML (indented by two spaces)."""
    return parse_text("rules:\n" + yaml_rules, "t.yaml", environ or {}).rules


def chain_of(yaml_rules: str, environ: dict[str, str] | None = None) -> Chain:
    return Chain([entry(RuleStep(r), r.when) for r in rules(yaml_rules, environ)])


def run(chain: Chain, request: OutgoingRequest, ctx: TransformContext) -> OutgoingRequest:
    return asyncio.run(chain.run(request, ctx))
