"""C-ECHO and C-FIND against the seeded embedded PACS, checked against the sample files."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import pytest
from pydicom import Dataset, dcmread

from pacslab.pacs.embedded import EmbeddedPacs
from tests.embedded.conftest import StudyFacts
from tests.embedded.dimse import (
    PATIENT_ROOT_FIND,
    STUDY_ROOT_FIND,
    associate,
    find,
    find_status,
    values,
)

STUDY_KEYS = {
    "PatientName": "",
    "PatientID": "",
    "StudyInstanceUID": "",
    "StudyDate": "",
    "StudyDescription": "",
    "ModalitiesInStudy": "",
    "NumberOfStudyRelatedSeries": "",
    "NumberOfStudyRelatedInstances": "",
}


def test_echo(embedded_pacs: EmbeddedPacs) -> None:
    with associate(embedded_pacs.port) as assoc:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000


def test_study_level_lists_every_study_with_its_counts(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]
) -> None:
    found = {ds.StudyInstanceUID: ds for ds in find(embedded_pacs.port, "STUDY", **STUDY_KEYS)}
    assert set(found) == set(studies)
    dicomdir = [s for s in studies.values() if s.from_dicomdir]
    assert len(dicomdir) == 7
    assert sum(s.n_instances for s in dicomdir) == 81
    for study in studies.values():
        answer = found[study.uid]
        assert str(answer.PatientName) == study.patient_name
        assert answer.PatientID == study.patient_id
        assert answer.StudyDate == study.date
        assert answer.StudyDescription == study.description
        assert set(values(answer.ModalitiesInStudy)) == study.modalities
        assert answer.NumberOfStudyRelatedSeries == len(study.series)
        assert answer.NumberOfStudyRelatedInstances == study.n_instances
        assert answer.RetrieveAETitle == embedded_pacs.ae_title
        assert answer.QueryRetrieveLevel == "STUDY"


def test_patient_root_lists_patients_with_their_counts(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]
) -> None:
    answers = find(
        embedded_pacs.port,
        "PATIENT",
        PATIENT_ROOT_FIND,
        PatientID="",
        PatientName="",
        NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedSeries="",
        NumberOfPatientRelatedInstances="",
    )
    by_id = {ds.PatientID: ds for ds in answers}
    assert set(by_id) == {s.patient_id for s in studies.values()}
    for patient_id, answer in by_id.items():
        own = [s for s in studies.values() if s.patient_id == patient_id]
        assert answer.NumberOfPatientRelatedStudies == len(own)
        assert answer.NumberOfPatientRelatedSeries == sum(len(s.series) for s in own)
        assert answer.NumberOfPatientRelatedInstances == sum(s.n_instances for s in own)
        assert str(answer.PatientName) == own[0].patient_name


def test_patient_root_study_level_of_one_patient(
    embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]
) -> None:
    peter = next(s for s in studies.values() if s.patient_name == "Doe^Peter")
    answers = find(
        embedded_pacs.port, "STUDY", PATIENT_ROOT_FIND, PatientID=peter.patient_id, StudyInstanceUID=""
    )
    assert {ds.StudyInstanceUID for ds in answers} == {
        s.uid for s in studies.values() if s.patient_id == peter.patient_id
    }
    assert len(answers) == 4


def _name_like(pattern: str) -> Callable[[StudyFacts], bool]:
    return lambda s: fnmatch.fnmatchcase(s.patient_name.lower(), pattern.lower())


STUDY_FILTERS: dict[str, tuple[dict[str, str], Callable[[StudyFacts], bool]]] = {
    "name wildcard, any case": ({"PatientName": "doe^p*"}, _name_like("doe^p*")),
    "name single-character wildcard": ({"PatientName": "Doe^Archibal?"}, _name_like("doe^archibal?")),
    "exact date": ({"StudyDate": "20010101"}, lambda s: s.date == "20010101"),
    "date range": ({"StudyDate": "20000101-20021231"}, lambda s: "20000101" <= s.date <= "20021231"),
    "open start": ({"StudyDate": "-19991231"}, lambda s: s.date <= "19991231"),
    "open end": ({"StudyDate": "20030505-"}, lambda s: s.date >= "20030505"),
    "modality": ({"ModalitiesInStudy": "MR"}, lambda s: "MR" in s.modalities),
    "modality list": ({"ModalitiesInStudy": "CR\\MR"}, lambda s: bool({"CR", "MR"} & s.modalities)),
    # LO matching is case-sensitive (PS3.4 C.2.2.2.4): "CT, HEAD/BRAIN ..." does not match.
    "description wildcard": ({"StudyDescription": "*Brain*"}, lambda s: "Brain" in s.description),
    "name and date": (
        {"PatientName": "Doe*", "StudyDate": "20010101"},
        lambda s: s.patient_name.startswith("Doe") and s.date == "20010101",
    ),
}


@pytest.mark.parametrize("case", list(STUDY_FILTERS), ids=list(STUDY_FILTERS))
def test_study_filters(embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts], case: str) -> None:
    keys, expected = STUDY_FILTERS[case]
    answers = find(embedded_pacs.port, "STUDY", **{**STUDY_KEYS, **keys})
    wanted = {s.uid for s in studies.values() if expected(s)}
    assert wanted, "the filter should select at least one sample study"
    assert {ds.StudyInstanceUID for ds in answers} == wanted


def test_patient_id_and_uid_list(embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]) -> None:
    citizen = next(s for s in studies.values() if s.patient_name == "Citizen^Jan")
    by_id = find(embedded_pacs.port, "STUDY", PatientID=citizen.patient_id, StudyInstanceUID="")
    assert [ds.StudyInstanceUID for ds in by_id] == [citizen.uid]
    two = sorted(studies)[:2]
    by_uids = find(embedded_pacs.port, "STUDY", StudyInstanceUID="\\".join(two))
    assert sorted(ds.StudyInstanceUID for ds in by_uids) == two


def test_no_match_is_an_empty_success(embedded_pacs: EmbeddedPacs) -> None:
    assert find(embedded_pacs.port, "STUDY", PatientName="Nobody^*", StudyInstanceUID="") == []


def test_return_keys_the_record_lacks_come_back_empty(embedded_pacs: EmbeddedPacs) -> None:
    answers = find(
        embedded_pacs.port,
        "STUDY",
        StudyInstanceUID="",
        PatientComments="",  # not in any sample file
        Modality="CT",  # a series key: return-only at study level, does not filter
    )
    assert answers
    for answer in answers:
        assert "PatientComments" in answer
        assert answer.PatientComments == ""
        assert "Modality" in answer
        assert answer.Modality in ("", None)


def test_series_level(embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]) -> None:
    study = max((s for s in studies.values() if s.from_dicomdir), key=lambda s: len(s.series))
    answers = find(
        embedded_pacs.port,
        "SERIES",
        StudyInstanceUID=study.uid,
        SeriesInstanceUID="",
        Modality="",
        SeriesNumber="",
        SeriesDescription="",
        NumberOfSeriesRelatedInstances="",
    )
    assert {ds.SeriesInstanceUID: ds.NumberOfSeriesRelatedInstances for ds in answers} == {
        uid: len(files) for uid, files in study.series.items()
    }
    for answer in answers:
        source = dcmread(study.series[answer.SeriesInstanceUID][0], stop_before_pixels=True)
        assert answer.Modality == source.Modality
        assert answer.SeriesNumber == source.get("SeriesNumber")
        assert answer.StudyInstanceUID == study.uid


def test_series_level_filters(embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]) -> None:
    all_series = find(embedded_pacs.port, "SERIES", SeriesInstanceUID="", Modality="")
    assert len(all_series) == sum(len(s.series) for s in studies.values())
    mr = find(embedded_pacs.port, "SERIES", SeriesInstanceUID="", Modality="MR")
    assert mr
    assert {ds.SeriesInstanceUID for ds in mr} == {
        ds.SeriesInstanceUID for ds in all_series if ds.Modality == "MR"
    }


def test_image_level(embedded_pacs: EmbeddedPacs, studies: dict[str, StudyFacts]) -> None:
    study = next(s for s in studies.values() if s.patient_name == "Doe^Archibald" and "CT" in s.modalities)
    series_uid, files = next(iter(study.series.items()))
    answers = find(
        embedded_pacs.port,
        "IMAGE",
        StudyInstanceUID=study.uid,
        SeriesInstanceUID=series_uid,
        SOPInstanceUID="",
        SOPClassUID="",
        InstanceNumber="",
        Rows="",
        Columns="",
    )
    sources = {ds.SOPInstanceUID: ds for ds in (dcmread(f, stop_before_pixels=True) for f in files)}
    assert {ds.SOPInstanceUID for ds in answers} == set(sources)
    for answer in answers:
        source = sources[answer.SOPInstanceUID]
        assert answer.SOPClassUID == source.SOPClassUID
        assert answer.InstanceNumber == source.InstanceNumber
        assert (answer.Rows, answer.Columns) == (source.Rows, source.Columns)
        assert answer.SeriesInstanceUID == series_uid


@pytest.mark.parametrize(
    ("model", "level"),
    [(STUDY_ROOT_FIND, "PATIENT"), (STUDY_ROOT_FIND, "FRAME"), (PATIENT_ROOT_FIND, "")],
)
def test_invalid_level_is_refused(embedded_pacs: EmbeddedPacs, model: str, level: str) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = level
    query.PatientID = ""
    assert find_status(embedded_pacs.port, query, model) == 0xA900
