"""C-STORE into the embedded PACS, bad data, unsafe UIDs, association rules and the socket options."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pynetdicom._config
import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_ASSOCIATE

from pacslab.pacs.embedded import EmbeddedPacs, ListenError
from tests.embedded.dimse import CALLING_AE, VERIFICATION, associate, find

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def _ct(**uids: str) -> Dataset:
    """CT_small with fresh (or the given) UIDs: a new instance for the PACS."""
    ds = dcmread(get_testdata_file("CT_small.dcm") or "")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(ds, keyword, uids.get(keyword) or generate_uid())
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "PatientID" in uids:
        ds.PatientID = uids["PatientID"]
    return ds


def _store(port: int, data: Dataset | Path) -> int:
    with associate(port, [(CT_IMAGE, [ExplicitVRLittleEndian])]) as assoc:
        assert assoc.is_established
        return int(assoc.send_c_store(data).Status)


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_stored_instance_is_found(empty_pacs: EmbeddedPacs) -> None:
    ds = _ct()
    assert _store(empty_pacs.port, ds) == 0x0000
    studies = find(
        empty_pacs.port, "STUDY", StudyInstanceUID=ds.StudyInstanceUID, NumberOfStudyRelatedInstances=""
    )
    assert [s.NumberOfStudyRelatedInstances for s in studies] == [1]
    images = find(
        empty_pacs.port,
        "IMAGE",
        StudyInstanceUID=ds.StudyInstanceUID,
        SeriesInstanceUID=ds.SeriesInstanceUID,
        SOPInstanceUID="",
    )
    assert [i.SOPInstanceUID for i in images] == [ds.SOPInstanceUID]
    # Sending the same instance again replaces it; the PACS still holds one copy.
    assert _store(empty_pacs.port, ds) == 0x0000
    again = find(
        empty_pacs.port, "STUDY", StudyInstanceUID=ds.StudyInstanceUID, NumberOfStudyRelatedInstances=""
    )
    assert [s.NumberOfStudyRelatedInstances for s in again] == [1]


def _with_meta(path: Path, body: bytes) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT_IMAGE)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    encoded = DicomBytesIO()
    write_file_meta_info(encoded, meta, enforce_standard=True)
    path.write_bytes(b"\x00" * 128 + b"DICM" + encoded.getvalue() + body)
    return path


def test_unparseable_data_is_refused_and_nothing_kept(
    empty_pacs: EmbeddedPacs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Send the file's bytes as they are rather than letting pynetdicom parse them first.
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)
    before = empty_pacs.index.count()
    files_before = _files(empty_pacs.root / "files")
    # A Study Instance UID element with a value representation that does not exist.
    garbage = _with_meta(tmp_path / "garbage.dcm", b"\x20\x00\x0d\x00ZZ\x04\x001.2\x00")
    status = _store(empty_pacs.port, garbage)
    assert status == 0xC000  # Error: cannot understand
    assert empty_pacs.index.count() == before
    assert _files(empty_pacs.root / "files") == files_before
    assert _files(empty_pacs.root / "incoming") == set()


def test_instance_without_its_uids_is_refused(empty_pacs: EmbeddedPacs) -> None:
    ds = _ct()
    del ds.SeriesInstanceUID
    assert _store(empty_pacs.port, ds) == 0xA900


def test_truncated_pixel_data_is_refused(empty_pacs: EmbeddedPacs) -> None:
    truncated = dcmread(get_testdata_file("MR_truncated.dcm") or "")
    assert len(truncated.PixelData) < truncated.Rows * truncated.Columns * 2
    with associate(empty_pacs.port, [(MR_IMAGE, [truncated.file_meta.TransferSyntaxUID])]) as assoc:
        assert assoc.send_c_store(truncated).Status == 0xA900
    assert find(empty_pacs.port, "STUDY", StudyInstanceUID=truncated.StudyInstanceUID) == []


# pydicom warns about such UIDs when they are set and read; the PACS must keep the instance anyway.
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")
def test_unsafe_uids_are_stored_inside_root(empty_pacs: EmbeddedPacs) -> None:
    outside = empty_pacs.root.parent
    before = _files(outside)
    ds = _ct(
        StudyInstanceUID="../../..",
        SeriesInstanceUID="/tmp",
        SOPInstanceUID="../../../../escape",
        PatientID="../../..",
    )
    assert _store(empty_pacs.port, ds) == 0x0000
    new = _files(outside) - before
    assert new, "the instance should have been written"
    root = empty_pacs.root.resolve()
    assert all(root in p.resolve().parents for p in new)
    assert not any("escape" in p.name for p in new)
    images = find(
        empty_pacs.port,
        "IMAGE",
        StudyInstanceUID="../../..",
        SeriesInstanceUID="/tmp",
        SOPInstanceUID="",
        PatientID="",
    )
    assert [(i.SOPInstanceUID, i.PatientID) for i in images] == [("../../../../escape", "../../..")]


def _rejection(port: int, **kw: str) -> A_ASSOCIATE | None:
    """The A-ASSOCIATE response primitive when the association is rejected, else None."""
    responses: list[A_ASSOCIATE] = []

    def remember(event: Event) -> None:
        responses.append(event.primitive)  # type: ignore[attr-defined]  # set for ACSE events

    with associate(port, [VERIFICATION], handlers=[(evt.EVT_ACSE_RECV, remember)], **kw) as assoc:
        if assoc.is_established:
            return None
        assert assoc.is_rejected
    return responses[-1]


@pytest.fixture(scope="module")
def guarded_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPacs]:
    with EmbeddedPacs(
        tmp_path_factory.mktemp("guarded"), port=0, allowed_calling_aes=["TRUSTED"], maximum_associations=1
    ) as pacs:
        yield pacs


def test_unknown_calling_ae_is_rejected(guarded_pacs: EmbeddedPacs) -> None:
    rejection = _rejection(guarded_pacs.port, calling="STRANGER")
    assert rejection is not None
    assert rejection.reason_str == "Calling AE title not recognised"
    assert rejection.result == 0x01  # rejected-permanent
    assert _rejection(guarded_pacs.port, calling="TRUSTED") is None


def test_wrong_called_ae_is_rejected(guarded_pacs: EmbeddedPacs) -> None:
    rejection = _rejection(guarded_pacs.port, calling="TRUSTED", called="SOMEONE_ELSE")
    assert rejection is not None
    assert rejection.reason_str == "Called AE title not recognised"


def test_maximum_associations(guarded_pacs: EmbeddedPacs) -> None:
    with associate(guarded_pacs.port, [VERIFICATION], calling="TRUSTED") as first:
        assert first.is_established
        rejection = _rejection(guarded_pacs.port, calling="TRUSTED")
        assert rejection is not None
        assert rejection.reason_str == "Local limit exceeded"
        assert rejection.result == 0x02  # rejected-transient: try later
    assert _rejection(guarded_pacs.port, calling="TRUSTED") is None


def test_accepted_sockets_send_without_delay(empty_pacs: EmbeddedPacs) -> None:
    with associate(empty_pacs.port, [VERIFICATION]) as assoc:
        assert assoc.is_established
        server = empty_pacs.server
        assert server is not None
        (ours,) = [a for a in server.active_associations if a.requestor.ae_title == CALLING_AE]
        assert ours.dul.socket is not None
        sock = ours.dul.socket.socket
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_add_files_skips_what_is_not_an_instance(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.txt").write_text("not DICOM")
    _ct().save_as(folder / "a.dcm")
    dicomdir = Path(get_testdata_file("DICOMDIR") or "")
    (folder / "DICOMDIR").write_bytes(dicomdir.read_bytes())
    (folder / "truncated.dcm").write_bytes(Path(get_testdata_file("MR_truncated.dcm") or "").read_bytes())
    pacs = EmbeddedPacs(tmp_path / "pacs")
    assert pacs.add_files([folder]) == 1
    assert pacs.add_files([folder]) == 0  # already held
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pacs.add_files([tmp_path / "missing"])
    # The index outlives the object: a new node on the same root holds the instance.
    assert EmbeddedPacs(tmp_path / "pacs").index.count() == 1


def test_a_taken_port_is_reported(empty_pacs: EmbeddedPacs, tmp_path: Path) -> None:
    with pytest.raises(ListenError, match=f"127.0.0.1:{empty_pacs.port}.*PACSLAB_EMBEDDED_PACS_PORT"):
        EmbeddedPacs(tmp_path, port=empty_pacs.port).start()


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="AE title"):
        EmbeddedPacs(tmp_path, ae_title="A" * 17)
    with pytest.raises(ValueError, match="maximum_associations"):
        EmbeddedPacs(tmp_path, maximum_associations=0)


def test_non_ascii_names_survive_store_and_find(empty_pacs: EmbeddedPacs) -> None:
    ds = _ct()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jörg"
    ds.PatientID = "UTF8-1"
    assert _store(empty_pacs.port, ds) == 0x0000
    (answer,) = find(
        empty_pacs.port,
        "STUDY",
        SpecificCharacterSet="ISO_IR 192",
        PatientName="müller*",
        StudyInstanceUID="",
    )
    assert str(answer.PatientName) == "Müller^Jörg"
    assert answer.StudyInstanceUID == ds.StudyInstanceUID


def test_stop_ends_open_associations(tmp_path: Path) -> None:
    pacs = EmbeddedPacs(tmp_path, port=0)
    pacs.start()
    with associate(pacs.port, [VERIFICATION]) as assoc:
        assert assoc.is_established
        pacs.stop()
        assoc.join(timeout=10)  # the association thread ends once the peer aborts
        assert assoc.is_aborted
    assert not pacs.running
