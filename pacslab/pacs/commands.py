"""DIMSE command sets of C-STORE, read and written without building pydicom datasets.

A command set is a handful of group-0000 elements in Implicit VR Little Endian (PS3.7 E.1 and
9.3.1). pynetdicom builds and validates a pydicom dataset for each one, which costs about a
millisecond per instance on this machine; a retrieve of thousands of instances receives one
C-STORE-RQ and answers one C-STORE-RSP per instance. These two functions cover just those
messages, and tests check them byte for byte against pynetdicom's own encoding.
"""

from __future__ import annotations

import struct

__all__ = [
    "AFFECTED_SOP_CLASS_UID",
    "AFFECTED_SOP_INSTANCE_UID",
    "COMMAND_DATA_SET_TYPE",
    "COMMAND_FIELD",
    "C_STORE_RQ",
    "C_STORE_RSP",
    "MESSAGE_ID",
    "MESSAGE_ID_RESPONDED_TO",
    "MOVE_ORIGINATOR_MESSAGE_ID",
    "NO_DATA_SET",
    "RESPONSES",
    "CommandSetError",
    "command_elements",
    "store_response",
    "uid",
    "unsigned_short",
]

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_GET_RSP = 0x8010
C_FIND_RSP = 0x8020
C_MOVE_RSP = 0x8021
RESPONSES = (C_GET_RSP, C_FIND_RSP, C_MOVE_RSP)
NO_DATA_SET = 0x0101  # CommandDataSetType when no data set follows

AFFECTED_SOP_CLASS_UID = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_RESPONDED_TO = 0x0120
COMMAND_DATA_SET_TYPE = 0x0800
STATUS = 0x0900
AFFECTED_SOP_INSTANCE_UID = 0x1000
MOVE_ORIGINATOR_MESSAGE_ID = 0x1031

_ELEMENT = struct.Struct("<HHL")
_US = struct.Struct("<H")


class CommandSetError(ValueError):
    """A command set that is not a sequence of group-0000 elements in Implicit VR Little Endian."""


def command_elements(encoded: bytes | bytearray) -> dict[int, bytes]:
    """The values of a command set's elements, by element number (the group is always 0000)."""
    elements: dict[int, bytes] = {}
    offset, end = 0, len(encoded)
    while offset < end:
        if end - offset < 8:
            raise CommandSetError(f"{end - offset} stray bytes at the end of a command set")
        group, element, length = _ELEMENT.unpack_from(encoded, offset)
        offset += 8
        if group != 0 or offset + length > end:
            where = f"({group:04X},{element:04X}) of length {length} at byte {offset - 8}"
            raise CommandSetError(f"element {where} is not a command element that fits")
        elements[element] = bytes(encoded[offset : offset + length])
        offset += length
    return elements


def unsigned_short(elements: dict[int, bytes], element: int) -> int | None:
    """A US value of a command set, or None when it is absent or not two bytes."""
    value = elements.get(element)
    return _US.unpack(value)[0] if value is not None and len(value) == 2 else None


def uid(elements: dict[int, bytes], element: int) -> str:
    """A UI value of a command set, without its padding ('' when absent)."""
    return elements.get(element, b"").rstrip(b"\x00 ").decode("ascii", "replace")


def store_response(message_id: int, sop_class_uid: str, sop_instance_uid: str, status: int) -> bytes:
    """The encoded command set of a C-STORE-RSP (PS3.7 9.3.1.2), as pynetdicom would write it."""
    body = b"".join(
        (
            _ui(AFFECTED_SOP_CLASS_UID, sop_class_uid),
            _us(COMMAND_FIELD, C_STORE_RSP),
            _us(MESSAGE_ID_RESPONDED_TO, message_id),
            _us(COMMAND_DATA_SET_TYPE, NO_DATA_SET),
            _us(STATUS, status),
            _ui(AFFECTED_SOP_INSTANCE_UID, sop_instance_uid),
        )
    )
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<L", len(body)) + body


def _us(element: int, value: int) -> bytes:
    return _ELEMENT.pack(0, element, 2) + _US.pack(value)


def _ui(element: int, value: str) -> bytes:
    data = value.encode("ascii")
    if len(data) % 2:
        data += b"\x00"
    return _ELEMENT.pack(0, element, len(data)) + data
