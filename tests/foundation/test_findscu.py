"""DCMTK's findscu, a client nobody here wrote, finds the sample studies on both PACS fixtures."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.conftest import require_tool


def _findscu_study_uids(host: str, port: int, called_ae: str) -> set[str]:
    findscu = require_tool("findscu", "dcmtk")
    result = subprocess.run(
        [findscu, "-v", "-S", "-aet", "FINDSCU", "-aec", called_ae,
         "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "PatientName",
         host, str(port)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TCP_NODELAY": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"\(0020,000d\) UI \[([0-9.]+)[\x00 ]?\]", result.stdout + result.stderr))


def _sample_study_uids(samples: dict[str, list[Path]]) -> set[str]:
    return {
        str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID)
        for files in samples.values()
        for p in files
    }


@pytest.mark.parametrize("peer", ["orthanc", "embedded_pacs"])
def test_findscu_lists_the_sample_studies(
    peer: str, request: pytest.FixtureRequest, samples: dict[str, list[Path]]
) -> None:
    server = request.getfixturevalue(peer)
    found = _findscu_study_uids("127.0.0.1", server.dicom_port, server.ae_title)
    assert found == _sample_study_uids(samples)
    assert len(found) == 11
