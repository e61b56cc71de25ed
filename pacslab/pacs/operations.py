"""Sending C-FIND, C-GET and C-MOVE requests and reading their responses as they arrive.

pynetdicom's ``send_c_find`` / ``send_c_get`` / ``send_c_move`` decode every response into a
primitive and then into datasets on two threads; for a 2,000-match C-FIND, or a C-GET that
answers each instance with a pending response, that costs more than the PACS takes to answer.
:func:`send_request` builds and sends the request the same way pynetdicom does, but takes its
responses from :class:`~pacslab.pacs.upper_layer.LeanUpperLayer` as soon as each is whole, and
decodes the command set and identifier on the calling thread (with ``struct`` when ordinary,
else with pynetdicom's own ``decode``).
It yields what pynetdicom's methods yield: ``(status, identifier)`` pairs, and an empty status
when the association was lost or the DIMSE timeout passed (after aborting, as pynetdicom does).
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator
from io import BytesIO
from typing import cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import decode, encode
from pynetdicom.status import code_to_category

from pacslab.dicom_elements import decode_plain
from pacslab.pacs.upper_layer import LeanUpperLayer, Response

__all__ = ["send_request"]

LOGGER = logging.getLogger(__name__)

# How often a wait for the next response looks at whether the association is still there.
_LOOK_EVERY = 0.05
_PENDING = "Pending"


def send_request(
    assoc: Association,
    service: str,
    identifier: Dataset,
    query_model: str,
    msg_id: int,
    move_destination: str | None = None,
) -> Iterator[tuple[Dataset, Dataset | None]]:
    """Send a C-FIND, C-GET or C-MOVE request (``service``) and yield its responses.

    Falls back to pynetdicom's own ``send_c_*`` where its upper layer reads the PDUs (a log
    shown at INFO level wants them decoded).

    Raises
    ------
    ValueError
        No presentation context was accepted for ``query_model`` (as pynetdicom raises).
    """
    dul = assoc.dul
    if not isinstance(dul, LeanUpperLayer) or not dul.lean:
        if service == "C-FIND":
            return assoc.send_c_find(identifier, query_model, msg_id=msg_id)
        if service == "C-GET":
            return assoc.send_c_get(identifier, query_model, msg_id=msg_id)
        return assoc.send_c_move(identifier, move_destination or "", query_model, msg_id=msg_id)
    context = assoc._get_valid_context(query_model, "", "scu")
    transfer_syntax = UID(context.transfer_syntax[0])
    request: C_FIND | C_GET | C_MOVE = (
        C_FIND() if service == "C-FIND" else C_GET() if service == "C-GET" else C_MOVE()
    )
    request.MessageID = msg_id
    request.AffectedSOPClassUID = UID(query_model)
    request.Priority = 2
    if isinstance(request, C_MOVE):
        request.MoveDestination = move_destination
    encoded = encode(identifier, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian)
    if encoded is None:
        raise ValueError("Failed to encode the supplied Dataset")
    request.Identifier = BytesIO(encoded)
    responses = dul.expect_responses(msg_id)
    # As pynetdicom's send_* do: the association's own reactor waits while we talk.
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    try:
        assoc.dimse.send_msg(request, cast(int, context.context_id))
    except BaseException:
        dul.forget_responses(msg_id)
        assoc._reactor_checkpoint.set()
        raise
    return _responses(assoc, dul, responses, msg_id, transfer_syntax)


def _responses(
    assoc: Association,
    dul: LeanUpperLayer,
    responses: queue.SimpleQueue[Response],
    msg_id: int,
    transfer_syntax: UID,
) -> Iterator[tuple[Dataset, Dataset | None]]:
    # The pending responses to one C-FIND carry the same command set: decode it once.
    last_command, status = b"", Dataset()
    try:
        while True:
            response = _next(assoc, responses)
            if response is None:
                yield Dataset(), None
                return
            command, data = response
            if command != last_command:
                last_command, status = command, _decode(command, True, True)
            identifier = None
            if data is not None:
                identifier = _decode(data, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian)
            code = int(status.get("Status", 0xC000))
            yield status, identifier
            if code_to_category(code) != _PENDING:
                return
    finally:
        dul.forget_responses(msg_id)
        assoc._reactor_checkpoint.set()


def _decode(data: bytes, implicit: bool, little_endian: bool) -> Dataset:
    """A command set or identifier as pynetdicom's ``decode`` gives it, read with ``struct``
    when it is ordinary (a 2,000-match C-FIND decodes 4,000 of them)."""
    dataset = decode_plain(data, implicit) if little_endian else None
    return dataset if dataset is not None else decode(BytesIO(data), implicit, little_endian)


def _next(assoc: Association, responses: queue.SimpleQueue[Response]) -> Response | None:
    """The next response, or None when the association ended or the DIMSE timeout passed."""
    timeout = assoc.dimse_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return responses.get(timeout=_LOOK_EVERY)
        except queue.Empty:
            pass
        if assoc.acse.is_aborted() or not assoc.dul.is_alive() or not assoc.is_established:
            return None
        if deadline is not None and time.monotonic() >= deadline:
            LOGGER.error("DIMSE timeout reached while waiting for a response")
            assoc.abort()
            return None
