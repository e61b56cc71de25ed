"""Cross-checks with DCMTK, the reference DICOM tools: findscu, getscu, movescu, storescu."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from pacslab.pacs.embedded import EmbeddedPacs
from tests.conftest import require_tool
from tests.embedded.conftest import StudyFacts
from tests.embedded.dimse import find, values

pytestmark = pytest.mark.dcmtk


def _run(tool: str, *args: str | int | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool (TCP_NODELAY=1 as in every comparison) and fail with its output."""
    path = require_tool(tool, "dcmtk")
    env = {**os.environ, "TCP_NODELAY": "1"}
    result = subprocess.run(
        [path, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False
    )
    assert result.returncode == 0, f"{tool} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def _address(pacs: EmbeddedPacs) -> list[str | int | Path]:
    return ["-aet", "DCMTK", "-aec", pacs.ae_title, "127.0.0.1", pacs.port]


def test_findscu_lists_the_sample_studies(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts], tmp_path: Path
) -> None:
    keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName", "ModalitiesInStudy"]
    keys.append("NumberOfStudyRelatedInstances")
    _run(
        "findscu",
        "-S",
        *(a for k in keys for a in ("-k", k)),
        "-X",
        "-od",
        tmp_path,
        *_address(embedded_pacs),
    )
    answers = {ds.StudyInstanceUID: ds for ds in map(dcmread, sorted(tmp_path.glob("rsp*.dcm")))}
    assert set(answers) == set(studies)
    for uid, study in studies.items():
        assert answers[uid].NumberOfStudyRelatedInstances == study.n_instances
        assert set(values(answers[uid].ModalitiesInStudy)) == study.modalities
        assert str(answers[uid].PatientName) == study.patient_name


def test_findscu_with_a_date_range_and_wildcard(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts], tmp_path: Path
) -> None:
    keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=Doe*", "StudyDate=20000101-"]
    _run(
        "findscu",
        "-S",
        *(a for k in keys for a in ("-k", k)),
        "-X",
        "-od",
        tmp_path,
        *_address(embedded_pacs),
    )
    found = {dcmread(p).StudyInstanceUID for p in tmp_path.glob("rsp*.dcm")}
    assert found == {
        s.uid for s in studies.values() if s.patient_name.startswith("Doe") and s.date >= "20000101"
    }


def _same_pixels(received: list[Path], sources: list[Path]) -> None:
    got = {ds.SOPInstanceUID: ds for ds in map(dcmread, received)}
    expected = {ds.SOPInstanceUID: ds for ds in map(dcmread, sources)}
    assert set(got) == set(expected)
    for uid, source in expected.items():
        assert got[uid].PixelData == source.PixelData


def test_getscu_retrieves_a_series_unchanged(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts], tmp_path: Path
) -> None:
    study = next(s for s in studies.values() if s.from_dicomdir and "MR" in s.modalities)
    series_uid, files = max(study.series.items(), key=lambda item: len(item[1]))
    keys = ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study.uid}", f"SeriesInstanceUID={series_uid}"]
    _run("getscu", "-S", *(a for k in keys for a in ("-k", k)), "-od", tmp_path, *_address(embedded_pacs))
    _same_pixels(sorted(p for p in tmp_path.iterdir() if p.is_file()), files)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_movescu_receives_a_study(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts], tmp_path: Path
) -> None:
    study = next(s for s in studies.values() if s.patient_name == "Doe^Archibald" and "CT" in s.modalities)
    port = _free_port()  # movescu listens here for the C-STORE sub-operations
    embedded_pacs.add_destination("DCMTK_MOVE", "127.0.0.1", port)
    try:
        keys = ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study.uid}"]
        _run(
            "movescu",
            "-S",
            "-aem",
            "DCMTK_MOVE",
            "+P",
            port,
            *(a for k in keys for a in ("-k", k)),
            "-od",
            tmp_path,
            *_address(embedded_pacs),
        )
    finally:
        embedded_pacs.destinations.pop("DCMTK_MOVE", None)
    _same_pixels(
        sorted(p for p in tmp_path.iterdir() if p.is_file()), [f for fs in study.series.values() for f in fs]
    )


def test_storescu_puts_a_file_that_we_then_find(empty_pacs: EmbeddedPacs, tmp_path: Path) -> None:
    ds = dcmread(get_testdata_file("CT_small.dcm") or "")
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (generate_uid() for _ in range(3))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    _run("storescu", *_address(empty_pacs), path)
    (image,) = find(
        empty_pacs.port,
        "IMAGE",
        StudyInstanceUID=ds.StudyInstanceUID,
        SeriesInstanceUID=ds.SeriesInstanceUID,
        SOPInstanceUID="",
    )
    assert image.SOPInstanceUID == ds.SOPInstanceUID
