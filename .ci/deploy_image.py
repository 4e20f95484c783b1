"""The Dockerfile against the README and pyproject.toml (`image`).

The image must install the package with the README's own install command (the
same install for users and the image), get every package pyproject.toml lists
(and not lose one to .dockerignore), run as a non-root user, have a
HEALTHCHECK and `trafficmirror` as its entrypoint.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from deploy_common import Report


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        logical.append(current)
        current = ""
    if current:
        logical.append(current)
    result = []
    for entry in logical:
        instruction, _, args = entry.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def image(dockerfile: Path, readme: Path, pyproject: Path, dockerignore: Path) -> int:
    report = Report()
    instructions = _dockerfile_instructions(dockerfile.read_text())

    installs = [args for ins, args in instructions if ins == "RUN" and "pip install" in args]
    if len(installs) != 1:
        report.fail(
            f"{dockerfile.name} has exactly one `RUN pip install` step (found {len(installs)})"
        )
    else:
        command = installs[0]
        # The README may call pip through a path (.venv/bin/pip) and chain
        # commands after it, but must use the same arguments.
        pattern = re.compile(r"(^|[\s/`$(])" + re.escape(command) + r"($|[\s`;&|)])", re.M)
        if readme.is_file() and pattern.search(readme.read_text()):
            report.ok(
                f"{dockerfile.name} installs with `{command}`, the command {readme.name} gives"
            )
        else:
            report.fail(
                f"{readme.name} does not contain the Dockerfile's install command `{command}`: "
                "the image must install the package exactly as the README tells users to; "
                "change the Dockerfile and the README together"
            )

    setuptools_cfg = tomllib.loads(pyproject.read_text()).get("tool", {}).get("setuptools", {})
    listed = setuptools_cfg.get("packages") or []
    if isinstance(listed, dict):  # [tool.setuptools.packages.find]: the include patterns' tops
        listed = [pattern.rstrip(".*") for pattern in listed.get("find", {}).get("include", [])]
    wanted = list(listed)
    copied = " ".join(args for ins, args in instructions if ins in ("COPY", "ADD"))
    ignored = {
        line.strip().strip("/")
        for line in (dockerignore.read_text().splitlines() if dockerignore.is_file() else [])
        if line.strip() and not line.startswith("#")
    }
    for package in wanted:
        top = package.split(".")[0]
        in_copy = re.search(rf"(^|\s)(\./)?{re.escape(top)}/?(\s|$)", copied) is not None
        in_copy = in_copy or re.search(r"(^|\s)\.\s", copied) is not None
        exists = (dockerfile.parent / top).is_dir() or (pyproject.parent / top).is_dir()
        report.check(
            in_copy and top not in ignored and exists,
            f"the image gets package {top!r} (pyproject.toml lists it)",
            "not copied into the build, dropped by .dockerignore, or missing from the checkout",
        )
    for needed in ("pyproject.toml", "README.md"):
        report.check(
            needed in copied and needed not in ignored,
            f"the image build gets {needed}",
            "not copied, or dropped by .dockerignore",
        )

    users = [args for ins, args in instructions if ins == "USER"]
    last_user = users[-1].split(":")[0] if users else "root"
    report.check(
        last_user not in ("root", "0"),
        f"the image runs as a non-root user ({last_user})",
        "add a USER instruction",
    )
    report.check(
        any(ins == "HEALTHCHECK" for ins, _ in instructions), "the image has a HEALTHCHECK"
    )
    entrypoints = [args for ins, args in instructions if ins == "ENTRYPOINT"]
    report.check(
        bool(entrypoints) and entrypoints[-1].replace(" ", "") == '["trafficmirror"]',
        'the entrypoint is ["trafficmirror"]',
        f"found {entrypoints[-1] if entrypoints else 'none'}",
    )
    return report.exit_code()
