"""Which kustomizations under k8s/ get built and validated (`discover`).

Every kustomization that is not a Component is an entry point to build; a
Component is validated only through an entry point that uses it, so one that
no built kustomization reaches (through any depth of resources) fails: nothing
would ever check it. A new overlay or job is picked up without listing it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from deploy_common import Report

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def _kustomizations(root: Path) -> dict[Path, dict[str, Any]]:
    found: dict[Path, dict[str, Any]] = {}
    for name in KUSTOMIZATION_NAMES:
        for path in sorted(root.rglob(name)):
            found[path.parent.resolve()] = yaml.safe_load(path.read_text()) or {}
    return found


def _references(directory: Path, doc: dict[str, Any]) -> Iterator[tuple[str, Path]]:
    """(field, directory) for every local directory a kustomization pulls in."""
    for field in ("resources", "components", "bases"):
        for entry in doc.get(field) or []:
            if isinstance(entry, str) and "://" not in entry:
                target = (directory / entry).resolve()
                if target.is_dir():
                    yield field, target


def discover(root: Path) -> int:
    # stdout is the build list (one directory a line); the checks go to stderr.
    report = Report(sys.stderr)
    docs = _kustomizations(root)
    components = {d for d, doc in docs.items() if doc.get("kind") == "Component"}
    entries = sorted(d for d in docs if d not in components)

    # Components reached from any entry point, through any depth of resources.
    used: set[Path] = set()
    seen: set[Path] = set()
    stack = list(entries)
    while stack:
        directory = stack.pop()
        if directory in seen or directory not in docs:
            continue
        seen.add(directory)
        for _field, target in _references(directory, docs[directory]):
            if target in components:
                used.add(target)
            stack.append(target)

    for component in sorted(components):
        rel = component.relative_to(root.resolve())
        report.check(
            component in used,
            f"component {rel} is used by an overlay that gets built",
            "no overlay lists it, so it is never validated",
        )
    for entry in entries:
        print(entry.relative_to(root.resolve()))
    return report.exit_code()
