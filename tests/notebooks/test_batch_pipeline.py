"""The batch pipeline notebook, headless under papermill, against the embedded PACS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import pandas as pd
import papermill
import pytest
from PIL import Image
from pydicom import dcmread

from tests.notebooks.kernel_env import use_config, write_config

if TYPE_CHECKING:
    from distributed import Client

    from pacslab.pacs.embedded import EmbeddedPacs

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "notebooks" / "batch_pipeline.ipynb"


@pytest.fixture(scope="module")
def pipeline_config(
    tmp_path_factory: pytest.TempPathFactory, embedded_pacs: EmbeddedPacs, dask_client: Client
) -> Path:
    """A config file naming the session's embedded PACS, a fresh store and the test cluster."""
    root = tmp_path_factory.mktemp("pipeline")
    address = dask_client.scheduler.address  # type: ignore[union-attr]
    return write_config(root / "pacslab.toml", [embedded_pacs.node], root / "store", address)


@pytest.fixture
def pipeline_env(pipeline_config: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return use_config(pipeline_config, monkeypatch)


@pytest.fixture(scope="module")
def small_studies(samples: dict[str, list[Path]]) -> dict[str, dict[str, Any]]:
    """The pydicom sample studies (small images), by Study Instance UID."""
    studies: dict[str, dict[str, Any]] = {}
    for path in samples["pydicom"]:
        ds = dcmread(path, stop_before_pixels=True)
        entry = studies.setdefault(
            str(ds.StudyInstanceUID), {"patient_name": str(ds.PatientName), "series": set(), "files": 0}
        )
        entry["series"].add(str(ds.SeriesInstanceUID))
        entry["files"] += 1
    return studies


def test_pipeline_writes_its_outputs_and_records_its_parameters(
    pipeline_env: dict[str, str], tmp_path: Path, small_studies: dict[str, dict[str, Any]]
) -> None:
    # Two studies of one patient: a CT and a CR study of Doe^Archibald.
    chosen = sorted(uid for uid, s in small_studies.items() if s["patient_name"] == "Doe^Archibald")[:2]
    assert len(chosen) == 2
    out = tmp_path / "run"
    parameters = {
        "study_uids": chosen,
        "processor": "otsu_mask",
        "processor_params": {"fill_holes": False},
        "output_dir": str(out),
    }
    executed = out / "batch_pipeline.ipynb"
    out.mkdir()
    papermill.execute_notebook(
        str(PIPELINE), str(executed), parameters=parameters, kernel_name="pacslab", cwd=str(PIPELINE.parent)
    )

    record = nbformat.read(executed, as_version=4)
    assert record.metadata.papermill.parameters == parameters
    summary = pd.read_csv(out / "summary.csv", dtype={"study_uid": str})
    assert sorted(summary["study_uid"]) == chosen
    assert set(summary["status"]) == {"done"}
    assert (summary["slices_failed"] == 0).all()
    assert (summary["slices_done"] == summary["slices"]).all()
    assert (summary["slices_done"] > 0).all()
    assert set(summary["patient_name"]) == {"Doe^Archibald"}
    with Image.open(out / "summary.png") as plot:
        assert plot.format == "PNG"
        assert plot.width > 300
    written = json.loads((out / "parameters.json").read_text(encoding="utf-8"))
    assert written["processor"] == "otsu_mask"
    assert written["processor_params"] == {"largest_component": True, "fill_holes": False}
    assert not (out / "measurements.csv").exists()  # a mask processor measures nothing


def test_a_bad_parameter_fails_the_run_naming_it(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(
            str(PIPELINE),
            str(tmp_path / "batch_pipeline.ipynb"),
            parameters={"processor": "otsu_mask", "processor_params": {"sigma": 2}},
            kernel_name="pacslab",
            cwd=str(PIPELINE.parent),
        )
    assert failure.value.ename == "PipelineParameterError"
    assert "processor_params" in failure.value.evalue
    assert "sigma" in failure.value.evalue
    assert not list(tmp_path.glob("**/summary.csv"))  # it failed before retrieving anything


def test_a_failed_study_makes_pacslab_run_exit_non_zero(
    pipeline_env: dict[str, str], tmp_path: Path, small_studies: dict[str, dict[str, Any]]
) -> None:
    known = min(uid for uid, s in small_studies.items() if s["files"] == 1)
    missing = "1.2.826.0.1.3680043.8.498.999999"
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "pacslab.cli", "run", "batch_pipeline", "-o", str(out),
            "-p", "study_uids", json.dumps([known, missing]), "-p", "processor", "sobel_edges"]  # fmt: skip
    result = subprocess.run(argv, env=pipeline_env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "StudiesFailed" in result.stderr
    assert missing in result.stderr
    assert f"the executed notebook shows where: {out.resolve() / 'batch_pipeline.ipynb'}" in result.stderr
    summary = pd.read_csv(out / "summary.csv", dtype={"study_uid": str}).set_index("study_uid")
    assert summary.loc[known, "status"] == "done"
    assert summary.loc[missing, "status"] == "failed"
    assert "not found" in summary.loc[missing, "error"]
    executed = nbformat.read(out / "batch_pipeline.ipynb", as_version=4)
    assert executed.metadata.papermill.parameters["study_uids"] == [known, missing]
    assert executed.metadata.papermill.parameters["output_dir"] == str(out.resolve())
