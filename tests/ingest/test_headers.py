"""Stored headers are exactly pydicom's DICOM JSON; channel names follow the standard's words."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from pacslab.ingest.headers import BULK_DATA_URI, HeaderJson, channel_name
from pacslab.ingest.pydicom_guard import quiet_pydicom
from tests.ingest.dicom_files import write_ct

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def reference_json(ds: pydicom.Dataset) -> dict[str, object]:
    return ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda _e: BULK_DATA_URI)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "examples_overlay.dcm"])
def test_json_matches_pydicom(name: str) -> None:
    converter = HeaderJson()
    for _ in range(2):  # the second time, from the cache
        with quiet_pydicom():  # some of these files carry values pydicom warns about
            ds = pydicom.dcmread(TEST_FILES / name, stop_before_pixels=True)
            ours = json.loads(converter.dataset(ds, converter.snapshot(ds)))
            theirs = reference_json(pydicom.dcmread(TEST_FILES / name, stop_before_pixels=True))
        assert ours == theirs


def test_cached_json_follows_each_slice(tmp_path: Path) -> None:
    converter = HeaderJson()
    for path in write_ct(tmp_path / "ct", n=4, size=16):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        text = converter.dataset(ds, converter.snapshot(ds))
        assert json.loads(text) == reference_json(pydicom.dcmread(path, stop_before_pixels=True))


def test_bulk_data_is_left_out() -> None:
    ds = pydicom.dcmread(TEST_FILES / "examples_overlay.dcm", stop_before_pixels=True)
    text = HeaderJson().dataset(ds)
    assert BULK_DATA_URI in text  # the overlay bits
    assert len(text) < 20_000


@pytest.mark.parametrize(
    ("image_type", "component", "expected"),
    [
        (["ORIGINAL", "PRIMARY", "M", "ND"], None, "magnitude"),
        (["ORIGINAL", "PRIMARY", "P", "ND"], None, "phase"),
        (["DERIVED", "PRIMARY", "R"], None, "real"),
        (["ORIGINAL", "PRIMARY", "AXIAL"], None, ""),
        (["ORIGINAL", "PRIMARY"], "IMAGINARY", "imaginary"),
        ("ORIGINAL", None, ""),
        (None, None, ""),
    ],
)
def test_channel_names(image_type: object, component: object, expected: str) -> None:
    assert channel_name(image_type, component) == expected


CHARSET_FILES = sorted((Path(pydicom.__file__).parent / "data" / "charset_files").glob("chr*.dcm"))


@pytest.mark.parametrize("path", CHARSET_FILES, ids=[p.name for p in CHARSET_FILES])
def test_patient_names_in_every_character_set(path: Path, tmp_path: Path) -> None:
    from pacslab.ingest import ingest_paths
    from pacslab.store import SliceStore

    with quiet_pydicom():
        original = pydicom.dcmread(path)
    expected = str(original.get("PatientName", ""))
    store = SliceStore(tmp_path / "store")
    report = ingest_paths(store, [path])
    if report.rejected:
        assert "PixelData" not in original, "only the header-only files are refused"
        return
    (study,) = store.list_studies()
    assert study.patient_name == expected
    with quiet_pydicom():
        assert str(store.read_header(report.series_uids[0], 0).PatientName) == expected
