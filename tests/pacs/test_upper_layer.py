"""The lean DIMSE path: command sets as pynetdicom writes them, responses decoded as pynetdicom
decodes them, P-DATA items, and the same answers with and without it (pynetdicom's own path
runs when its PDU log is shown)."""

from __future__ import annotations

import logging
from io import BytesIO

import pytest
from pydicom import Dataset, dcmread
from pynetdicom.dimse_messages import C_FIND_RSP, C_GET_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_STORE
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import P_DATA_TF

from pacslab.dicom_elements import decode_plain
from pacslab.pacs import commands
from pacslab.pacs.upper_layer import _p_data
from tests.pacs.conftest import Collector, StudyFacts, _peer

CT = "1.2.840.10008.5.1.4.1.1.2"


def _pynetdicom_command(primitive: C_STORE, message: C_STORE_RQ | C_STORE_RSP) -> bytes:
    message.primitive_to_message(primitive)
    first, *_ = list(message.encode_msg(1, 1 << 20))
    (_, fragment), *_ = first.presentation_data_value_list
    assert fragment[0] == 0x03  # the last fragment of a command
    return bytes(fragment[1:])


@pytest.mark.parametrize("sop_instance_uid", ["1.2.3.4.5", "1.2.3.4.56", "2.25." + "9" * 58])
@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xC211, 0x0124, 0xB000])
def test_store_response_is_what_pynetdicom_writes(sop_instance_uid: str, status: int) -> None:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 65535
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = sop_instance_uid
    rsp.Status = status
    expected = _pynetdicom_command(rsp, C_STORE_RSP())
    assert commands.store_response(65535, CT, sop_instance_uid, status) == expected


def test_store_request_read_from_what_pynetdicom_writes() -> None:
    rq = C_STORE()
    rq.MessageID = 7
    rq.AffectedSOPClassUID = CT
    rq.AffectedSOPInstanceUID = "1.2.3.4.567"
    rq.Priority = 2
    rq.MoveOriginatorApplicationEntityTitle = "ORTHANC"
    rq.MoveOriginatorMessageID = 3
    rq.DataSet = BytesIO(b"\x08\x00\x16\x00\x00\x00\x00\x00")
    elements = commands.command_elements(_pynetdicom_command(rq, C_STORE_RQ()))
    assert commands.unsigned_short(elements, commands.COMMAND_FIELD) == commands.C_STORE_RQ
    assert commands.unsigned_short(elements, commands.MESSAGE_ID) == 7
    assert commands.unsigned_short(elements, commands.COMMAND_DATA_SET_TYPE) != commands.NO_DATA_SET
    assert commands.uid(elements, commands.AFFECTED_SOP_CLASS_UID) == CT
    assert commands.uid(elements, commands.AFFECTED_SOP_INSTANCE_UID) == "1.2.3.4.567"
    assert commands.unsigned_short(elements, 0x9999) is None


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x00\x00\x00\x01\x02",  # shorter than an element header
        b"\x08\x00\x16\x00\x02\x00\x00\x00ab",  # not group 0000
        b"\x00\x00\x00\x01\x10\x00\x00\x00ab",  # longer than what is there
    ],
)
def test_malformed_command_set_is_refused(encoded: bytes) -> None:
    with pytest.raises(commands.CommandSetError):
        commands.command_elements(encoded)


def test_p_data_items_are_those_pynetdicom_reads() -> None:
    pdu = P_DATA_TF()
    items = "0000000801" + "03aabbccddeeff" + "0000000a03" + "00" + "11" * 8
    pdu.decode(bytes.fromhex("04000000001a" + items))
    ours = _p_data(pdu.encode()[6:])
    assert ours is not None
    theirs = pdu.to_primitive().presentation_data_value_list
    assert [tuple(v) for v in ours.presentation_data_value_list] == [tuple(v) for v in theirs]
    assert len(theirs) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no item
        b"\x00\x00\x00\x01\x01",  # an item too short to hold its context ID and control byte
        b"\x00\x00\x00\x09\x01\x03ab",  # an item longer than the PDU
    ],
)
def test_p_data_that_does_not_add_up_is_refused(body: bytes) -> None:
    assert _p_data(body) is None


@pytest.mark.parametrize("server", ["orthanc", "embedded"])
@pytest.mark.parametrize("method", ["c-get", "c-move"])
def test_same_answers_through_pynetdicom_s_own_path(
    server: str,
    method: str,
    ct_phantom: StudyFacts,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    peer = _peer(f"{server}-dimse", request)
    lean = Collector()
    lean_result = peer.client.retrieve_study(ct_phantom.uid, on_instance=lean, method=method)  # type: ignore[arg-type]
    lean_studies = peer.client.find_studies(patient_id=ct_phantom.patient_id)
    with caplog.at_level(logging.INFO, logger="pynetdicom"):
        # A log shown at INFO wants every PDU decoded: pynetdicom reads them itself.
        plain = Collector()
        client = peer.fresh_client()
        plain_result = client.retrieve_study(ct_phantom.uid, on_instance=plain, method=method)  # type: ignore[arg-type]
        plain_studies = client.find_studies(patient_id=ct_phantom.patient_id)
    assert any("Received Store Request" in r.getMessage() for r in caplog.records)
    assert lean_result.ok
    assert plain_result.ok
    expected = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in ct_phantom.files}
    assert lean.uids == plain.uids == expected
    by_uid = {i.sop_instance_uid: i.data for i in plain.instances}
    assert all(i.data == by_uid[i.sop_instance_uid] for i in lean.instances)
    assert lean_studies.to_dataframe().equals(plain_studies.to_dataframe())


def _response_command(primitive: C_FIND | C_GET, message: C_FIND_RSP | C_GET_RSP) -> bytes:
    message.primitive_to_message(primitive)
    first, *_ = list(message.encode_msg(1, 1 << 20))
    (_, fragment), *_ = first.presentation_data_value_list
    return bytes(fragment[1:])


def _find_pending() -> bytes:
    rsp = C_FIND()
    rsp.MessageIDBeingRespondedTo = 12
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
    rsp.Status = 0xFF00
    rsp.Identifier = BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ")
    return _response_command(rsp, C_FIND_RSP())


def _get_pending() -> bytes:
    rsp = C_GET()
    rsp.MessageIDBeingRespondedTo = 3
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.3"
    rsp.Status = 0xFF00
    rsp.NumberOfRemainingSuboperations = 117
    rsp.NumberOfCompletedSuboperations = 3
    rsp.NumberOfFailedSuboperations = 0
    rsp.NumberOfWarningSuboperations = 1
    return _response_command(rsp, C_GET_RSP())


def _get_failed() -> bytes:
    rsp = C_GET()
    rsp.MessageIDBeingRespondedTo = 3
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.3"
    rsp.Status = 0xA702
    rsp.ErrorComment = "out of resources"
    rsp.NumberOfCompletedSuboperations = 3
    rsp.NumberOfFailedSuboperations = 117
    return _response_command(rsp, C_GET_RSP())


def _identifier(charset: str | list[str] | None, implicit: bool) -> bytes:
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう" if charset else "Bench^Query01342"
    ds.StudyDate = "20241127"
    ds.StudyTime = ""
    ds.ModalitiesInStudy = ["CT", "SEG"]
    ds.NumberOfStudyRelatedInstances = 120
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.351"
    ds.PixelSpacing = [0.5, 0.25]
    item = Dataset()
    item.CodeValue = "T-D3000"
    ds.AnatomicRegionSequence = [item]  # written with a defined length
    out = encode(ds, implicit, True)
    assert out is not None
    return out


@pytest.mark.parametrize(
    ("data", "implicit"),
    [
        (_find_pending(), True),
        (_get_pending(), True),
        (_get_failed(), True),
        (_identifier(None, False), False),
        (_identifier(None, True), True),
        (_identifier(["", "ISO 2022 IR 87"], False), False),
        (_identifier("ISO_IR 192", True), True),
    ],
    ids=["c-find pending", "c-get pending", "c-get failed", "explicit", "implicit", "iso 2022", "utf-8"],
)
def test_responses_decode_as_pynetdicom_decodes_them(data: bytes, implicit: bool) -> None:
    ours = decode_plain(data, implicit)
    theirs = decode(BytesIO(data), implicit, True)
    assert ours is not None
    assert ours == theirs
    assert ours.original_character_set == theirs.original_character_set
    assert [str(e.value) for e in ours] == [str(e.value) for e in theirs]


def test_unusual_data_sets_are_left_to_pydicom() -> None:
    undefined_length = (
        b"\x08\x00\x52\x00CS\x06\x00STUDY "
        + b"\x08\x00\x18\x22SQ\x00\x00\xff\xff\xff\xff"  # Anatomic Region Sequence
        + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"  # an item of undefined length
        + b"\x08\x00\x00\x01SH\x08\x00T-D3000 "
        + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    )
    assert len(decode(BytesIO(undefined_length), False, True).AnatomicRegionSequence) == 1
    assert decode_plain(undefined_length, False) is None
    plain = _identifier(None, False)
    assert decode_plain(plain[:-3], False) is None, "truncated inside the last element"
    assert decode_plain(plain[:5], False) is None, "truncated inside the first element head"
    assert decode_plain(b"\x08\x00\x52\x00QQ\x06\x00STUDY ", False) is None, "a VR pydicom would guess at"
    swapped = plain[18:36] + plain[:18]
    assert decode_plain(swapped, False) is None, "tags out of order"
