"""``pacslab run``: notebook lookup, parameter values, refusals before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pacslab.notebook_run import (
    NOTEBOOKS_DIR,
    NotebookRunError,
    declared_parameters,
    parse_value,
    resolve_notebook,
    run_notebook,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("otsu_mask", "otsu_mask"),
        ("3", 3),
        ("2.5", 2.5),
        ("True", True),
        ("false", False),
        ("None", None),
        ("Doe*", "Doe*"),
        ("1.2.840.10008.1", "1.2.840.10008.1"),
        ('["1.2.3", "1.2.4"]', ["1.2.3", "1.2.4"]),
        ('{"sigma": 2}', {"sigma": 2}),
    ],
)
def test_values_read_like_papermill_plus_json(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_bad_json_is_refused_with_the_value() -> None:
    with pytest.raises(NotebookRunError, match=r"\[1, 2"):
        parse_value("[1, 2")


def test_notebooks_are_found_by_name_or_path(tmp_path: Path) -> None:
    assert resolve_notebook("batch_pipeline") == NOTEBOOKS_DIR / "batch_pipeline.ipynb"
    assert resolve_notebook("batch_pipeline.ipynb") == NOTEBOOKS_DIR / "batch_pipeline.ipynb"
    assert resolve_notebook(NOTEBOOKS_DIR / "dashboard.ipynb") == NOTEBOOKS_DIR / "dashboard.ipynb"
    with pytest.raises(NotebookRunError, match=r"no notebook 'nothing'.*batch_pipeline"):
        resolve_notebook("nothing")
    (tmp_path / "notes.txt").write_text("not a notebook", encoding="utf-8")
    with pytest.raises(NotebookRunError):
        resolve_notebook(tmp_path / "notes.txt")


def test_the_pipeline_declares_its_parameters() -> None:
    declared = declared_parameters(NOTEBOOKS_DIR / "batch_pipeline.ipynb")
    assert list(declared) == ["node", "study_uids", "query", "processor", "processor_params", "output_dir"]


def test_an_unknown_parameter_is_refused_before_running(tmp_path: Path) -> None:
    with pytest.raises(NotebookRunError, match=r"has no parameter 'procesor'.*processor"):
        run_notebook("batch_pipeline", {"procesor": "otsu_mask"}, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_names_the_unknown_parameter_and_exits_2(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "pacslab.cli", "run", "batch_pipeline", "-o", str(tmp_path),
            "-p", "procesor", "otsu_mask"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "has no parameter 'procesor'" in result.stderr
