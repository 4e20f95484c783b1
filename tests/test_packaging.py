"""The distribution holds every module: a non-editable install (`pip install .`, the
README's first command and the Dockerfile's) takes only the packages pyproject.toml
names, while an editable one finds everything, so a forgotten subpackage passes every
other test and breaks only the installed product."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent
TOP = ("trafficmirror", "recorder", "replayer", "interchange", "monitor", "schemas")


def test_every_folder_with_python_code_is_a_package_in_the_distribution() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = config["tool"]["setuptools"]["packages"]
    if isinstance(packages, list):  # an explicit list ships exactly those
        shipped = set(packages)
    else:
        shipped = set(find_packages(str(ROOT), include=packages["find"]["include"]))
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for top in TOP
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert folders - shipped == set(), "folders with code that a `pip install .` leaves out"
    assert {p.split(".")[0] for p in shipped} == set(TOP)
