"""A small DICOM requestor for the embedded PACS tests: pynetdicom, TCP_NODELAY, plain results."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydicom import Dataset
from pydicom.multival import MultiValue
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
VERIFICATION = "1.2.840.10008.1.1"
CALLING_AE = "PACSLAB_TEST"


def nodelay(event: Event) -> None:
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@contextmanager
def associate(
    port: int,
    contexts: Sequence[Any] = (VERIFICATION, STUDY_ROOT_FIND, PATIENT_ROOT_FIND),
    *,
    called: str = "PACSLAB_PACS",
    calling: str = CALLING_AE,
    roles: Sequence[Any] = (),
    handlers: Sequence[Any] = (),
) -> Iterator[Association]:
    """An association to 127.0.0.1:``port``; released afterwards. Check ``is_established``."""
    ae = AE(ae_title=calling)
    for context in contexts:
        if isinstance(context, tuple):
            ae.add_requested_context(*context)
        else:
            ae.add_requested_context(context)
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title=called,
        ext_neg=list(roles) or None,
        evt_handlers=[(evt.EVT_CONN_OPEN, nodelay), *handlers],
    )
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def find(port: int, level: str, model: str = STUDY_ROOT_FIND, **keys: Any) -> list[Dataset]:
    """C-FIND with ``keys`` (keyword=value, '' for a return key); every pending identifier."""
    query = Dataset()
    query.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(query, keyword, None if value == "" else value)
    with associate(port) as assoc:
        assert assoc.is_established
        results = []
        for status, identifier in assoc.send_c_find(query, model):
            assert status, "no C-FIND response"
            if status.Status in (0xFF00, 0xFF01):
                assert identifier is not None
                results.append(identifier)
            else:
                assert status.Status == 0x0000, f"C-FIND failed with 0x{status.Status:04X}"
        return results


def find_status(port: int, query: Dataset, model: str) -> int:
    """The final status of a C-FIND."""
    with associate(port) as assoc:
        assert assoc.is_established
        statuses = [status.Status for status, _ in assoc.send_c_find(query, model)]
    return int(statuses[-1])


def values(value: Any) -> list[Any]:
    """A possibly multi-valued element value as a list (pydicom gives VM 1 as a scalar)."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue) else [value]
