"""The batch pipeline's parameter checks: each wrong parameter is named before anything runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pacslab.config import Config, PacsNode
from pacslab.pipeline import (
    PipelineParameterError,
    StudiesFailed,
    StudyOutcome,
    check_parameters,
    summary_frame,
    write_summary_plot,
)

NODE = PacsNode(name="archive", ae_title="ARCHIVE", host="127.0.0.1", port=104)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(nodes=(NODE,), default_node="archive", store_path=tmp_path / "store")


def test_good_parameters_are_normalised(config: Config, tmp_path: Path) -> None:
    checked = check_parameters(
        config,
        study_uids="1.2.3, 1.2.4",
        processor="gaussian_denoise",
        processor_params={"sigma": 2},
        output_dir=tmp_path / "out",
    )
    assert checked.node == NODE
    assert checked.study_uids == ("1.2.3", "1.2.4")
    assert checked.processor.name == "gaussian_denoise"
    assert checked.processor_params == {"sigma": 2.0}
    assert checked.output_dir == tmp_path / "out"


def test_default_output_folder_is_under_the_store(config: Config) -> None:
    checked = check_parameters(config, query={"patient_id": "P1", "modality": ""}, processor="fft")
    assert checked.query == {"patient_id": "P1"}
    assert checked.output_dir.parent == config.store_path / "runs"
    assert checked.output_dir.name.startswith("batch-")


@pytest.mark.parametrize(
    ("kwargs", "parameter", "says"),
    [
        ({"node": "nowhere"}, "node", "No PACS node named 'nowhere'"),
        ({"study_uids": ["1.2.3", "DROP TABLE"]}, "study_uids", "'DROP TABLE' is not a UID"),
        ({"study_uids": ["1.2.3", "1.2.3"]}, "study_uids", "listed twice"),
        ({"study_uids": 12}, "study_uids", "expected a list"),
        ({"study_uids": [], "query": {}}, "study_uids", "at least one filter"),
        ({"query": {"patient": "Doe"}}, "query", "unknown filter 'patient'"),
        ({"query": "Doe"}, "query", "expected a mapping"),
        ({"processor": ""}, "processor", "name a processor"),
        ({"processor": "no_such"}, "processor", "no_such"),
        ({"processor_params": {"sigma": -1}}, "processor_params", "sigma"),
        ({"processor_params": {"radius": 3}}, "processor_params", "radius"),
        ({"processor_params": [1]}, "processor_params", "expected a mapping"),
    ],
)
def test_each_bad_parameter_is_named(
    config: Config, kwargs: dict[str, object], parameter: str, says: str
) -> None:
    arguments: dict[str, object] = {
        "study_uids": ["1.2.3"],
        "processor": "gaussian_denoise",
        **kwargs,
    }
    with pytest.raises(PipelineParameterError) as failure:
        check_parameters(config, **arguments)  # type: ignore[arg-type]
    assert failure.value.parameter == parameter
    assert says in str(failure.value)
    assert str(failure.value).startswith(f"parameter {parameter!r}: ")


def test_an_output_dir_that_is_a_file_is_refused(config: Config, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("", encoding="utf-8")
    with pytest.raises(PipelineParameterError, match="output_dir"):
        check_parameters(config, study_uids=["1.2.3"], processor="fft", output_dir=taken)


def test_summary_plot_and_failure_message(tmp_path: Path) -> None:
    outcomes = [
        StudyOutcome("1.2.3", patient_name="Doe^J", status="done", slices=4, slices_done=4),
        StudyOutcome(
            "1.2.4", patient_name="Roe^R", slices=4, slices_done=3, slices_failed=1, error="1 slice failed"
        ),
    ]
    summary = summary_frame(outcomes)
    assert list(summary["status"]) == ["done", "failed"]
    measurements = pd.DataFrame(
        {"series_uid": ["9.9"] * 3, "slice": [0, 1, 2], "area_mm2": [1.0, 2.0, 3.0], "sop_instance_uid": "x"}
    )
    path = write_summary_plot(summary, measurements, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    error = StudiesFailed([outcomes[1]], 2, tmp_path / "summary.csv")
    assert "1 of 2 studies failed" in str(error)
    assert "1.2.4 (Roe^R): 1 slice failed" in str(error)
