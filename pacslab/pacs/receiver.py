"""Receiving instances: the bookkeeping of one retrieve, and our Storage SCP for C-MOVE.

A :class:`RetrieveSession` hands every instance that arrives (over a C-GET association or to
the :class:`Receiver`) to the user's callback, one at a time, counts it, and reports progress.
The :class:`Receiver` is the in-process Storage SCP that C-MOVE sends to; it accepts only
associations from configured AE titles (and hosts) and only instances some retrieve waits for.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from io import BytesIO
from typing import Any, ClassVar, cast

from pydicom.dataset import Dataset
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.transport import ThreadedAssociationServer

from pacslab.config import Config
from pacslab.pacs.association import lean_connection, make_ae
from pacslab.pacs.client import (
    OnInstance,
    OnProgress,
    ReceivedInstance,
    RetrieveProgress,
    RetrieveResult,
)
from pacslab.pacs.errors import PacsError
from pacslab.pacs.upper_layer import StoreRequest, serve_stores

__all__ = ["Receiver", "ReceiverUnavailable", "RetrieveSession", "instance_from_store_event"]

LOGGER = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700  # our callback (the ingest) could not take the instance
STATUS_NOT_AUTHORISED = 0x0124  # nobody asked for this instance
# Instances waiting for the callback (a few MB for CT slices).
DELIVERY_QUEUE = 16


class ReceiverUnavailable(PacsError):
    """Our Storage SCP cannot listen on its port."""

    def __init__(self, host: str, port: int, detail: str) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"cannot receive C-MOVE instances on {host}:{port} ({detail}). Another program may use "
            "that port: set receiver_port in the settings, or use method='c-get'."
        )


def instance_from_store_event(event: evt.Event) -> ReceivedInstance:
    """The instance of an ``EVT_C_STORE`` event, as sent (no decoding)."""
    request = cast(C_STORE, event.request)
    data = cast(BytesIO, request.DataSet)
    return ReceivedInstance(
        str(request.AffectedSOPClassUID),
        str(request.AffectedSOPInstanceUID),
        str(event.context.transfer_syntax),
        data.getvalue(),
    )


class RetrieveSession:
    """Delivery and counting for one retrieve.

    Parameters
    ----------
    method : str
        ``"c-get"``, ``"c-move"`` or ``"wado"``.
    on_instance : callable
        Called with each :class:`ReceivedInstance`, never concurrently.
    on_progress : callable, optional
        Called with a :class:`RetrieveProgress` after each instance and each pending response.
    expected_uids : sequence of str, optional
        SOP Instance UIDs the PACS listed for the request (None when it could not say, or
        while a listing is still to come).
    expected_count : int, optional
        How many instances the PACS counts for the request (for progress until the list is in).
    """

    def __init__(
        self,
        method: str,
        on_instance: OnInstance,
        on_progress: OnProgress | None = None,
        expected_uids: Sequence[str] | None = None,
        expected_count: int | None = None,
    ) -> None:
        self.method = method
        self.on_instance = on_instance
        self.on_progress = on_progress
        self.expected_uids: tuple[str, ...] | None = (
            tuple(dict.fromkeys(expected_uids)) if expected_uids is not None else None
        )
        self._expected_set = set(self.expected_uids or ())
        self.msg_id: int | None = None
        self.started = time.monotonic()
        self.completed = 0
        self.failed = 0
        self.warning = 0
        self.remaining: int | None = None
        self.received_uids: list[str] = []
        self._received_set: set[str] = set()
        self.rejected_uids: list[str] = []
        self.errors: list[str] = []
        self.first_error: BaseException | None = None
        self._deliver_lock = threading.Lock()
        self._changed = threading.Condition()
        self._closed = False
        self._queued: set[str] = set()
        self._queue: queue.Queue[ReceivedInstance | None] = queue.Queue(maxsize=DELIVERY_QUEUE)
        self._worker: threading.Thread | None = None
        self.expected_count = expected_count
        self._lister: threading.Thread | None = None
        self._list_later: Callable[[], Sequence[str] | None] | None = None

    @property
    def expected(self) -> int | None:
        """How many instances the PACS listed (or counted), if known."""
        return self.expected_count if self.expected_uids is None else len(self.expected_uids)

    def list_in_background(self, list_uids: Callable[[], Sequence[str] | None]) -> None:
        """Ask for the expected SOP Instance UIDs while the transfer runs.

        Listing every instance can take a PACS longer than sending them (Orthanc reads each
        instance to answer); overlapping the two hides that time. A C-MOVE needs the list
        early: it tells which retrieve an instance belongs to when the PACS does not say.
        """
        self._lister = threading.Thread(
            target=self._take_listing, args=(list_uids,), name="pacslab-listing", daemon=True
        )
        self._lister.start()

    def list_when_short(self, list_uids: Callable[[], Sequence[str] | None]) -> None:
        """Ask for the expected SOP Instance UIDs only if the transfer ends short (see :meth:`settle`).

        When every instance the PACS counted arrives, the list adds nothing; asking for it
        alongside the transfer would take the PACS's and our time from the transfer itself.
        """
        self._list_later = list_uids

    def _take_listing(self, list_uids: Callable[[], Sequence[str] | None]) -> None:
        try:
            uids = list_uids()
        except Exception:  # the listing is a check; its failure must not stop the transfer
            LOGGER.exception("listing the expected instances failed")
            return
        if uids is not None:
            with self._changed:
                self.expected_uids = tuple(dict.fromkeys(uids))
                self._expected_set = set(self.expected_uids)

    def settle(self, timeout: float, clean: bool = False) -> None:
        """Have the listing in when it is needed (waiting up to ``timeout`` s for one in the
        background, or asking now for one deferred by :meth:`list_when_short`).

        ``clean`` says the transfer ended without any error; then, if every instance the PACS
        counted arrived, the list adds nothing and is not asked for or waited for.
        """
        with self._changed:
            counted = self.expected_count
            complete = counted is not None and len(self._received_set) >= counted and not self.rejected_uids
        if clean and complete:
            return
        if self._list_later is not None:
            list_uids, self._list_later = self._list_later, None
            self._take_listing(list_uids)
        if self._lister is not None:
            self._lister.join(timeout)

    def wants(self, sop_instance_uid: str) -> bool:
        """True if this retrieve expects the instance."""
        return sop_instance_uid in self._expected_set

    def deliver(self, instance: ReceivedInstance) -> int:
        """Queue ``instance`` for the callback; return the C-STORE status to answer with.

        The callback runs on a thread of its own, fed through a short queue, so that the
        network keeps receiving while the callback writes (an ingest fsyncs every file). The
        queue is bounded: a slow callback slows the transfer rather than filling memory. An
        instance counts as received only once the callback has returned.
        """
        with self._deliver_lock:
            if self._closed:
                # The retrieve has ended and been reported; taking it now would go uncounted.
                return STATUS_OUT_OF_RESOURCES
            if instance.sop_instance_uid in self._queued:
                return STATUS_SUCCESS  # sent twice (a retry by the PACS): deliver once
            self._queued.add(instance.sop_instance_uid)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="pacslab-delivery", daemon=True)
                self._worker.start()
        self._queue.put(instance)
        return STATUS_SUCCESS

    def deliver_request(self, request: StoreRequest) -> int:
        """:meth:`deliver` for an instance as it arrived in a C-STORE request (a ``StoreHandler``)."""
        return self.deliver(
            ReceivedInstance(
                request.sop_class_uid, request.sop_instance_uid, request.transfer_syntax_uid, request.data
            )
        )

    def _work(self) -> None:
        while True:
            instance = self._queue.get()
            if instance is None:
                return
            try:
                self.on_instance(instance)
            except Exception as exc:
                LOGGER.warning("instance %s not taken: %s", instance.sop_instance_uid, exc)
                with self._changed:
                    self.rejected_uids.append(instance.sop_instance_uid)
                    self.errors.append(f"{instance.sop_instance_uid}: {type(exc).__name__}: {exc}")
                    if self.first_error is None:
                        self.first_error = exc
                    self._changed.notify_all()
                continue
            with self._changed:
                self.received_uids.append(instance.sop_instance_uid)
                self._received_set.add(instance.sop_instance_uid)
                self._changed.notify_all()
            self.report()

    def update(self, status: Dataset) -> None:
        """Take the sub-operation counts of a C-GET/C-MOVE response."""
        counts = {
            "completed": status.get("NumberOfCompletedSuboperations"),
            "failed": status.get("NumberOfFailedSuboperations"),
            "warning": status.get("NumberOfWarningSuboperations"),
            "remaining": status.get("NumberOfRemainingSuboperations"),
        }
        with self._changed:
            for name, value in counts.items():
                if value is not None:
                    setattr(self, name, int(value))
        self.report()

    def report(self) -> None:
        """Send the current progress to ``on_progress`` (its errors are logged, not raised)."""
        if self.on_progress is None:
            return
        progress = RetrieveProgress(
            method=self.method,
            received=len(self.received_uids),
            expected=self.expected,
            completed=self.completed,
            failed=self.failed,
            warning=self.warning,
            remaining=self.remaining,
        )
        try:
            self.on_progress(progress)
        except Exception:
            LOGGER.exception("progress callback failed")

    def close(self, timeout: float) -> None:
        """Let the callback finish what was queued (up to ``timeout`` s), then take no more."""
        with self._deliver_lock:
            self._closed = True
            worker = self._worker
        if worker is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            LOGGER.warning("the instance callback did not keep up; instances still queued are not counted")
            return
        worker.join(timeout)

    def result(
        self,
        level: str,
        status: str,
        status_code: int | None,
        messages: Iterable[str] = (),
        failed_uids: Iterable[str] = (),
    ) -> RetrieveResult:
        """The :class:`RetrieveResult` as things stand."""
        with self._changed:
            received = tuple(self.received_uids)
            missing: tuple[str, ...] = ()
            if self.expected_uids is not None:
                got = set(received)
                missing = tuple(u for u in self.expected_uids if u not in got)
            failed = tuple(dict.fromkeys([*self.rejected_uids, *failed_uids]))
            return RetrieveResult(
                method=self.method,
                level=level,
                status=status,  # type: ignore[arg-type]
                received=len(received),
                expected=self.expected,
                completed=self.completed,
                failed=max(self.failed, len(failed)),
                warning=self.warning,
                received_uids=received,
                missing_uids=missing,
                failed_uids=failed,
                status_code=status_code,
                elapsed=time.monotonic() - self.started,
                messages=(*messages, *self.errors),
                missing_known=self.expected_uids is not None,
            )


def receiver_tls_context(config: Config) -> ssl.SSLContext | None:
    """The server TLS context of our receiver (None without ``receiver_tls_cert``).

    With ``receiver_tls_ca`` a sender must show a certificate that CA signed.
    """
    if not config.receiver_tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=config.receiver_tls_ca or None)
    context.load_cert_chain(config.receiver_tls_cert, config.receiver_tls_key)
    if config.receiver_tls_ca:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class Receiver:
    """Our Storage SCP: receives the instances a C-MOVE sends to our AE title.

    Over DICOM TLS when ``config.receiver_tls_cert`` is set (see :func:`receiver_tls_context`).

    Parameters
    ----------
    config : Config
        Our AE title, ``receiver_port`` and timeouts.
    host : str
        Address to listen on (the PACS must reach it).
    port : int, optional
        Overrides ``config.receiver_port`` (0 picks a free port).
    allowed_calling_aes : sequence of str
        AE titles allowed to send to us; empty allows any.
    allowed_hosts : sequence of str
        Peer addresses allowed to connect; empty allows any.
    """

    _shared: ClassVar[dict[tuple[str, int, str], Receiver]] = {}
    _shared_lock = threading.Lock()

    def __init__(
        self,
        config: Config,
        host: str = "127.0.0.1",
        port: int | None = None,
        allowed_calling_aes: Sequence[str] = (),
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.host = host
        self.requested_port = config.receiver_port if port is None else port
        self.allowed_calling_aes = tuple(allowed_calling_aes)
        self.allowed_hosts = tuple(allowed_hosts)
        self._server: ThreadedAssociationServer | None = None
        self._sessions: dict[int, RetrieveSession] = {}
        self._lock = threading.Lock()
        self.unsolicited = 0

    @classmethod
    def shared(
        cls,
        config: Config,
        host: str,
        allowed_calling_aes: Sequence[str] = (),
        allowed_hosts: Sequence[str] = (),
    ) -> Receiver:
        """The process's receiver for (host, receiver_port, AE title), started on first use."""
        key = (host, config.receiver_port, config.ae_title)
        with cls._shared_lock:
            receiver = cls._shared.get(key)
            if receiver is None or not receiver.running:
                receiver = cls(config, host, None, allowed_calling_aes, allowed_hosts)
                receiver.start()
                cls._shared[key] = receiver
            else:
                receiver.allow(allowed_calling_aes, allowed_hosts)
            return receiver

    @classmethod
    def stop_shared(cls) -> None:
        """Stop every shared receiver (at the end of a session or a test)."""
        with cls._shared_lock:
            receivers, cls._shared = list(cls._shared.values()), {}
        for receiver in receivers:
            receiver.stop()

    def allow(self, calling_aes: Iterable[str] = (), hosts: Iterable[str] = ()) -> None:
        """Add AE titles / hosts to the allowed lists (when the lists are in use)."""
        if self.allowed_calling_aes:
            self.allowed_calling_aes = tuple(dict.fromkeys([*self.allowed_calling_aes, *calling_aes]))
            if self._server is not None:
                self._server.ae.require_calling_aet = list(self.allowed_calling_aes)
        if self.allowed_hosts:
            self.allowed_hosts = tuple(dict.fromkeys([*self.allowed_hosts, *hosts]))

    @property
    def running(self) -> bool:
        """True while listening."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The port we listen on."""
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    def start(self) -> Receiver:
        """Listen for associations (non-blocking).

        Raises
        ------
        ReceiverUnavailable
            When the port cannot be bound.
        """
        if self._server is not None:
            return self
        ae = make_ae(self.config)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        if self.allowed_calling_aes:
            ae.require_calling_aet = list(self.allowed_calling_aes)
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_STORE, self._on_store),
        ]
        try:
            self._server = ae.start_server(
                (self.host, self.requested_port),
                block=False,
                evt_handlers=handlers,
                ssl_context=receiver_tls_context(self.config),
            )
        except OSError as exc:
            raise ReceiverUnavailable(self.host, self.requested_port, str(exc)) from exc
        return self

    def stop(self) -> None:
        """Stop listening and close open associations."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def register(self, msg_id: int, session: RetrieveSession) -> None:
        """Route instances of the C-MOVE with ``msg_id`` (or that ``session`` expects) to it."""
        with self._lock:
            self._sessions[msg_id] = session

    def unregister(self, msg_id: int) -> None:
        """Stop routing to the session of ``msg_id``."""
        with self._lock:
            self._sessions.pop(msg_id, None)

    def _on_open(self, event: evt.Event) -> None:
        lean_connection(event, fast_loop=True)
        serve_stores(event.assoc, self._store_request)

    def _on_requested(self, event: evt.Event) -> None:
        """Abort an association request from a host not allowed (AE titles are checked by
        pynetdicom; an abort is the only refusal available at this point)."""
        if self.allowed_hosts:
            peer = event.assoc.requestor.address
            if peer not in self.allowed_hosts:
                LOGGER.warning("refused an association from %s (not an allowed host)", peer)
                event.assoc.abort()

    def _session_for(self, move_originator_id: int | None, sop_instance_uid: str) -> RetrieveSession | None:
        with self._lock:
            sessions = dict(self._sessions)
        if move_originator_id is not None and move_originator_id in sessions:
            return sessions[move_originator_id]
        for session in sessions.values():
            if session.wants(sop_instance_uid):
                return session
        if len(sessions) == 1:
            return next(iter(sessions.values()))
        return None

    def _store_request(self, request: StoreRequest) -> int:
        """Hand an instance to the retrieve waiting for it (a ``StoreHandler``)."""
        session = self._session_for(request.move_originator_message_id, request.sop_instance_uid)
        if session is None:
            self.unsolicited += 1
            LOGGER.warning("refused instance %s: no retrieve is waiting for it", request.sop_instance_uid)
            return STATUS_NOT_AUTHORISED
        return session.deliver_request(request)

    def _on_store(self, event: evt.Event) -> int:
        """``EVT_C_STORE``, for what pynetdicom still reads itself (its PDU log at INFO)."""
        request = cast(C_STORE, event.request)
        instance = instance_from_store_event(event)
        origin = request.MoveOriginatorMessageID
        return self._store_request(
            StoreRequest(
                instance.sop_class_uid,
                instance.sop_instance_uid,
                instance.transfer_syntax_uid,
                instance.data,
                None if origin is None else int(origin),
            )
        )
