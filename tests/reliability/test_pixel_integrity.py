"""Item 3: a header that disagrees with its pixels never becomes a slice of the wrong shape.

The bad files go in through three doors — an upload, a zip, and the receiver's path for a
dataset arriving by C-STORE (``add_encoded``) — beside a good file that must be stored. The
figure walks every stored plane and compares it with its own header.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian

from pacslab.ingest import Ingest, IngestReport, MalformedDicom
from pacslab.store import SliceStore
from tests.reliability.conftest import Figures
from tests.reliability.dicom_bytes import encode, image

ITEM = 3
MPEG2 = "1.2.840.10008.1.2.4.100"
JPEG_XL = "1.2.840.10008.1.2.4.110"


def _changed(change: Callable[[Dataset], None]) -> Dataset:
    ds = image(16, 16)
    change(ds)
    return ds


def _encapsulated(transfer_syntax: str) -> tuple[Dataset, str]:
    ds = image(16, 16)
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 60])
    ds["PixelData"].VR = "OB"
    return ds, transfer_syntax


def _bad_files() -> dict[str, tuple[Dataset, str, str]]:
    """name -> (dataset, transfer syntax, the error it must be refused with)."""

    def rows_plus_one(ds: Dataset) -> None:
        ds.Rows = 17

    def columns_minus_three(ds: Dataset) -> None:
        ds.Columns = 13

    def eight_bits(ds: Dataset) -> None:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7

    def three_samples(ds: Dataset) -> None:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0

    def two_frames(ds: Dataset) -> None:
        ds.NumberOfFrames = 2

    def short_by_two(ds: Dataset) -> None:
        ds.PixelData = ds.PixelData[:-2]

    def long_by_a_hundred(ds: Dataset) -> None:
        ds.PixelData = ds.PixelData + b"\0" * 100

    def no_pixels(ds: Dataset) -> None:
        del ds.PixelData

    explicit = ExplicitVRLittleEndian
    files = {
        "rows-plus-one": (_changed(rows_plus_one), explicit, "PixelDataMismatch"),
        "columns-minus-three": (_changed(columns_minus_three), explicit, "PixelDataMismatch"),
        "8-bit-header-16-bit-data": (_changed(eight_bits), explicit, "PixelDataMismatch"),
        "rgb-header-grey-data": (_changed(three_samples), explicit, "PixelDataMismatch"),
        "two-frames-declared-one-sent": (_changed(two_frames), explicit, "PixelDataMismatch"),
        "pixel-data-2-bytes-short": (_changed(short_by_two), explicit, "PixelDataMismatch"),
        "pixel-data-100-bytes-long": (_changed(long_by_a_hundred), explicit, "PixelDataMismatch"),
        "no-pixel-data": (_changed(no_pixels), explicit, "NoPixelData"),
    }
    for name, syntax in (("mpeg2-no-decoder", MPEG2), ("jpeg-xl-no-decoder", JPEG_XL)):
        ds, ts = _encapsulated(syntax)
        files[name] = (ds, ts, "UnsupportedTransferSyntax")
    return files


def _dataset_bytes(ds: Dataset, transfer_syntax: str) -> bytes:
    """The dataset as a Storage SCP receives it: no preamble, no file meta."""
    whole = encode(ds, transfer_syntax)
    return whole[132 + 12 + int.from_bytes(whole[140:144], "little") :]


def _ingest(
    store: SliceStore, door: str, files: dict[str, tuple[Dataset, str, str]], folder: Path
) -> IngestReport:
    with Ingest(store) as ingest:
        if door == "zip":
            archive = folder / "upload.zip"
            with zipfile.ZipFile(archive, "w") as zf:
                for name, (ds, ts, _) in files.items():
                    zf.writestr(f"{name}.dcm", encode(ds, ts))
            ingest.add_path(archive)
        for name, (ds, ts, _) in files.items():
            if door == "upload":
                ingest.add_bytes(name, encode(ds, ts))
            elif door == "c-store":
                ingest.add_encoded(
                    _dataset_bytes(ds, ts), ts, str(ds.SOPClassUID), str(ds.SOPInstanceUID), name
                )
    assert ingest.report is not None
    return ingest.report


def _wrong_shape_planes(store: SliceStore) -> int:
    wrong = 0
    for info in store.list_series():
        for record in store.instances(info.series_uid):
            header = store.read_header(info.series_uid, record.slice_index)
            plane = store.read_slice(info.series_uid, record.slice_index)
            if plane.shape != (int(header.Rows), int(header.Columns)) or plane.shape != (
                info.rows,
                info.cols,
            ):
                wrong += 1
    return wrong


@pytest.mark.parametrize("door", ["upload", "zip", "c-store"])
def test_headers_that_disagree_with_their_pixels_are_refused(
    door: str, tmp_path: Path, figures: Figures
) -> None:
    good = image(16, 16)
    files = {"good": (good, ExplicitVRLittleEndian, ""), **_bad_files()}
    store = SliceStore(tmp_path / "store")
    report = _ingest(store, door, files, tmp_path)

    refused = {r.name.split("!")[-1].removesuffix(".dcm"): type(r.error).__name__ for r in report.rejected}
    expected = {name: error for name, (_, _, error) in files.items() if error}
    figures(f"{door}: bad files refused by name", f"{len(refused)} of {len(expected)}")
    figures(f"{door}: wrong-shape slices stored", _wrong_shape_planes(store))
    assert refused == expected
    assert [s.series_uid for s in store.list_series()] == [good.SeriesInstanceUID]
    sent = np.frombuffer(good.PixelData, dtype="<i2").reshape(16, 16)
    np.testing.assert_array_equal(store.read_slice(good.SeriesInstanceUID, 0), sent)
    assert _wrong_shape_planes(store) == 0


def _missing(keyword: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        delattr(ds, keyword)

    return change


@pytest.mark.parametrize("keyword", ["PixelRepresentation", "BitsStored", "SamplesPerPixel"])
def test_an_image_missing_a_required_pixel_attribute_is_refused(keyword: str, tmp_path: Path) -> None:
    store = SliceStore(tmp_path / "store")
    with Ingest(store) as ingest:
        ingest.add_bytes(keyword, encode(_changed(_missing(keyword))))
    assert ingest.report is not None
    assert [type(r.error) for r in ingest.report.rejected] == [MalformedDicom]
    assert store.list_series() == []


def test_the_no_decoder_syntaxes_really_have_none() -> None:
    from pydicom.pixels import get_decoder

    for syntax in (MPEG2, JPEG_XL):
        with pytest.raises(NotImplementedError):
            get_decoder(UID(syntax))


def test_dataset_bytes_helper_gives_what_a_storage_scp_receives() -> None:
    from pydicom.filereader import read_dataset

    ds = image(4, 4)
    body = _dataset_bytes(ds, ExplicitVRLittleEndian)
    assert body[:4] == b"\x08\x00\x16\x00"  # the first element is (0008,0016) SOP Class UID
    assert read_dataset(io.BytesIO(body), False, True).SOPInstanceUID == ds.SOPInstanceUID
