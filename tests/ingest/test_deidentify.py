"""De-identification at ingest: dicognito, a pseudonym map, burned-in images held back."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import pydicom
import pytest

from pacslab.ingest import PSEUDONYM_MAP_NAME, BurnedInAnnotation, PseudonymMap, ingest_paths
from pacslab.store import SliceStore
from tests.ingest.dicom_files import ct_datasets, pixels, write_datasets


def identified_ct(folder: Path, n: int = 3) -> list[Path]:
    datasets = ct_datasets(n, 16)
    for ds in datasets:
        ds.PatientName = "Doe^Jane"
        ds.PatientID = "MRN-123456"
        ds.OtherPatientIDs = "OLD-9"
        ds.ReferringPhysicianName = "House^Gregory"
        ds.InstitutionAddress = "1 Hospital Road"
        ds.add_new(0x00091010, "LO", "private note about Jane")
        # Free text the basic profile removes too (dicognito alone keeps it).
        ds.StudyDescription = "Jane's follow-up"
        ds.ImageComments = "Jane moved"
        ds.PatientComments = "Jane is allergic"
        ds.BurnedInAnnotation = "NO"
    return write_datasets(folder, datasets)


def test_headers_are_deidentified_and_pixels_kept(store: SliceStore, tmp_path: Path) -> None:
    files = identified_ct(tmp_path / "ct")
    report = ingest_paths(store, files, deidentify=True)
    assert report.n_instances == 3
    original = pydicom.dcmread(files[0])
    (study,) = store.list_studies()
    assert study.patient_id != "MRN-123456"
    assert "Doe" not in study.patient_name
    uid = report.series_uids[0]
    assert uid != original.SeriesInstanceUID
    header = store.read_header(uid, 0)
    assert header.PatientIdentityRemoved == "YES"
    assert header.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    text = str(header)
    for secret in ("Doe", "MRN-123456", "OLD-9", "House", "Hospital Road", "private note", "Jane"):
        assert secret not in text
    assert not any(element.tag.is_private for element in header)
    assert (store.read_slice(uid, 0) == pixels(files[0])).all()


def test_pseudonyms_are_stable_and_mapped(store: SliceStore, tmp_path: Path) -> None:
    files = identified_ct(tmp_path / "ct")
    first = ingest_paths(store, files[:2], deidentify=True)
    second = ingest_paths(store, files, deidentify=True)
    assert first.series_uids == second.series_uids, "same originals, same pseudonyms: the series extends"
    assert store.series(second.series_uids[0]).n_slices == 3
    mapping = PseudonymMap(store.root / PSEUDONYM_MAP_NAME)
    assert mapping.lookup("PatientID", "MRN-123456") == store.list_studies()[0].patient_id
    assert (
        mapping.lookup("SeriesInstanceUID", pydicom.dcmread(files[0]).SeriesInstanceUID)
        == first.series_uids[0]
    )
    exported = mapping.export_csv(tmp_path / "map.csv")
    with exported.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {"PatientID", "PatientName", "SOPInstanceUID"} <= {r["attribute"] for r in rows}
    assert stat.S_IMODE((store.root / PSEUDONYM_MAP_NAME).stat().st_mode) == 0o600
    mapping.close()


def test_burned_in_annotation_is_held_back(store: SliceStore, tmp_path: Path) -> None:
    datasets = ct_datasets(2, 16)
    datasets[1].BurnedInAnnotation = "YES"
    files = write_datasets(tmp_path / "ct", datasets)
    report = ingest_paths(store, files, deidentify=True)
    assert report.n_instances == 1
    assert [(r.name, type(r.error)) for r in report.rejected] == [(str(files[1]), BurnedInAnnotation)]


@pytest.mark.parametrize("deidentify", [False, True])
def test_without_the_option_nothing_is_changed(store: SliceStore, tmp_path: Path, deidentify: bool) -> None:
    files = identified_ct(tmp_path / "ct", n=1)
    ingest_paths(store, files, deidentify=deidentify)
    assert (store.list_studies()[0].patient_id == "MRN-123456") is not deidentify
