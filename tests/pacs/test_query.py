"""Pure parts of the PACS layer: filters to query keys, answers to records, the value types."""

from __future__ import annotations

import datetime
from io import BytesIO

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless

from pacslab.pacs import QueryFilterError, QueryTable, ReceivedInstance, RetrieveProgress, StudyMatch
from pacslab.pacs.association import (
    COMPRESSED_TRANSFER_SYNTAXES,
    DEFAULT_STORAGE_CLASSES,
    status_category,
    status_meaning,
    storage_contexts,
)
from pacslab.pacs.query import (
    date_filter,
    find_identifier,
    make_filters,
    qido_params,
    record_from,
)


@pytest.mark.parametrize(
    ("typed", "dicom"),
    [
        ("20240131", "20240131"),
        ("2024-01-31", "20240131"),
        (" 20240101-20240131 ", "20240101-20240131"),
        ("2024-01-01 - 2024-01-31", "20240101-20240131"),
        ("2024-01-01-2024-01-31", "20240101-20240131"),
        ("20240101..20240131", "20240101-20240131"),
        ("20240101-", "20240101-"),
        ("-20240131", "-20240131"),
        (datetime.date(2024, 1, 31), "20240131"),
        (datetime.datetime(2024, 1, 31, 12, 0), "20240131"),
        ((datetime.date(2024, 1, 1), None), "20240101-"),
        ((None, "2024-01-31"), "-20240131"),
        ("", None),
        (None, None),
    ],
)
def test_dates_and_ranges(typed: object, dicom: str | None) -> None:
    assert date_filter("study_date", typed) == dicom


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("2024-02-30", "calendar date"),
        ("20240131-20240101", "ends"),
        ("yesterday", "expected a date"),
        ("-", "expected a date"),
        ("2024013", "expected a date"),
        (20240131, "expected a date"),
        ((1, 2, 3), "pair"),
    ],
)
def test_bad_dates_are_named(typed: object, problem: str) -> None:
    with pytest.raises(QueryFilterError, match=problem) as info:
        date_filter("study_date", typed)
    assert info.value.name == "study_date"
    assert isinstance(info.value, ValueError)


def test_names_and_descriptions_become_patterns() -> None:
    f = make_filters(patient_name="Doe", study_description="*brain*", series_description="T1")
    assert f.patient_name == "Doe*"
    assert f.study_description == "*brain*"
    assert f.series_description == "T1*"
    assert make_filters(patient_name="Doe, John").patient_name == "Doe^John*"
    assert make_filters(patient_name="Do?^J*").patient_name == "Do?^J*"
    assert make_filters(patient_id=" 123 ").patient_id == "123"
    assert make_filters(modality="mr").modality == "MR"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("patient_name", "Doe\\Smith", "backslash"),
        ("patient_id", "12\x00", "control"),
        ("patient_id", "x" * 65, "64"),
        ("modality", "C T", "modality code"),
        ("study_uid", "1.2.abc", "UID"),
        ("limit", 0, "positive"),
        ("limit", True, "positive"),
        ("colour", "red", "unknown filter"),
        ("patient_name", 42, "text"),
    ],
)
def test_bad_filters_are_named(name: str, value: object, problem: str) -> None:
    with pytest.raises(QueryFilterError, match=problem):
        make_filters(**{name: value})


def test_uid_lists() -> None:
    f = make_filters(study_uid="1.2.3\\1.2.4, 1.2.3")
    assert f.study_uid == ("1.2.3", "1.2.4")
    assert make_filters(series_uid=["1.2", "1.3"]).series_uid == ("1.2", "1.3")


def test_study_identifier_holds_matching_and_return_keys() -> None:
    f = make_filters(patient_name="Doe", study_date="20240101-", modality="CT", study_uid=["1.2", "1.3"])
    ds = find_identifier("STUDY", f)
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "Doe*"
    assert ds.StudyDate == "20240101-"
    assert ds.ModalitiesInStudy == "CT"
    assert list(ds.StudyInstanceUID) == ["1.2", "1.3"]
    # Series-level keys are not sent at study level; return keys are there, empty.
    assert "Modality" not in ds
    assert ds.NumberOfStudyRelatedInstances is None
    # Without ModalitiesInStudy matching, it is still asked back (empty).
    assert not find_identifier("STUDY", f, modalities_in_study=False).ModalitiesInStudy
    series = find_identifier("SERIES", f)
    assert series.Modality == "CT"
    assert "PatientName" not in series


def test_non_ascii_names_ask_for_utf8() -> None:
    assert find_identifier("STUDY", make_filters(patient_name="Müller")).SpecificCharacterSet == "ISO_IR 192"
    assert find_identifier("STUDY", make_filters(patient_name="Muller")).SpecificCharacterSet == ""


def test_qido_params() -> None:
    f = make_filters(patient_name="Doe", modality="MR", accession_number="A1", study_uid=["1.2", "1.3"])
    assert qido_params("STUDY", f) == {
        "PatientName": "Doe*",
        "AccessionNumber": "A1",
        "StudyInstanceUID": "1.2,1.3",
        "ModalitiesInStudy": "MR",
    }
    assert qido_params("SERIES", f)["Modality"] == "MR"


def test_records_from_answers() -> None:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    ds.PatientName = "Doe^John"
    ds.ModalitiesInStudy = ["CT", "SEG"]
    ds.NumberOfStudyRelatedInstances = "12"
    ds.NumberOfStudyRelatedSeries = ""
    study = record_from("STUDY", ds)
    assert study == StudyMatch(
        study_uid="1.2.3", patient_name="Doe^John", modalities=("CT", "SEG"), n_instances=12
    )
    # A QIDO-RS answer (DICOM JSON), read as it is or as a data set.
    assert record_from("STUDY", ds.to_json_dict()) == study
    assert record_from("STUDY", Dataset.from_json(ds.to_json_dict())) == study
    # A C-FIND answer, still encoded.
    assert record_from("STUDY", _as_received(ds)) == study


def test_query_table_to_dataframe() -> None:
    table = QueryTable(
        "STUDY", [StudyMatch("1.2"), StudyMatch("1.3", n_series=2)], StudyMatch, truncated=True
    )
    frame = table.to_dataframe()
    assert list(frame.columns) == table.columns
    assert frame["study_uid"].tolist() == ["1.2", "1.3"]
    assert len(table) == 2
    assert table[1].n_series == 2
    assert table.truncated
    empty = QueryTable("STUDY", [], StudyMatch)
    assert list(empty.to_dataframe().columns) == table.columns
    assert not empty


def test_received_instance_from_wire_bytes() -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    source = dcmread(path)
    buffer = BytesIO()
    source.save_as(buffer, enforce_file_format=True)
    part10 = ReceivedInstance.from_part10(buffer.getvalue())
    assert part10.sop_instance_uid == source.SOPInstanceUID
    assert part10.transfer_syntax_uid == ExplicitVRLittleEndian
    # The DIMSE form: the data set alone; the Part 10 file is rebuilt around it.
    bare = ReceivedInstance(
        part10.sop_class_uid, part10.sop_instance_uid, part10.transfer_syntax_uid, part10.dataset_bytes
    )
    assert bare.dataset_bytes == part10.dataset_bytes
    rebuilt = dcmread(BytesIO(bare.file_bytes()))
    assert rebuilt.PixelData == source.PixelData
    assert bare.dataset.PatientName == source.PatientName
    assert "bytes=" in repr(bare)


def test_received_instance_keeps_compressed_data_as_is() -> None:
    path = get_testdata_file("MR_small_RLE.dcm")
    assert path is not None
    instance = ReceivedInstance.from_dataset(dcmread(path))
    assert instance.transfer_syntax_uid == RLELossless
    assert (instance.dataset.pixel_array == dcmread(path).pixel_array).all()


def test_progress_fraction() -> None:
    assert RetrieveProgress("c-get", received=5, expected=10).fraction == 0.5
    assert RetrieveProgress("c-move", received=0, completed=3, remaining=1).fraction == 0.75
    assert RetrieveProgress("wado", received=3).fraction is None


def test_storage_contexts_fit_the_budget() -> None:
    few = storage_contexts([CTImageStorage])
    assert len(few) == 1 + len(COMPRESSED_TRANSFER_SYNTAXES)
    assert {str(cx.abstract_syntax) for cx in few} == {CTImageStorage}
    every = storage_contexts([])
    assert len(every) <= 128
    assert {str(cx.abstract_syntax) for cx in every} == set(DEFAULT_STORAGE_CLASSES)


@pytest.mark.parametrize(
    ("code", "service", "category", "words"),
    [
        (0x0000, "find", "success", ""),
        (0xFF00, "find", "pending", "Matches are continuing"),
        (0xA801, "move", "failure", "Move destination unknown"),
        (0xB000, "get", "warning", "one or more"),
        (0xC123, "find", "failure", "Unable to process"),
        (0xFE00, "get", "cancel", "Cancel"),
    ],
)
def test_status_words(code: int, service: str, category: str, words: str) -> None:
    assert status_category(code) == category
    assert words.lower() in status_meaning(code, service).lower()


def _as_received(ds: Dataset) -> Dataset:
    """The data set as a C-FIND answer arrives: encoded, elements not yet converted."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    return read_dataset(BytesIO(buffer.getvalue()), is_implicit_VR=True, is_little_endian=True)


def test_names_in_every_character_set_read_as_pydicom_reads_them() -> None:
    from pydicom.data import get_charset_files

    files = [f for f in get_charset_files("chr*.dcm") if "PatientName" in dcmread(f, stop_before_pixels=True)]
    assert len(files) >= 10
    for path in files:
        source = dcmread(path, stop_before_pixels=True)
        answer = Dataset()
        answer.SpecificCharacterSet = source.SpecificCharacterSet
        answer.PatientName = source.PatientName
        answer.StudyInstanceUID = "1.2.3"
        answer.NumberOfStudyRelatedInstances = "7"
        record = record_from("STUDY", _as_received(answer))
        assert record.patient_name == str(source.PatientName), path
        assert record.n_instances == 7


def test_connect_pacs_picks_the_transport_of_the_node() -> None:
    from pacslab.config import Config, PacsNode
    from pacslab.pacs import PacsClient, connect_pacs
    from pacslab.pacs.dicomweb import DicomwebClient
    from pacslab.pacs.dimse import DimseClient

    dimse = PacsNode("a", "A", "127.0.0.1", 11112)
    web = PacsNode("w", "W", "127.0.0.1", 8042, "dicomweb", "http://127.0.0.1:8042/dicom-web")
    config = Config(nodes=(dimse, web), default_node="a")
    # Nothing is sent until the first call, so no server is needed here.
    assert isinstance(connect_pacs(dimse, config), DimseClient)
    assert isinstance(connect_pacs(web, config), DicomwebClient)
    for node in (dimse, web):
        assert isinstance(connect_pacs(node, config), PacsClient)
    with pytest.raises(QueryFilterError, match="no DICOMweb URL"):
        DicomwebClient(PacsNode("x", "X", transport="dicomweb"), config)
