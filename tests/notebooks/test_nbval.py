"""Every notebook runs to the end on the pacslab kernel (``pytest --nbval-lax notebooks/``).

Cells marked ``# NBVAL_CHECK_OUTPUT`` must also print what the committed notebook shows,
after ``notebooks/sanitize.cfg`` has replaced UIDs, times and paths.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
# The most any one cell may take on a loaded two-core machine (a job over the sample series).
CELL_TIMEOUT_S = 300


def test_every_notebook_runs(kernel_environment: dict[str, str]) -> None:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        str(NOTEBOOKS),
        "--nbval-sanitize-with",
        str(NOTEBOOKS / "sanitize.cfg"),
        f"--nbval-cell-timeout={CELL_TIMEOUT_S}",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "--durations=5",
        "-q",
    ]
    result = subprocess.run(
        argv, cwd=ROOT, env=kernel_environment, capture_output=True, text=True, timeout=900, check=False
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    print(result.stdout[-3000:])  # the slowest cells, shown with -s or -rP
    summary = result.stdout.strip().splitlines()[-1]
    assert "passed" in summary, report
    # nbval collects one item per code cell; none may be skipped silently.
    assert "skipped" not in summary, report


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_committed_light(path: Path) -> None:
    """Committed notebooks keep only the small outputs nbval compares; none over 1 MB."""
    import nbformat

    assert path.stat().st_size < 1_000_000
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata.kernelspec.name == "pacslab"
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if not cell.source.startswith("# NBVAL_CHECK_OUTPUT"):
            assert cell.outputs == [], f"{path.name}: outputs left in a cell:\n{cell.source[:80]}"
        for output in cell.outputs:
            assert "image/png" not in output.get("data", {}), f"{path.name}: an image is committed"
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
