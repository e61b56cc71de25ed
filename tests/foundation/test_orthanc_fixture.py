"""The Orthanc fixture serves the sample data over DICOM and DICOMweb, on loopback only."""

from __future__ import annotations

from pacslab.pacs.orthanc import OrthancServer


def test_orthanc_holds_every_sample_study(orthanc: OrthancServer, samples: dict) -> None:
    studies = orthanc.get_json("/studies")
    # 7 pydicom studies + CT_small + MR_small + the CT and MR phantoms
    assert isinstance(studies, list)
    assert len(studies) == 11
    stats = orthanc.get_json("/statistics")
    assert isinstance(stats, dict)
    assert stats["CountInstances"] == sum(len(files) for files in samples.values())


def test_orthanc_serves_dicomweb(orthanc: OrthancServer) -> None:
    import requests

    response = requests.get(f"{orthanc.dicomweb_url}/studies", timeout=10)
    assert response.status_code == 200
    assert len(response.json()) == 11
