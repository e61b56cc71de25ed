"""Ingest from every kind of source; slices come back in position order with their headers."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    JPEG2000,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pacslab.ingest import Ingest, IngestProgress, ingest_paths
from pacslab.ingest.session import part10_head
from pacslab.store import SliceStore
from tests.ingest.dicom_files import ct_datasets, pixels, write_ct, write_datasets, write_mr


def assert_series_equals_files(store: SliceStore, series_uid: str, files: list[Path]) -> None:
    """Stored slice i has the pixels pydicom decodes from files[i] (files in position order)."""
    info = store.series(series_uid)
    assert info.n_slices == len(files)
    for i, path in enumerate(files):
        np.testing.assert_array_equal(store.read_slice(series_uid, i), pixels(path))


def test_folder_ingest_sorts_by_position_not_file_name(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct", shuffle_names=True)
    report = ingest_paths(store, [tmp_path / "ct"])

    assert report.n_instances == 8
    assert not report.rejected
    info = store.series(report.series_uids[0])
    assert info.complete
    assert (info.rows, info.cols, info.dtype, info.channels) == (64, 64, "uint16", ("",))
    assert_series_equals_files(store, info.series_uid, files)
    # Slice order is inferior to superior along the normal, whatever the file names.
    z = [float(store.read_header(info.series_uid, i).ImagePositionPatient[2]) for i in range(info.n_slices)]
    assert z == sorted(z)
    assert info.sop_instance_uids == tuple(pydicom.dcmread(f).SOPInstanceUID for f in files)


def test_position_beats_instance_number(store: SliceStore, tmp_path: Path) -> None:
    datasets = ct_datasets()
    for i, ds in enumerate(datasets):
        ds.InstanceNumber = len(datasets) - i  # reversed numbering
    files = write_datasets(tmp_path / "ct", datasets)
    report = ingest_paths(store, files[::-1])
    assert_series_equals_files(store, report.series_uids[0], files)


def test_series_facts_rescale_and_window_presets(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct")
    uid = ingest_paths(store, files).series_uids[0]
    info = store.series(uid)
    ds = pydicom.dcmread(files[0])
    assert info.modality == "CT"
    assert info.patient_name == str(ds.PatientName)
    assert info.rescale_slope == 1.0
    assert info.rescale_intercept == float(ds.RescaleIntercept)
    assert info.window_presets[0] == ("BRAIN", 40.0, 80.0)
    assert info.pixel_spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert info.spacing_between_slices == pytest.approx(float(ds.SliceThickness))
    assert info.geometry_warnings == ()
    hu = store.read_slice(uid, 0, rescaled=True)
    assert hu.dtype == np.float32
    np.testing.assert_allclose(hu, pixels(files[0]).astype(np.float32) + float(ds.RescaleIntercept))


def test_headers_are_dicom_json_without_pixel_data(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct")
    uid = ingest_paths(store, files).series_uids[0]
    header = store.read_header(uid, 2)
    original = pydicom.dcmread(files[2], stop_before_pixels=True)
    assert "PixelData" not in header
    for keyword in (
        "SOPInstanceUID",
        "PatientName",
        "ImagePositionPatient",
        "WindowCenter",
        "RescaleIntercept",
    ):
        assert header[keyword].value == original[keyword].value


def test_zip_upload(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, f"nested/{f.name}")
    report = ingest_paths(store, [archive])
    assert report.n_instances == len(files)
    assert_series_equals_files(store, report.series_uids[0], files)
    assert not any(store.inbox_dir.iterdir()), "spooled zip members are removed once stored"


def test_bytes_datasets_and_encoded_sources(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct")
    with Ingest(store) as ingest:
        ingest.add_bytes("upload-0.dcm", files[0].read_bytes())
        ingest.add_dataset(pydicom.dcmread(files[1]))
        ingest.add_encoded(files[2].read_bytes())  # a whole Part 10 file
        ds = pydicom.dcmread(files[3])
        raw = files[3].read_bytes()
        # A bare dataset as a Storage SCP receives it: bytes after the file meta.
        meta_end = 132 + 12 + int.from_bytes(raw[140:144], "little")
        ingest.add_encoded(
            raw[meta_end:],
            transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
            sop_class_uid=ds.SOPClassUID,
            sop_instance_uid=ds.SOPInstanceUID,
        )
        # What a multipart WADO-RS body hands over: a bytearray, or a view into one.
        ingest.add_encoded(bytearray(files[4].read_bytes()))
        ingest.add_encoded(memoryview(bytearray(files[5].read_bytes())))
        for f in files[6:]:
            ingest.add_file(f)
    assert ingest.report is not None
    assert ingest.report.rejected == []
    assert ingest.report.n_instances == len(files)
    assert_series_equals_files(store, ingest.report.series_uids[0], files)


def test_received_instances_are_checked_as_they_arrive(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct", n=3, size=16)
    truncated = files[1].read_bytes()[:-100]
    with Ingest(store, durable=False) as ingest:
        ingest.add_encoded(files[0].read_bytes())
        ingest.add_encoded(truncated)
        ingest.add_encoded(files[2].read_bytes())
    assert ingest.report is not None
    assert ingest.report.n_instances == 2
    assert [type(r.error).__name__ for r in ingest.report.rejected] == ["TruncatedFile"]
    assert_series_equals_files(store, ingest.report.series_uids[0], [files[0], files[2]])
    assert not any(store.inbox_dir.iterdir()), "spooled instances are removed once stored"


def test_bare_encoded_dataset_needs_its_uids(store: SliceStore) -> None:
    with Ingest(store) as ingest, pytest.raises(ValueError, match="transfer_syntax_uid"):
        ingest.add_encoded(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100")


def test_reingest_is_idempotent_and_new_instances_extend(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct")
    first = ingest_paths(store, files[::2])
    uid = first.series_uids[0]
    assert store.series(uid).n_slices == 4
    version = store.series(uid).version

    again = ingest_paths(store, files[::2])
    assert again.unchanged == [uid]
    assert store.series(uid).version == version, "nothing new: no new version written"

    ingest_paths(store, files)  # the odd slices arrive later, with the even ones again
    info = store.series(uid)
    assert info.n_slices == 8
    assert info.version == version + 1
    assert_series_equals_files(store, uid, files)
    assert store.list_studies()[0].n_instances == 8


def test_mr_magnitude_and_phase_are_channels_of_one_series(store: SliceStore, tmp_path: Path) -> None:
    files = write_mr(tmp_path / "mr", n=4, size=32)
    report = ingest_paths(store, files)
    info = store.series(report.series_uids[0])
    assert info.channels == ("magnitude", "phase")
    assert info.n_slices == 4
    for path in files:
        ds = pydicom.dcmread(path)
        index = (int(ds.InstanceNumber) - 1) // 2
        channel = info.channels.index("magnitude" if ds.ImageType[2] == "M" else "phase")
        np.testing.assert_array_equal(
            store.read_slice(info.series_uid, index, channel=channel), ds.pixel_array
        )
        assert store.read_header(info.series_uid, index, channel=channel).SOPInstanceUID == ds.SOPInstanceUID
    phase = store.read_slice(info.series_uid, 0, channel=1, rescaled=True)
    assert phase.min() >= -np.pi - 1e-3
    assert phase.max() <= np.pi + 1e-3
    assert store.read_plane(info.series_uid, 0).shape == (32, 32, 2)
    by_name = store.read_slice(info.series_uid, 1, channel="phase")
    np.testing.assert_array_equal(by_name, store.read_slice(info.series_uid, 1, channel=1))
    from pacslab.store import SliceIndexError

    with pytest.raises(SliceIndexError, match="no channel 'real'"):
        store.read_slice(info.series_uid, 0, channel="real")


def test_multi_frame_instance_is_split_into_slices(store: SliceStore, tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    datasets = ct_datasets(4, 32)
    ds = datasets[0]
    ds.NumberOfFrames = 4
    frames = []
    for frame_ds in reversed(datasets):  # frames stored superior to inferior
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = frame_ds.ImagePositionPatient
        item.PlanePositionSequence = Sequence([position])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = b"".join(d.PixelData for d in reversed(datasets))
    path = tmp_path / "multiframe.dcm"
    ds.save_as(path, enforce_file_format=True)

    report = ingest_paths(store, [path])
    info = store.series(report.series_uids[0])
    assert info.n_slices == 4
    decoded = pydicom.dcmread(path).pixel_array
    for i in range(4):
        # Slice i (inferior first) is frame 4 - i of the instance.
        np.testing.assert_array_equal(store.read_slice(info.series_uid, i), decoded[3 - i])
    frames_of = [r.frame for r in store.instances(info.series_uid)]
    assert frames_of == [4, 3, 2, 1]
    header = store.read_header(info.series_uid, 0)
    assert len(header.PerFrameFunctionalGroupsSequence) == 1, "each slice keeps only its own frame's groups"


def test_progress_reports_reading_then_writing(store: SliceStore, tmp_path: Path) -> None:
    files = write_ct(tmp_path / "ct")
    seen: list[IngestProgress] = []
    ingest_paths(store, files, progress=seen.append)
    reading = [p for p in seen if p.stage == "reading"]
    writing = [p for p in seen if p.stage == "writing"]
    assert [p.done for p in reading] == list(range(1, 9))
    assert writing[-1].done == writing[-1].total == 8
    assert seen.index(writing[0]) > seen.index(reading[-1])


def test_pydicom_sample_studies_list_in_the_catalog(
    store: SliceStore, samples: dict[str, list[Path]]
) -> None:
    from pacslab.ingest import NoPixelData

    report = ingest_paths(store, samples["pydicom"])
    # dicomdirtests' TINY_ALPHA patient is headers only: refused by name, the rest is stored.
    assert {type(r.error) for r in report.rejected} == {NoPixelData}
    assert all("TINY_ALPHA" in r.name for r in report.rejected)
    studies = store.list_studies()
    assert len({s.patient_id for s in studies}) == 4  # two dicomdirtests patients + CT_small + MR_small
    assert (
        sum(s.n_instances for s in studies)
        == report.n_instances
        == len(samples["pydicom"]) - len(report.rejected)
    )
    assert sum(s.n_series for s in studies) == len(store.list_series())


@pytest.mark.parametrize("durable", [True, False], ids=["fsync-each", "retrieve"])
def test_an_error_inside_the_block_keeps_received_bytes_for_recovery(
    store: SliceStore, tmp_path: Path, durable: bool
) -> None:
    from pacslab.ingest import recover_inbox

    files = write_ct(tmp_path / "ct", n=3, size=16)

    def receive_then_fail() -> None:
        with Ingest(store, durable=durable) as ingest:
            for f in files:
                ingest.add_encoded(f.read_bytes())
            raise ConnectionError("the PACS went away")

    with pytest.raises(ConnectionError):
        receive_then_fail()
    assert store.list_series() == []
    report = recover_inbox(store)
    assert report.n_instances == 3
    assert_series_equals_files(store, report.series_uids[0], files)


def _pydicom_part10_head(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    head = DicomBytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=True)
    return bytes(head.getvalue())


@pytest.mark.parametrize("sop_instance_uid", ["1.2.3.4.5", "1.2.3.4.56", "2.25." + "9" * 59])
@pytest.mark.parametrize("transfer_syntax_uid", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000])
def test_file_meta_of_a_bare_dataset_is_what_pydicom_writes(
    sop_instance_uid: str, transfer_syntax_uid: str
) -> None:
    args = (CTImageStorage, sop_instance_uid, transfer_syntax_uid)
    assert part10_head(*args) == _pydicom_part10_head(*args)


def test_file_meta_with_a_non_ascii_uid_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        part10_head(CTImageStorage, "1.2.3.\N{REPLACEMENT CHARACTER}", ExplicitVRLittleEndian)
