"""C-FIND matching rules as pure functions (PS3.4 C.2.2.2)."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom import Dataset

from pacslab.pacs.embedded_matching import (
    level_of,
    match_identifier,
    match_values,
    query_values,
    response_identifier,
)


@pytest.mark.parametrize(
    ("vr", "query", "stored", "expected"),
    [
        ("PN", [], ["Doe^John"], True),  # universal
        ("PN", ["Doe*"], ["Doe^John"], True),
        ("PN", ["doe^j?hn"], ["Doe^John"], True),  # names ignore case
        ("PN", ["Doe^John"], ["Doe^John^^^"], True),  # trailing empty components
        ("PN", ["Smith*"], ["Doe^John"], False),
        ("PN", ["Doe*"], [], False),  # a stored empty value matches only universal keys
        ("LO", ["*Brain*"], ["CT, HEAD/BRAIN"], False),  # other strings are case-sensitive
        ("LO", ["*Brain*"], ["Brain-MRA"], True),
        ("LO", ["a.b*"], ["axb"], False),  # only * and ? are special
        ("SH", ["AB?"], ["ABC"], True),
        ("SH", ["AB?"], ["ABCD"], False),
        ("UI", ["1.2.3", "1.2.4"], ["1.2.4"], True),
        ("UI", ["1.2.3", "1.2.4"], ["1.2.5"], False),
        ("CS", ["MR"], ["CT", "MR"], True),  # ModalitiesInStudy holds several
        ("CS", ["CR", "MR"], ["CT"], False),
        ("DA", ["20240101-20240131"], ["20240115"], True),
        ("DA", ["20240101-20240131"], ["20240201"], False),
        ("DA", ["-20240131"], ["19991231"], True),
        ("DA", ["20240101-"], ["20231231"], False),
        ("DA", ["20240101"], ["2024.01.01"], True),  # ACR-NEMA date
        ("TM", ["0900-1200"], ["120059.5"], True),  # the upper bound covers its minute
        ("TM", ["0900-1200"], ["120100"], False),
        ("TM", ["0900-"], ["08:59"], False),
        ("DT", ["20240101-20240102"], ["20240101120000"], True),
        ("IS", ["3"], ["3"], True),
        ("DS", ["1.50"], ["1.5"], True),
        ("US", ["512"], ["256"], False),
    ],
)
def test_match_values(vr: str, query: list[str], stored: list[str], expected: bool) -> None:
    assert match_values(vr, query, stored) is expected


def test_query_values() -> None:
    ds = Dataset()
    ds.PatientName = "*"
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.StudyDate = ""
    ds.SeriesNumber = None
    assert query_values(ds["PatientName"]) == []
    assert query_values(ds["ModalitiesInStudy"]) == ["CT", "MR"]
    assert query_values(ds["StudyDate"]) == []
    assert query_values(ds["SeriesNumber"]) == []


def test_levels() -> None:
    assert level_of(0x00100010) == "PATIENT"  # PatientName
    assert level_of(0x00080061) == "STUDY"  # ModalitiesInStudy
    assert level_of(0x00080060) == "SERIES"  # Modality
    assert level_of(0x00280010) == "IMAGE"  # Rows


RECORD: dict[str, dict[str, Any]] = {
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Peter"}]},
    "00100020": {"vr": "LO", "Value": ["98890234"]},
    "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
    "00080020": {"vr": "DA", "Value": ["20030505"]},
    "00080061": {"vr": "CS", "Value": ["MR"]},
    "00201208": {"vr": "IS", "Value": [11]},
}


def test_match_identifier_ignores_keys_below_the_level() -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = "Doe^P*"
    query.Modality = "CT"  # a series key: return-only at study level
    assert match_identifier(query, RECORD, "STUDY")
    query.StudyDate = "-20021231"
    assert not match_identifier(query, RECORD, "STUDY")


def test_response_returns_the_keys_asked_for() -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = ""
    query.NumberOfStudyRelatedInstances = None
    query.PatientComments = ""
    response = response_identifier(query, RECORD, "STUDY")
    assert str(response.PatientName) == "Doe^Peter"
    assert response.NumberOfStudyRelatedInstances == 11
    assert response.PatientComments == ""  # asked for, not stored
    assert response.StudyInstanceUID == "1.2.3"  # unique keys always come back
    assert response.PatientID == "98890234"
    assert "StudyDate" not in response  # not asked for
    assert "SpecificCharacterSet" not in response


def test_response_declares_utf8_for_non_ascii_values() -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = ""
    record = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jörg"}]}}
    response = response_identifier(query, record, "PATIENT")
    assert response.SpecificCharacterSet == "ISO_IR 192"
    assert str(response.PatientName) == "Müller^Jörg"
