"""Headers read once per file and converted once per distinct element: still pydicom's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from pacslab.ingest import IngestError
from pacslab.ingest.headers import BULK_DATA_URI, HeaderJson
from pacslab.ingest.limits import IngestLimits
from pacslab.ingest.pydicom_guard import quiet_pydicom
from pacslab.ingest.reading import scan_file
from tests.ingest.dicom_files import ct_datasets
from tests.ingest.test_pydicom_corpus import CORPUS


def reference_json(path: Path) -> dict[str, object]:
    with quiet_pydicom():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda _e: BULK_DATA_URI)


def stored_json(path: Path, headers: HeaderJson, *, from_memory: bool) -> dict[str, object]:
    content = path.read_bytes() if from_memory else None
    scanned = scan_file(path, path.name, IngestLimits(), headers, content=content)
    return json.loads(scanned.sources[0].header_json)


def _single_plane(path: Path) -> bool:
    with quiet_pydicom():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    return "PerFrameFunctionalGroupsSequence" not in ds


@pytest.mark.parametrize("path", [p for p in CORPUS if _single_plane(p)], ids=lambda p: p.name)
def test_every_accepted_test_file_has_pydicoms_json(path: Path) -> None:
    headers = HeaderJson()
    try:
        first = stored_json(path, headers, from_memory=True)
    except IngestError:
        return  # refused files are covered by the corpus test
    # Read again from the file, with every element now known to the converter.
    assert stored_json(path, headers, from_memory=False) == first == reference_json(path)


def _implicit(ds: Dataset) -> Dataset:
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def test_private_element_follows_its_creator_without_explicit_vr(tmp_path: Path) -> None:
    """The same bytes under two private creators are a number for one and text for the other."""
    first, second = ct_datasets(2, 16)
    first.add_new(0x00290010, "LO", "AEGIS_DICOM_2.00")  # (0029,xx00) is US under this creator
    first.add_new(0x00291000, "US", 0x4241)
    second.add_new(0x00290010, "LO", "CEMAX-ICON")  # and LO under this one
    second.add_new(0x00291000, "LO", "AB")
    headers = HeaderJson()
    for i, ds in enumerate((first, second)):
        path = tmp_path / f"{i}.dcm"
        _implicit(ds).save_as(path, enforce_file_format=True)
        ours = stored_json(path, headers, from_memory=bool(i))
        assert ours == reference_json(path)
    assert ours["00291000"] == {"vr": "LO", "Value": ["AB"]}


def test_ambiguous_vr_follows_pixel_representation(tmp_path: Path) -> None:
    """SmallestImagePixelValue is US or SS by PixelRepresentation when the file does not say."""
    unsigned, signed = ct_datasets(2, 16)
    signed.PixelRepresentation = 1
    headers = HeaderJson()
    values = []
    for i, ds in enumerate((unsigned, signed)):
        ds.add_new(0x00280106, "US", 0xFFFF)  # the same two bytes in both files
        path = tmp_path / f"{i}.dcm"
        _implicit(ds).save_as(path, enforce_file_format=True)
        ours = stored_json(path, headers, from_memory=True)
        assert ours == reference_json(path)
        values.append(ours["00280106"])
    assert values == [{"vr": "US", "Value": [65535]}, {"vr": "SS", "Value": [-1]}]


def test_header_longer_than_one_read(tmp_path: Path) -> None:
    """A header beyond the first piece read (a long text element) is read whole."""
    ds = ct_datasets(1, 16)[0]
    ds.TextValue = "x" * 50_000  # UT: no length limit
    path = tmp_path / "long.dcm"
    ds.save_as(path, enforce_file_format=True)
    ours = stored_json(path, HeaderJson(), from_memory=False)
    assert ours == reference_json(path)
    assert ours["0040A160"] == {"vr": "UT", "Value": ["x" * 50_000]}


def test_each_slice_keeps_its_own_values(tmp_path: Path) -> None:
    headers = HeaderJson()
    for i, ds in enumerate(ct_datasets(4, 16)):
        path = tmp_path / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        scanned = scan_file(path, path.name, IngestLimits(), headers, content=path.read_bytes())
        assert json.loads(scanned.sources[0].header_json) == reference_json(path)
        assert scanned.sources[0].sop_instance_uid == ds.SOPInstanceUID
        assert scanned.sources[0].position == tuple(float(v) for v in ds.ImagePositionPatient)
        assert scanned.sources[0].instance_number == ds.InstanceNumber


PLAIN_VALUES = {
    "UI": [
        b"1.2.840.10008.5.1.4.1.1.2",
        b"1.2.3\x00",
        b"1.02.3\x00",
        b"1..2",
        b".1",
        b"1.2 ",
        b"1\\2",
        b"9" * 65,
    ],
    "IS": [
        b"1",
        b"-12 ",
        b"+7",
        b"007",
        b"1\\2\\-3 ",
        b"12345678901",
        b"123456789012",
        b" 1",
        b"1.0",
        b"1\\\\2",
    ],
    "DS": [
        b"-0.75",
        b"-126.0\\-126.0\\0.75 ",
        b"1.",
        b"+1.5",
        b"1234567890.12345",
        b"1234567890.123456",
        b"1e3",
        b".5",
        b"nan",
        b"1\\",
        b"0.1\\0.2\\0.30000000000000004",
    ],
}


@pytest.mark.parametrize(("vr", "value"), [(vr, v) for vr, vs in PLAIN_VALUES.items() for v in vs])
def test_plain_values_give_pydicoms_json(vr: str, value: bytes) -> None:
    """Slice-varying values skip pydicom's element machinery only where the JSON is the same."""
    from pydicom.dataelem import RawDataElement, convert_raw_data_element
    from pydicom.tag import BaseTag

    from pacslab.ingest.headers import _plain_json

    tag = {"UI": 0x00080018, "IS": 0x00200013, "DS": 0x00200032}[vr]
    raw = RawDataElement(BaseTag(tag), vr, len(value), value, 0, False, True)
    ours = _plain_json(tag, raw)
    if ours is None:
        return  # left to pydicom
    with quiet_pydicom():
        element = convert_raw_data_element(raw)
    assert json.loads("{" + ours + "}") == {f"{tag:08X}": element.to_json_dict(None, 1024)}


def test_typical_slice_values_take_the_plain_path() -> None:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import BaseTag

    from pacslab.ingest.headers import _plain_json

    for vr, value in (
        ("UI", b"1.2.840.10008.5.1.4.1.1.2\x00"),
        ("IS", b"12"),
        ("DS", b"-126.0\\-126.0\\0.75"),
    ):
        assert _plain_json(
            0x00200032, RawDataElement(BaseTag(0x00200032), vr, len(value), value, 0, False, True)
        )
