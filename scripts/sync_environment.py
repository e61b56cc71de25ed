"""Write environment.yml from pyproject.toml so the two list the same dependencies.

Packages that conda-forge carries under their PyPI name go to the conda section, the rest
to the pip section; the bounds are copied as they are. Run after editing pyproject.toml:
``python scripts/sync_environment.py``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_FORGE = {
    "numpy",
    "scipy",
    "pandas",
    "openpyxl",
    "pydicom",
    "pynetdicom",
    "h5py",
    "dask",
    "distributed",
    "scikit-image",
    "scikit-learn",
    "matplotlib",
    "pillow",
    "ipywidgets",
    "ipykernel",
    "jupyterlab",
    "voila",
    "papermill",
    "nbval",
    "requests",
    "pytest",
    "pytest-timeout",
    "ruff",
    "mypy",
    "pandas-stubs",
    "types-requests",
}


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    if match is None:
        raise ValueError(f"Cannot read a package name from {requirement!r}")
    return match.group(0).lower().replace("_", "-")


def project_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["dev"]]


def python_version() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project["requires-python"].removeprefix(">=")


def render() -> str:
    conda = [r for r in project_requirements() if requirement_name(r) in CONDA_FORGE]
    pip = [r for r in project_requirements() if requirement_name(r) not in CONDA_FORGE]
    lines = [
        "# Generated from pyproject.toml by scripts/sync_environment.py; tests/foundation checks they agree.",
        "name: pacslab",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={python_version()}",
        "  - pip",
        *[f'  - "{r}"' for r in conda],
        "  - pip:",
        *[f'      - "{r}"' for r in pip],
        "      - -e .",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    (ROOT / "environment.yml").write_text(render(), encoding="utf-8")
