"""Every kind of bad file is refused with a named error that names it; nothing is half-stored."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian

from pacslab.ingest import (
    DecompressionBomb,
    EmptyFile,
    ImageTooLarge,
    InconsistentSeries,
    IngestError,
    IngestLimits,
    MalformedDicom,
    MissingPreamble,
    NoPixelData,
    NotDicom,
    PixelDataMismatch,
    SequenceTooDeep,
    TruncatedFile,
    UnreadableFile,
    UnsupportedTransferSyntax,
    ZipPathEscape,
    ingest_paths,
)
from pacslab.ingest.pydicom_guard import quiet_pydicom
from pacslab.store import SliceStore
from tests.ingest.dicom_files import ct_datasets, write_ct, write_datasets


def refused(store: SliceStore, path: Path, error: type[IngestError], **kwargs: object) -> IngestError:
    """Ingest one file and check it was refused with ``error``, naming it, with nothing stored."""
    report = ingest_paths(store, [path], **kwargs)
    assert report.n_instances == 0
    assert len(report.rejected) == 1
    rejection = report.rejected[0]
    assert type(rejection.error) is error, rejection.error
    assert str(path) in str(rejection.error), "the message names the file"
    assert store.list_series() == []
    assert store.list_studies() == []
    assert not list((store.root / "series").rglob("*.h5*")), "no series file, not even a temporary one"
    return rejection.error


def one_ct(tmp_path: Path) -> Dataset:
    return ct_datasets(1, 16)[0]


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_empty_file(store: SliceStore, tmp_path: Path) -> None:
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    refused(store, path, EmptyFile)


def test_not_dicom(store: SliceStore, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image\n" * 40)
    refused(store, path, NotDicom)


def test_missing_file(store: SliceStore, tmp_path: Path) -> None:
    refused(store, tmp_path / "gone.dcm", UnreadableFile)


def test_no_preamble(store: SliceStore) -> None:
    refused(store, Path(get_testdata_file("ExplVR_LitEndNoMeta.dcm")), MissingPreamble)
    refused(store, Path(get_testdata_file("no_meta.dcm")), NotDicom)  # a stray byte before the first tag


def test_truncated_pixel_data(store: SliceStore, tmp_path: Path) -> None:
    whole = save(one_ct(tmp_path), tmp_path / "whole.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(whole[: len(whole) - 100])
    error = refused(store, path, TruncatedFile)
    assert "ends" in str(error)


def test_truncated_header(store: SliceStore, tmp_path: Path) -> None:
    whole = save(one_ct(tmp_path), tmp_path / "whole.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(whole[:400])
    report = ingest_paths(store, [path])
    assert [type(r.error) for r in report.rejected] in ([TruncatedFile], [MalformedDicom], [NoPixelData])
    assert store.list_series() == []


def test_pydicom_truncated_file(store: SliceStore) -> None:
    refused(store, Path(get_testdata_file("MR_truncated.dcm")), TruncatedFile)


def test_no_pixel_data(store: SliceStore) -> None:
    error = refused(store, Path(get_testdata_file("rtplan.dcm")), NoPixelData)
    assert "RT Plan" in str(error)


def test_rows_columns_disagree_with_pixel_length(store: SliceStore, tmp_path: Path) -> None:
    ds = one_ct(tmp_path)
    ds.Rows = 32  # the pixel data holds 16 x 16
    error = refused(store, save(ds, tmp_path / "rows.dcm"), PixelDataMismatch)
    assert "needs" in str(error)


def test_pixel_data_longer_than_declared(store: SliceStore, tmp_path: Path) -> None:
    ds = one_ct(tmp_path)
    ds.Columns = 8
    refused(store, save(ds, tmp_path / "cols.dcm"), PixelDataMismatch)


def test_unknown_transfer_syntax(store: SliceStore, tmp_path: Path) -> None:
    ds = one_ct(tmp_path)
    path = save(ds, tmp_path / "unknown.dcm")
    data = path.read_bytes()
    old = ds.file_meta.TransferSyntaxUID.encode() + b"\x00"  # 19 chars + pad
    new = b"1.2.3.4.5.6.7.8.9.0"
    assert len(new) == len(old) - 1
    path.write_bytes(data.replace(old, new + b"\x00", 1))
    error = refused(store, path, UnsupportedTransferSyntax)
    assert "unknown" in str(error)


def test_transfer_syntax_without_decoder(store: SliceStore, tmp_path: Path) -> None:
    from pydicom.encaps import encapsulate

    ds = one_ct(tmp_path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder is installed
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    error = refused(store, save(ds, tmp_path / "mpeg.dcm"), UnsupportedTransferSyntax)
    assert "MPEG2" in str(error)


def test_huge_declared_dimensions_are_refused_before_decoding(store: SliceStore, tmp_path: Path) -> None:
    ds = one_ct(tmp_path)
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 1000
    error = refused(store, save(ds, tmp_path / "huge.dcm"), ImageTooLarge)
    assert "cap" in str(error)


def test_huge_compressed_image_is_refused_before_decoding(store: SliceStore, tmp_path: Path) -> None:
    from pydicom.encaps import encapsulate

    ds = one_ct(tmp_path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"  # JPEG baseline: decoded whole
    ds.Rows = ds.Columns = 30000
    ds.NumberOfFrames = 2
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9", b"\xff\xd8\xff\xd9"])
    ds["PixelData"].VR = "OB"
    error = refused(store, save(ds, tmp_path / "huge-jpeg.dcm"), ImageTooLarge)
    assert "2 frame(s)" in str(error)


def test_image_cap_is_configurable(store: SliceStore, tmp_path: Path) -> None:
    path = write_ct(tmp_path / "ct", n=1, size=64)[0]
    refused(store, path, ImageTooLarge, limits=IngestLimits(max_image_bytes=1000))


def test_deflate_bomb_is_stopped_at_the_cap(store: SliceStore, tmp_path: Path) -> None:
    ds = one_ct(tmp_path)
    ds.Rows = ds.Columns = 4096
    ds.PixelData = bytes(4096 * 4096 * 2)  # 32 MiB of zeros deflates to a few tens of KiB
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = save(ds, tmp_path / "bomb.dcm")
    assert path.stat().st_size < 200_000
    error = refused(store, path, DecompressionBomb, limits=IngestLimits(max_inflated_bytes=8 << 20))
    assert "inflates" in str(error)


def test_deflated_file_within_the_cap_is_stored(store: SliceStore, tmp_path: Path) -> None:
    ds = one_ct(tmp_path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = save(ds, tmp_path / "deflated.dcm")
    report = ingest_paths(store, [path])
    assert report.n_instances == 1
    assert (store.read_slice(report.series_uids[0], 0) == pydicom.dcmread(path).pixel_array).all()


def test_deeply_nested_sequence(store: SliceStore, tmp_path: Path) -> None:
    ds = one_ct(tmp_path)
    item = Dataset()
    item.CodeValue = "1"
    for _ in range(2000):
        outer = Dataset()
        outer.ContentSequence = Sequence([item])
        item = outer
    ds.ContentSequence = item.ContentSequence
    path = tmp_path / "nested.dcm"
    # Written by hand: pydicom's own writer recurses too and cannot write it either.
    body = _nested_sequence_bytes(2000)
    clean = save(one_ct(tmp_path), tmp_path / "clean.dcm").read_bytes()
    marker = b"\x08\x00\x16\x00"  # (0008,0016) SOPClassUID: insert the sequence before it
    at = clean.index(marker, 132 + 12 + int.from_bytes(clean[140:144], "little"))
    path.write_bytes(clean[:at] + body + clean[at:])
    report = ingest_paths(store, [path])
    assert [type(r.error) for r in report.rejected] == [SequenceTooDeep]
    assert store.list_series() == []


def _nested_sequence_bytes(depth: int) -> bytes:
    """(0008,0006) LanguageCodeSequence items nested ``depth`` deep, undefined lengths."""
    head = b"\x08\x00\x06\x00SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    tail = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return head * depth + tail * depth


def test_zip_member_escaping_its_folder(store: SliceStore, tmp_path: Path) -> None:
    good = write_ct(tmp_path / "ct", n=2, size=16)
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(good[0], "ok/0.dcm")
        zf.writestr("../../outside.dcm", good[1].read_bytes())
        zf.writestr("/etc/abs.dcm", good[1].read_bytes())
    report = ingest_paths(store, [archive])
    assert report.n_instances == 1
    escapes = [r for r in report.rejected if isinstance(r.error, ZipPathEscape)]
    assert len(escapes) == 2
    assert any("../../outside.dcm" in r.name for r in escapes)
    assert not (tmp_path.parent / "outside.dcm").exists()
    assert not list(store.root.parent.rglob("outside.dcm"))


def test_zip_bomb_member(store: SliceStore, tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.dcm", bytes(64 << 20))
    assert archive.stat().st_size < 1 << 20
    report = ingest_paths(store, [archive], limits=IngestLimits(max_zip_member_bytes=4 << 20))
    assert [type(r.error) for r in report.rejected] == [DecompressionBomb]


def test_image_that_cannot_be_stacked_with_its_series(store: SliceStore, tmp_path: Path) -> None:
    datasets = ct_datasets(4, 16)
    odd = datasets[3]
    odd.Rows = odd.Columns = 8
    odd.PixelData = bytes(8 * 8 * 2)
    files = write_datasets(tmp_path / "ct", datasets)
    report = ingest_paths(store, files)
    assert report.n_instances == 3
    assert [(r.name, type(r.error)) for r in report.rejected] == [(str(files[3]), InconsistentSeries)]
    assert store.series(report.series_uids[0]).n_slices == 3


def test_bad_files_do_not_stop_good_ones(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "upload", n=4, size=16)
    (tmp_path / "upload" / "readme.txt").write_text("hello")
    (tmp_path / "upload" / "empty.dcm").write_bytes(b"")
    report = ingest_paths(store, [tmp_path / "upload"])
    assert report.n_instances == len(files)
    assert report.rejected_by_error() == {"EmptyFile": 1, "NotDicom": 1}
    assert "rejected" in str(report)


def test_ingest_errors_survive_pickling() -> None:
    import pickle

    from pacslab.ingest import FileSetViolation

    error = pickle.loads(pickle.dumps(TruncatedFile("a.dcm", "cut")))
    assert (type(error), error.name, error.problem) == (TruncatedFile, "a.dcm", "cut")
    violation = pickle.loads(pickle.dumps(FileSetViolation("upload", ["x", "y"])))
    assert violation.problems == ("x", "y")


def test_helpers_build_valid_bytes() -> None:
    # The nested-sequence builder writes balanced items and delimiters.
    data = _nested_sequence_bytes(3)
    assert data.count(b"\xfe\xff\x00\xe0") == 3
    assert struct.unpack("<L", data[8:12])[0] == 0xFFFFFFFF
    assert zlib.crc32(data) == zlib.crc32(_nested_sequence_bytes(3))


def test_hostile_identifiers_never_name_files(store: SliceStore, tmp_path: Path) -> None:
    datasets = ct_datasets(2, 16)
    with quiet_pydicom():  # pydicom rightly warns about these values while we build them
        for ds in datasets:
            ds.SeriesInstanceUID = "../../../escaped"
            ds.StudyInstanceUID = "/abs/" + "9" * 100
            ds.PatientID = "../../etc/passwd\x00"
            ds.Modality = "C\x00T"
        files = write_datasets(tmp_path / "in", datasets)
    before = set(tmp_path.rglob("*"))
    report = ingest_paths(store, files)
    assert report.n_instances == 2
    created = set(tmp_path.rglob("*")) - before
    assert all(store.root in p.parents or p == store.root or (tmp_path / "in") in p.parents for p in created)
    assert not list(tmp_path.parent.rglob("escaped*"))
    (study,) = store.list_studies()
    assert study.patient_id == "../../etc/passwd"
    assert store.series("../../../escaped").modality == "CT"


def test_uid_with_control_characters_is_refused(store: SliceStore, tmp_path: Path) -> None:
    ds = ct_datasets(1, 16)[0]
    with quiet_pydicom():
        ds.SeriesInstanceUID = "1.2.3\x01"
        path = save(ds, tmp_path / "ctl.dcm")
    error = refused(store, path, MalformedDicom)
    assert "SeriesInstanceUID" in str(error)


@pytest.mark.parametrize(
    "keyword", ["SamplesPerPixel", "BitsStored", "PixelRepresentation", "PhotometricInterpretation"]
)
def test_missing_pixel_description_is_refused(store: SliceStore, tmp_path: Path, keyword: str) -> None:
    ds = one_ct(tmp_path)
    delattr(ds, keyword)
    error = refused(store, save(ds, tmp_path / "missing.dcm"), MalformedDicom)
    assert keyword in str(error)
