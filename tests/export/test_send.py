"""Every kind of exported object over both transports: Orthanc takes them and files them in the study."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from pydicom.uid import SecondaryCaptureImageStorage

from pacslab.config import load_config
from pacslab.export import (
    EmptyResult,
    ExportError,
    deidentified_export,
    derived_series,
    measurement_report,
    segmentation_from_mask,
    send_to_pacs,
    write_folder,
)
from pacslab.pacs import connect_pacs


def _series_in_study(url: str, study_uid: str) -> dict[str, dict]:
    found = requests.post(
        f"{url}/tools/find",
        json={"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
        timeout=10,
    ).json()
    return {s["MainDicomTags"]["SeriesInstanceUID"]: s for s in found}


@pytest.mark.parametrize("transport", ["dimse", "dicomweb"])
def test_seg_sc_and_sr_are_filed_under_the_source_study(
    transport: str, empty_orthanc, ct_sources, ct_hu, mr_magnitude_sources
) -> None:
    mask = (ct_hu > 500).astype(np.uint8)
    seg = segmentation_from_mask(ct_sources, mask, ["skull"], "threshold", "1", result_key=transport)
    table = pd.DataFrame(
        {
            "sop_instance_uid": [str(d.SOPInstanceUID) for d in ct_sources],
            "area_mm2": mask.sum(axis=(1, 2)) * 16.0,
        }
    )
    sr = measurement_report(
        seg, table, ct_sources, algorithm_name="area", algorithm_version="1", result_key=transport
    )
    mr_values = np.stack([d.pixel_array for d in mr_magnitude_sources]) / 7.0
    sc = derived_series(mr_magnitude_sources, mr_values, "scale", "1", "divided by 7", result_key=transport)
    assert sc[0].SOPClassUID == SecondaryCaptureImageStorage

    node = empty_orthanc.node if transport == "dimse" else empty_orthanc.web_node
    with connect_pacs(node, load_config(env={})) as pacs:
        statuses = send_to_pacs(pacs, [seg, sr, *sc])
    assert [s.ok for s in statuses] == [True] * (2 + len(sc))
    assert [s.sop_instance_uid for s in statuses] == [str(d.SOPInstanceUID) for d in [seg, sr, *sc]]

    ct_series = _series_in_study(empty_orthanc.url, str(ct_sources[0].StudyInstanceUID))
    assert ct_series[str(seg.SeriesInstanceUID)]["MainDicomTags"]["Modality"] == "SEG"
    assert ct_series[str(sr.SeriesInstanceUID)]["MainDicomTags"]["Modality"] == "SR"
    mr_series = _series_in_study(empty_orthanc.url, str(mr_magnitude_sources[0].StudyInstanceUID))
    assert len(mr_series[str(sc[0].SeriesInstanceUID)]["Instances"]) == len(sc)


def test_nothing_to_send_or_nowhere_to_go(empty_orthanc, ct_sources, tmp_path: Path) -> None:
    with connect_pacs(empty_orthanc.node, load_config(env={})) as pacs, pytest.raises(EmptyResult):
        send_to_pacs(pacs, [])
    with pytest.raises(ExportError, match="needs a destination"):
        deidentified_export(ct_sources, tmp_path / "map.csv")


def test_folder_write_is_idempotent(ct_sources, ct_hu, tmp_path: Path) -> None:
    out = derived_series(ct_sources, ct_hu, "copy", "1", "copy", result_key="same")
    first = write_folder(out, tmp_path)
    again = write_folder(derived_series(ct_sources, ct_hu, "copy", "1", "copy", result_key="same"), tmp_path)
    assert first == again
    assert sorted(tmp_path.rglob("*.dcm")) == sorted(first)
    assert not list(tmp_path.rglob("*.partial"))
