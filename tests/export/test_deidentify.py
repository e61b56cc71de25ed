"""De-identified export: basic-profile attributes gone, private tags gone, UIDs remapped consistently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from pacslab.export import (
    DeidentificationError,
    PrivateTag,
    deidentified_copy,
    derived_series,
    segmentation_from_mask,
    write_pseudonym_map,
)
from pacslab.export.basic_profile import DUMMY, EMPTY, REMOVE

SECRETS = {
    "PatientName": "Doe^Jane^Q",
    "PatientID": "MRN-8812345",
    "PatientBirthDate": "19610203",
    "PatientAge": "063Y",
    "PatientSize": "1.64",
    "PatientWeight": "71.5",
    "PatientAddress": "12 Elm Street, Springfield",
    "OtherPatientIDs": "ALT-77123",
    "EthnicGroup": "Martian",
    "AdditionalPatientHistory": "allergic to penicillin, lives alone",
    "AccessionNumber": "ACC-2024-99871",
    "InstitutionName": "Springfield General Hospital",
    "InstitutionAddress": "1 Hospital Way, Springfield",
    "ReferringPhysicianName": "House^Gregory",
    "OperatorsName": "Tech^Tina",
    "StudyDescription": "CT head for Jane Doe fall",
    "SeriesDescription": "Axial Jane Doe",
    "ImageComments": "patient Jane Doe moved",
    "ProtocolName": "Springfield trauma protocol",
    "StationName": "SPRINGCT01",
    "DeviceSerialNumber": "SN-5551234",
    "StudyID": "SGH12345",
}
PRIVATE_SECRET = "Jane Doe private note"
PRIVATE_SAFE = "kernel B30f"


def _rich(sources: list[Dataset]) -> list[Dataset]:
    """Sources loaded with identifying data, in nested items and private tags too."""
    for ds in sources:
        for keyword, value in SECRETS.items():
            setattr(ds, keyword, value)
        request = Dataset()
        request.RequestedProcedureID = "RP-998877"
        request.ScheduledProcedureStepDescription = "Jane Doe head trauma"
        ds.RequestAttributesSequence = DicomSequence([request])
        block = ds.private_block(0x0029, "ACME IMAGING", create=True)
        block.add_new(0x01, "LO", PRIVATE_SECRET)
        block.add_new(0x02, "LO", PRIVATE_SAFE)
        ds.BurnedInAnnotation = "NO"
    return sources


def _all_values(ds: Dataset) -> list[str]:
    values: list[str] = []
    for element in ds.iterall():
        if element.VR not in ("SQ", "OB", "OW", "UN"):
            values.append(str(element.value))
    values.extend(str(e.value) for e in ds.file_meta)
    return values


def test_no_identifying_value_survives(tmp_path: Path, ct_sources, dciodvfy, save_all) -> None:
    rich = _rich(ct_sources)
    result = deidentified_copy(rich, keep_private=[PrivateTag(0x0029, "ACME IMAGING", 0x02)])
    assert result.held_back == []
    assert len(result.datasets) == len(rich)
    originals = {str(ds.SOPInstanceUID) for ds in rich} | {
        str(rich[0].StudyInstanceUID),
        str(rich[0].SeriesInstanceUID),
        str(rich[0].FrameOfReferenceUID),
    }
    secret_texts = [*SECRETS.values(), PRIVATE_SECRET, "RP-998877", "Jane Doe", "Springfield", "Doe^Jane"]
    for ds in result.datasets:
        values = _all_values(ds)
        leaked = [s for s in secret_texts if any(s in v for v in values)]
        assert leaked == []
        assert not originals & set(values)
        assert ds.PatientIdentityRemoved == "YES"
        assert "113100" in [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
        for keyword in REMOVE:
            assert keyword not in ds, keyword
        for keyword in EMPTY:
            assert keyword not in ds or not ds[keyword].value, keyword
        for keyword in DUMMY:
            assert keyword not in ds or ds[keyword].value in ("", "REMOVED"), keyword
        private = [element for element in ds if element.tag.is_private]
        # Only the listed private element and its creator stay.
        assert sorted(str(e.value) for e in private) == sorted(["ACME IMAGING", PRIVATE_SAFE])
    # The originals were not touched.
    assert rich[0].PatientName == SECRETS["PatientName"]
    for path in save_all(result.datasets, tmp_path):
        assert dciodvfy(path).errors == []


def test_uids_are_remapped_consistently_across_objects(tmp_path: Path, ct_sources, ct_hu, dciodvfy) -> None:
    mask = (ct_hu > 500).astype(np.uint8)
    seg = segmentation_from_mask(ct_sources, mask, ["skull"], "threshold", "1", result_key="job")
    derived = derived_series(ct_sources, ct_hu, "copy", "1", "copy", result_key="job")
    result = deidentified_copy([*ct_sources, seg, *derived], seed="project-secret")
    images = result.datasets[: len(ct_sources)]
    new_seg = result.datasets[len(ct_sources)]
    new_derived = result.datasets[len(ct_sources) + 1 :]
    new_uids = {str(ds.SOPInstanceUID) for ds in images}
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for series in new_seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced
    assert referenced <= new_uids
    assert new_seg.ReferencedSeriesSequence[0].SeriesInstanceUID == images[0].SeriesInstanceUID
    assert new_seg.FrameOfReferenceUID == images[0].FrameOfReferenceUID
    assert {str(ds.StudyInstanceUID) for ds in result.datasets} == {str(images[0].StudyInstanceUID)}
    for ds, source in zip(new_derived, images, strict=True):
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    # The map links each original to its pseudonym, one row per distinct value.
    table = result.pseudonyms
    study = table[table["attribute"] == "StudyInstanceUID"]
    assert study[["original", "pseudonym"]].values.tolist() == [
        [str(ct_sources[0].StudyInstanceUID), str(images[0].StudyInstanceUID)]
    ]
    assert len(table[table["attribute"] == "SOPInstanceUID"]) == len(result.datasets)
    # The same secret gives the same pseudonyms in a later export.
    again = deidentified_copy(ct_sources[:2], seed="project-secret")
    assert [d.SOPInstanceUID for d in again.datasets] == [d.SOPInstanceUID for d in images[:2]]
    assert again.datasets[0].PatientID == images[0].PatientID
    path = tmp_path / "seg.dcm"
    new_seg.save_as(path, enforce_file_format=True)
    assert dciodvfy(path).errors == []


def test_burned_in_annotation_is_held_back(ct_sources) -> None:
    ct_sources[1].BurnedInAnnotation = "YES"
    result = deidentified_copy(ct_sources)
    assert [h.sop_instance_uid for h in result.held_back] == [str(ct_sources[1].SOPInstanceUID)]
    assert "BurnedInAnnotation" in result.held_back[0].reason
    assert len(result.datasets) == len(ct_sources) - 1
    assert all(ds.PatientIdentityRemoved == "YES" for ds in result.datasets)


def test_pseudonym_map_is_appended(tmp_path: Path, ct_sources) -> None:
    path = tmp_path / "keys" / "pseudonyms.csv"
    first = deidentified_copy(ct_sources[:2], seed="s")
    write_pseudonym_map(first.pseudonyms, path)
    second = deidentified_copy(ct_sources[1:4], seed="s")
    write_pseudonym_map(second.pseudonyms, path)
    table = pd.read_csv(path, dtype=str)
    assert list(table.columns) == ["attribute", "original", "pseudonym"]
    sop = table[table["attribute"] == "SOPInstanceUID"]
    assert sorted(sop["original"]) == sorted(str(ds.SOPInstanceUID) for ds in ct_sources[:4])
    assert len(table[table["attribute"] == "PatientID"]) == 1  # same patient, same pseudonym


def test_undecodable_instance_is_named(ct_sources) -> None:
    broken = ct_sources[0]
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):
        broken.StudyDate = "2024-13-45"  # what a careless writer leaves in a real file
    with pytest.raises(DeidentificationError, match=str(broken.SOPInstanceUID)):
        deidentified_copy([broken])


def test_written_files_read_back(tmp_path: Path, ct_sources, save_all) -> None:
    result = deidentified_copy(_rich(ct_sources))
    (path,) = save_all(result.datasets[:1], tmp_path)
    back = pydicom.dcmread(path)
    assert back.PatientIdentityRemoved == "YES"
    np.testing.assert_array_equal(back.pixel_array, ct_sources[0].pixel_array)
