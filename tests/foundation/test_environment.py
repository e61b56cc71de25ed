"""environment.yml lists exactly the dependencies of pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _environment() -> tuple[str, set[str]]:
    spec = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert "conda-forge" in spec["channels"]
    python = ""
    requirements: set[str] = set()
    for item in spec["dependencies"]:
        if isinstance(item, dict):
            requirements.update(r for r in item["pip"] if r != "-e .")
        elif item.startswith("python="):
            python = item.removeprefix("python=")
        elif item != "pip":
            requirements.add(item)
    return python, requirements


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {*project["dependencies"], *project["optional-dependencies"]["dev"]}
    python, requirements = _environment()
    assert python == project["requires-python"].removeprefix(">=")
    missing = wanted - requirements
    extra = requirements - wanted
    hint = "environment.yml drifted from pyproject.toml: run `python scripts/sync_environment.py`"
    assert not missing, f"{hint}; missing {sorted(missing)}"
    assert not extra, f"{hint}; extra {sorted(extra)}"


def test_every_dependency_has_a_lower_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    unpinned = [r for r in requirements if ">=" not in r]
    assert unpinned == []
