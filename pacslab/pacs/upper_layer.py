"""The DICOM upper layer under pynetdicom's associations: bounded PDU reads, lean P-DATA.

pynetdicom's upper-layer thread reads each PDU, decodes it into objects, fires two events,
queues it for its state machine and turns it back into a primitive for the DIMSE layer. A
512x512 CT instance arrives from a DCMTK peer (Orthanc) as about 37 P-DATA-TF PDUs of 16 KiB,
and that path costs more CPU than the rest of a retrieve. Once an association is established
(state Sta6) the state machine's only action on a P-DATA-TF PDU is DT-2: hand its presentation
data values to the DIMSE layer. :class:`LeanUpperLayer` does exactly that for P-DATA-TF PDUs
and leaves every other PDU, every other state and every error to pynetdicom.

With a :data:`StoreHandler` set (:func:`serve_stores`), it also answers C-STORE requests
itself: the command set is read with :mod:`pacslab.pacs.commands`, the data set goes to the
handler as the bytes that arrived, and the C-STORE-RSP is sent from the same thread. Every other
DIMSE message still goes through pynetdicom's DIMSE layer, which sees its fragments in order.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket

from pacslab.pacs import commands

__all__ = [
    "MAX_PDU",
    "MAX_PDU_ACCEPTED",
    "BoundedSocket",
    "LeanUpperLayer",
    "PduTooLong",
    "StoreHandler",
    "StoreRequest",
    "adopt",
    "serve_stores",
]


@dataclass(frozen=True)
class StoreRequest:
    """A C-STORE request as it arrived: the data set stays encoded."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    data: bytes
    move_originator_message_id: int | None = None


# Takes a C-STORE request, returns the status to answer with.
StoreHandler = Callable[[StoreRequest], int]
STATUS_CANNOT_UNDERSTAND = 0xC211  # what pynetdicom answers when a C-STORE handler raises

LOGGER = logging.getLogger(__name__)

# Largest PDU we accept: fewer, larger PDUs cost pynetdicom less per byte.
MAX_PDU = 1 << 20
# Longest PDU we read from a peer: ours is MAX_PDU, some peers round theirs up; beyond this a
# length field is corrupt or hostile, and reading it would hold gigabytes.
MAX_PDU_ACCEPTED = 16 * MAX_PDU
_RECV_CHUNK = 1 << 16
_P_DATA_TF = 0x04
_HEADER = struct.Struct(">BxL")
_PDV_LENGTH = struct.Struct(">L")
# P-DATA-TF PDUs handled in one turn of the reactor while more are waiting on the socket; a
# turn ends earlier when we have something to send (a C-STORE response, a C-CANCEL).
_BURST = 64
# How long stopping the reactor waits for a just-confirmed release to close the association.
_RELEASE_SETTLE = 0.01
# Events whose handlers need pynetdicom's decoded PDU objects (its debug log, a user's own).
_PDU_EVENTS = (evt.EVT_DATA_RECV, evt.EVT_PDU_RECV)


class PduTooLong(OSError):
    """A peer announced a PDU longer than we accept (pynetdicom turns it into a closed connection)."""


class BoundedSocket(AssociationSocket):
    """pynetdicom's association socket, reading each PDU within a deadline and a length limit.

    pynetdicom's ``connect()`` leaves the socket without a timeout and reads a PDU until all of
    it has arrived, so a peer that stalls or trickles inside a PDU, or announces a PDU of
    gigabytes, would hold the association forever. ``recv`` here gives up after the network
    timeout and refuses lengths over :data:`MAX_PDU_ACCEPTED`; an ``OSError`` there closes the
    connection (Evt17), which ends the call with a named error.

    Over TLS a readable socket may hold no application data (TLS 1.3 sends session tickets
    after the handshake): ``ready`` reads ahead without blocking, so the reactor never waits in
    ``recv`` while its own A-ASSOCIATE-RQ is still unsent.
    """

    pdu_timeout: float | None
    read_ahead: bytearray

    @classmethod
    def adopt(cls, assoc_socket: AssociationSocket, timeout: float | None) -> BoundedSocket:
        assoc_socket.__class__ = cls
        assert isinstance(assoc_socket, BoundedSocket)
        assoc_socket.pdu_timeout = timeout
        assoc_socket.read_ahead = bytearray()
        if assoc_socket.socket is not None:
            # Sends too: a peer that stops reading cannot block us forever.
            assoc_socket.socket.settimeout(timeout)
        return assoc_socket

    @property
    def ready(self) -> bool:
        if self.read_ahead:
            return True
        if not super().ready:
            return False
        sock = self.socket
        if not isinstance(sock, ssl.SSLSocket):
            return True
        try:
            sock.settimeout(0.0)
            chunk = sock.recv(_RECV_CHUNK)
        except ssl.SSLWantReadError:
            return False
        except OSError:
            return True  # recv meets the error again and reports it
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(self.pdu_timeout)
        self.read_ahead += chunk
        return True  # data, or b"" for a closed connection, which recv reports

    def unread(self, data: bytes | bytearray) -> None:
        """Put ``data`` back in front of what the next ``recv`` returns."""
        self.read_ahead[:0] = data

    def recv(self, nr_bytes: int) -> bytearray:
        """The next ``nr_bytes`` bytes; what the socket gave beyond them waits in ``read_ahead``.

        Reading whatever has arrived (up to :data:`_RECV_CHUNK`) rather than exactly one PDU
        part takes several small PDUs per system call.
        """
        if nr_bytes > MAX_PDU_ACCEPTED:
            raise PduTooLong(f"the peer announced a PDU of {nr_bytes} bytes; at most {MAX_PDU_ACCEPTED}")
        buffered = self.read_ahead
        sock = self.socket
        if len(buffered) < nr_bytes and sock is not None:
            timeout = self.pdu_timeout
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                while len(buffered) < nr_bytes:
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise TimeoutError(f"{len(buffered)} of {nr_bytes} bytes of a PDU in {timeout} s")
                        sock.settimeout(left)
                    chunk = sock.recv(max(nr_bytes - len(buffered), _RECV_CHUNK))
                    if not chunk:  # closed: pynetdicom reports the short PDU
                        break
                    buffered += chunk
            finally:
                if deadline is not None:
                    with contextlib.suppress(OSError):
                        sock.settimeout(timeout)
        data = buffered[:nr_bytes]
        del buffered[:nr_bytes]
        return data


# What arrives for a message we take: (encoded command set, encoded data set or None).
Response = tuple[bytes, bytes | None]
_DATA_DONE = Callable[[int, bytes], None]  # (presentation context ID, encoded data set)


@dataclass
class _Incoming:
    """The message being received: its command fragments until the command is whole, then,
    for a message we take, its data set fragments and what to do with them."""

    command: list[tuple[int, bytes]] = field(default_factory=list)
    done: _DATA_DONE | None = None
    data: list[bytes] = field(default_factory=list)


class LeanUpperLayer(DULServiceProvider):
    """pynetdicom's upper layer, with P-DATA-TF PDUs in Sta6 handed straight to DIMSE (DT-2).

    Anything else (another PDU type, another state, a queued event not yet handled, a handler
    bound to the raw PDU events) takes pynetdicom's own path, so the state machine sees every
    PDU it acts on in order.

    Two kinds of message can be taken before pynetdicom's DIMSE layer decodes them: C-STORE
    requests, answered by :attr:`store_handler`, and responses to a request sent through
    :func:`pacslab.pacs.operations.send_request`, which waits on a queue of them.
    """

    store_handler: StoreHandler | None = None
    _incoming: _Incoming | None = None
    _waiting: dict[int, queue.SimpleQueue[Response]] | None = None

    @property
    def lean(self) -> bool:
        """True if P-DATA is read here (no handler wants pynetdicom's decoded PDUs)."""
        return not any(self.assoc.get_handlers(event) for event in _PDU_EVENTS)

    def expect_responses(self, message_id: int) -> queue.SimpleQueue[Response]:
        """Collect the responses to request ``message_id`` (call before sending it)."""
        responses: queue.SimpleQueue[Response] = queue.SimpleQueue()
        waiting = dict(self._waiting or {})
        waiting[message_id] = responses
        self._waiting = waiting  # replaced whole: the reactor thread reads it without a lock
        return responses

    def forget_responses(self, message_id: int) -> None:
        """Stop collecting for ``message_id``; later responses go to pynetdicom."""
        waiting = dict(self._waiting or {})
        waiting.pop(message_id, None)
        self._waiting = waiting

    def stop_dul(self) -> bool:
        """Stop the reactor once the association has closed (``Sta1``), as pynetdicom does.

        A release confirmation reaches the user just before the state machine, having closed
        the connection, moves from ``Sta7`` to ``Sta1``; pynetdicom's ``Association.kill``
        then finds ``Sta7`` and sleeps 10 ms before asking again, a third of a one-hit query.
        Waiting here for the move, at most as long, gives the same result without the sleep.
        """
        deadline = time.monotonic() + _RELEASE_SETTLE
        while self.state_machine.current_state == "Sta7" and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.0001)
        return super().stop_dul()

    def _read_pdu_data(self) -> None:
        sock = self.socket
        if not isinstance(sock, BoundedSocket) or not self._lean_now():
            super()._read_pdu_data()
            return
        for _ in range(_BURST):
            try:
                header = sock.recv(6)
            except OSError:
                LOGGER.debug("connection closed while reading a PDU header", exc_info=True)
                self.event_queue.put("Evt17")
                return
            if len(header) < 6 or header[0] != _P_DATA_TF:
                sock.unread(header)  # pynetdicom reads it again and acts on it
                super()._read_pdu_data()
                return
            _, length = _HEADER.unpack(header)
            try:
                body = sock.recv(length)
            except OSError:
                LOGGER.debug("connection closed inside a P-DATA-TF PDU", exc_info=True)
                self.event_queue.put("Evt17")
                return
            if len(body) != length:
                LOGGER.error(f"The received PDU is shorter than expected ({len(body)} of {length} bytes)")
                self.event_queue.put("Evt17")
                return
            primitive = _p_data(body)
            if primitive is None:
                LOGGER.error("Unable to decode a received P-DATA-TF PDU")
                self.event_queue.put("Evt19")
                return
            if self.store_handler is None and not self._waiting:
                self.assoc.dimse.receive_primitive(primitive)
            else:
                self._receive(primitive)
            # Go on while more is waiting, unless the DIMSE layer has something to send or an
            # event (Evt19 from a bad message, a timer) now needs the state machine.
            if self.to_provider_queue.queue or not self.event_queue.empty() or not sock.ready:
                return

    def _receive(self, primitive: P_DATA) -> None:
        """Route each fragment: messages we take to their handler, the rest to pynetdicom."""
        incoming = self._incoming
        if incoming is None:
            incoming = self._incoming = _Incoming()
        passed: list[list[int | bytes]] = []
        for context_id, fragment in primitive.presentation_data_value_list:
            control = fragment[0]
            if incoming.done is not None:
                if control & 1:
                    LOGGER.error("A command fragment arrived inside the data set of a message")
                    self.event_queue.put("Evt19")
                    return
                incoming.data.append(fragment[1:])
                if control & 2:
                    incoming.done(context_id, b"".join(incoming.data))
                    incoming = self._incoming = _Incoming()
            elif control & 1:
                incoming.command.append((context_id, fragment))
                if control & 2:
                    if not self._take(incoming):
                        passed.extend([cid, data] for cid, data in incoming.command)
                    incoming.command = []
            else:
                passed.append([context_id, fragment])  # the data set of a message pynetdicom decodes
        if passed:
            forward = P_DATA()
            forward.presentation_data_value_list = passed  # type: ignore[assignment]
            self.assoc.dimse.receive_primitive(forward)

    def _take(self, incoming: _Incoming) -> bool:
        """True if the command just completed is one we take (``incoming.done`` then says
        what to do with its data set, unless it has none and was handled already)."""
        context_id = incoming.command[0][0]
        encoded = b"".join(f[1:] for _, f in incoming.command)
        try:
            elements = commands.command_elements(encoded)
        except commands.CommandSetError:
            return False  # pynetdicom decodes it and reports what is wrong
        field_ = commands.unsigned_short(elements, commands.COMMAND_FIELD)
        data_set_type = commands.unsigned_short(elements, commands.COMMAND_DATA_SET_TYPE)
        if data_set_type is None or context_id not in self.assoc._accepted_cx:
            return False
        has_data = data_set_type != commands.NO_DATA_SET
        if field_ == commands.C_STORE_RQ and self.store_handler is not None and has_data:
            if commands.unsigned_short(elements, commands.MESSAGE_ID) is None:
                return False
            incoming.done = lambda cid, data: self._answer_store(cid, elements, data)
            return True
        responded_to = commands.unsigned_short(elements, commands.MESSAGE_ID_RESPONDED_TO)
        waiting = self._waiting or {}
        if field_ not in commands.RESPONSES or responded_to is None or responded_to not in waiting:
            return False
        responses = waiting[responded_to]
        if has_data:
            incoming.done = lambda cid, data: responses.put((encoded, data))
        else:
            responses.put((encoded, None))
        return True

    def _answer_store(self, context_id: int, elements: dict[int, bytes], data: bytes) -> None:
        assert self.store_handler is not None
        sop_class = commands.uid(elements, commands.AFFECTED_SOP_CLASS_UID)
        sop_instance = commands.uid(elements, commands.AFFECTED_SOP_INSTANCE_UID)
        transfer_syntax = str(self.assoc._accepted_cx[context_id].transfer_syntax[0])
        try:
            request = StoreRequest(
                sop_class,
                sop_instance,
                transfer_syntax,
                data,
                commands.unsigned_short(elements, commands.MOVE_ORIGINATOR_MESSAGE_ID),
            )
            status = self.store_handler(request)
        except Exception:
            LOGGER.exception("the C-STORE handler failed for %s", sop_instance)
            status = STATUS_CANNOT_UNDERSTAND
        message_id = commands.unsigned_short(elements, commands.MESSAGE_ID) or 0
        command = commands.store_response(message_id, sop_class, sop_instance, status)
        # One P-DATA-TF PDU holding one PDV: the last fragment (0x02) of a command (0x01).
        pdv = _PDV_LENGTH.pack(len(command) + 2) + bytes((context_id, 0x03)) + command
        assert self.socket is not None
        self.socket.send(_HEADER.pack(_P_DATA_TF, len(pdv)) + pdv)

    def _lean_now(self) -> bool:
        if self.state_machine.current_state != "Sta6" or not self.event_queue.empty():
            return False
        return self._recv_pdu.empty() and self.lean


def _p_data(body: bytes | bytearray) -> P_DATA | None:
    """The P-DATA primitive of a P-DATA-TF PDU's items, or None when they do not add up (PS3.8 9.3.5)."""
    values: list[tuple[int, bytes]] = []
    offset, end = 0, len(body)
    view = memoryview(body)
    while offset < end:
        if end - offset < 6:
            return None
        (item_length,) = _PDV_LENGTH.unpack_from(body, offset)
        item_end = offset + 4 + item_length
        if item_length < 2 or item_end > end:
            return None
        values.append((body[offset + 4], bytes(view[offset + 5 : item_end])))
        offset = item_end
    if not values:
        return None
    primitive = P_DATA()
    # pynetdicom's setter checks for lists, though its annotation says tuples.
    primitive.presentation_data_value_list = [[cid, data] for cid, data in values]  # type: ignore[misc]
    return primitive


def serve_stores(assoc: Association, handler: StoreHandler) -> None:
    """Answer the C-STORE requests that arrive on ``assoc`` with ``handler`` (see the module text).

    ``assoc`` must have been adopted (:func:`adopt`); keep an ``EVT_C_STORE`` handler bound as
    well for whatever pynetdicom still receives itself (with its PDU log shown at INFO).
    """
    dul = assoc.dul
    if isinstance(dul, LeanUpperLayer):
        dul.store_handler = handler


def adopt(assoc: Association, timeout: float | None) -> None:
    """Put ``assoc`` under a :class:`BoundedSocket` and a :class:`LeanUpperLayer`."""
    holder = assoc.dul.socket
    if holder is not None and holder.socket is not None:
        BoundedSocket.adopt(holder, timeout)
    if type(assoc.dul) is DULServiceProvider:
        assoc.dul.__class__ = LeanUpperLayer
