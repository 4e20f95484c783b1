"""The options files of k8s/ and compose/ are valid for the CLI they configure.

Each `trafficmirror.toml` there is loaded the way `--config` loads it, so an
option renamed or removed in the CLI fails here rather than in a pod at start.
The deployments and the compose services point TRAFFICMIRROR_CONFIG at the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trafficmirror.cli.config_file import load
from trafficmirror.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*ROOT.glob("k8s/**/trafficmirror.toml"), *ROOT.glob("compose/*.toml")])


def test_there_are_options_files() -> None:
    names = {str(p.relative_to(ROOT)) for p in FILES}
    assert {
        "k8s/base/trafficmirror.toml",
        "k8s/jobs/replay-range/trafficmirror.toml",
        "compose/trafficmirror.toml",
    } <= names


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_options_file_loads(path: Path) -> None:
    defaults = load(str(path), cli)
    replaying = (
        defaults["worker"] if "[worker]" in path.read_text() else defaults["replay"]["range"]
    )
    assert replaying["target"] == "http://shadow:8080"
    assert replaying["methods"]


def test_the_workloads_read_the_file() -> None:
    for manifest, path in (
        ("k8s/base/replayer-deployment.yaml", "/etc/trafficmirror/config/trafficmirror.toml"),
        ("k8s/jobs/replay-range/job.yaml", "/etc/trafficmirror/config/trafficmirror.toml"),
        ("compose/docker-compose.yml", "/etc/trafficmirror/trafficmirror.toml"),
    ):
        text = (ROOT / manifest).read_text()
        assert "TRAFFICMIRROR_CONFIG" in text and path in text, manifest
