"""The transforms files shipped with the deployment examples are valid and do what they say."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from replayer.transforming.loader import parse_text
from replayer.transforming.stage import Transformer
from tests.replayer.transforming.helpers import TARGET, context, event, request_of

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = [
    (ROOT / "k8s/overlays/example/transforms.yaml", "/etc/trafficmirror/shadow-credentials/token"),
    (ROOT / "compose/transforms.yaml", "/run/secrets/shadow-token"),
]


@pytest.mark.parametrize(("path", "token_path"), EXAMPLES, ids=["k8s", "compose"])
def test_the_example_sends_the_mounted_token_and_drops_cookies(
    path: Path, token_path: str, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("mounted-token\n")
    # The mounted Secret's path, here a temporary file.
    options = parse_text(path.read_text().replace(token_path, str(token)), str(path), {})
    transformer = Transformer(options, TARGET)
    assert transformer.shadow is not None
    ev = event(headers=[("Authorization", "***"), ("Cookie", "a=***")])
    out = asyncio.run(transformer.shadow.run(request_of(ev), context(ev)))
    assert out.header("Authorization") == "Bearer mounted-token"
    assert out.header("Cookie") is None
    assert out.header("X-Replayed-By") == "trafficmirror"


def test_the_example_token_files_are_placeholders() -> None:
    for folder in ("k8s/overlays/example", "compose"):
        text = next((ROOT / folder).glob("shadow-token.txt")).read_text()
        assert text.strip() == "example-shadow-token-replace-me"
