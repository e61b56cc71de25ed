"""Opening DICOM associations with our settings, and turning their failures into named errors.

Shared by the SCU (:mod:`pacslab.pacs.dimse`) and our Storage SCP (:mod:`pacslab.pacs.receiver`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.uid import (
    JPEG2000,
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
)
from pynetdicom import AE, _config, build_context, evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import code_to_category
from pynetdicom.transport import AssociationSocket

from pacslab.config import Config, PacsNode
from pacslab.pacs.errors import (
    AssociationAborted,
    AssociationRejected,
    NoAcceptedContext,
    PacsTimeout,
    PacsUnreachable,
    TlsFailed,
)
from pacslab.pacs.upper_layer import MAX_PDU, MAX_PDU_ACCEPTED, PduTooLong, adopt

__all__ = [
    "COMPRESSED_TRANSFER_SYNTAXES",
    "DEFAULT_STORAGE_CLASSES",
    "MAX_PDU_ACCEPTED",
    "PATIENT_ROOT_FIND",
    "STUDY_ROOT_FIND",
    "STUDY_ROOT_GET",
    "STUDY_ROOT_MOVE",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "VERIFICATION",
    "Connector",
    "PduTooLong",
    "busy",
    "lean_connection",
    "make_ae",
    "status_category",
    "status_meaning",
    "storage_contexts",
]

LOGGER = logging.getLogger(__name__)

# Service-object pair classes of verification and Query/Retrieve (PS3.4 annexes A and C).
VERIFICATION = UID("1.2.840.10008.1.1")
PATIENT_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.1.1")
STUDY_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")
STUDY_ROOT_MOVE = UID("1.2.840.10008.5.1.4.1.2.2.2")
STUDY_ROOT_GET = UID("1.2.840.10008.5.1.4.1.2.2.3")

UNCOMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# Encodings we accept as stored, so the PACS need not transcode; the ingest decodes them.
COMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    JPEGLosslessSV1,
    JPEG2000Lossless,
    RLELossless,
    JPEGLSLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEG2000,
    JPEGLSNearLossless,
    DeflatedExplicitVRLittleEndian,
)
# Offered when we cannot ask the PACS which SOP classes an instance has.
DEFAULT_STORAGE_CLASSES: tuple[str, ...] = (
    CTImageStorage,
    MRImageStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForPresentation,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    SecondaryCaptureImageStorage,
    NuclearMedicineImageStorage,
    PositronEmissionTomographyImageStorage,
    XRayAngiographicImageStorage,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    SegmentationStorage,
)
MAX_CONTEXTS = 128
# Poll interval of pynetdicom's network reactor during transfers (its default, 1 ms,
# adds up to two such waits per instance on a fast link).
TRANSFER_LOOP_DELAY = 0.0001
IDLE_LOOP_DELAY = 0.001  # pynetdicom's own, for an open association waiting for work

_STANDARD_LOG_HANDLERS = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)


def lean_connection(event: evt.Event, fast_loop: bool = False, tcp_nodelay: bool = True) -> None:
    """``EVT_CONN_OPEN`` handler: TCP_NODELAY on the socket, bounded reads, no per-PDU logging work.

    Without TCP_NODELAY each small DIMSE message waits on the peer's delayed ACK (tens of ms
    per C-FIND). pynetdicom's standard log handlers decode every message even when nobody
    reads the log, so they are unbound unless the ``pynetdicom`` logger shows INFO.
    ``tcp_nodelay=False`` exists only to measure what TCP_NODELAY is worth.

    The association is then put under :mod:`pacslab.pacs.upper_layer`: each PDU must arrive
    within the association's network timeout and be no longer than :data:`MAX_PDU_ACCEPTED`,
    and P-DATA-TF PDUs go straight to the DIMSE layer once the association is established.
    """
    assoc = event.assoc
    holder = assoc.dul.socket
    sock = holder.socket if holder is not None else None
    if sock is not None and tcp_nodelay:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the peer may already have closed it
            LOGGER.debug("could not set TCP_NODELAY", exc_info=True)
    adopt(assoc, assoc.network_timeout)
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        for event_type, handler in _STANDARD_LOG_HANDLERS:
            with contextlib.suppress(ValueError, KeyError):  # not bound on this association
                assoc.unbind(event_type, handler)
    if fast_loop:
        assoc.dul._run_loop_delay = TRANSFER_LOOP_DELAY


@contextlib.contextmanager
def busy(assoc: Association) -> Iterator[Association]:
    """Poll the network without pauses while ``assoc`` works, and idle gently after.

    pynetdicom's reactor sleeps 1 ms whenever the socket is quiet, which costs a one-hit
    query several ms and a 2,000-match query hundreds; an open association left waiting keeps
    the gentle default. Identifiers are not pretty-printed for a log nobody reads (pynetdicom
    formats every C-FIND answer before it knows whether INFO is shown).
    """
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
    dul = assoc.dul
    previous = dul._run_loop_delay
    dul._run_loop_delay = TRANSFER_LOOP_DELAY
    try:
        yield assoc
    finally:
        dul._run_loop_delay = previous


class _RequestingAE(AE):
    """pynetdicom's AE, with the network reactor of a new association polling quickly.

    An association's reactor sleeps 1 ms whenever its socket is quiet; opening one waits on it
    several times (connect, request, accept), which cost a one-hit query about 3 ms. The
    socket is made right after the association, before its reactor starts.
    """

    def _create_socket(
        self, assoc: Association, address: Any, tls_args: tuple[ssl.SSLContext, str] | None
    ) -> AssociationSocket:
        assoc.dul._run_loop_delay = TRANSFER_LOOP_DELAY
        return super()._create_socket(assoc, address, tls_args)


def make_ae(config: Config) -> AE:
    """An application entity with our AE title and the configured timeouts."""
    ae = _RequestingAE(ae_title=config.ae_title)
    timeouts = config.timeouts
    ae.connection_timeout = timeouts.connection
    ae.acse_timeout = timeouts.acse
    ae.dimse_timeout = timeouts.dimse
    ae.network_timeout = timeouts.network
    ae.maximum_pdu_size = MAX_PDU
    return ae


def status_category(code: int) -> str:
    """``"success"``, ``"pending"``, ``"cancel"``, ``"warning"`` or ``"failure"`` for a DIMSE status."""
    category = code_to_category(code).lower()
    return "failure" if category == "unknown" else category


def status_meaning(code: int, service: str = "") -> str:
    """The standard's words for a DIMSE status ``code`` of ``service`` (find, get, move, store)."""
    from pynetdicom import status as st

    tables = {
        "find": st.QR_FIND_SERVICE_CLASS_STATUS,
        "get": st.QR_GET_SERVICE_CLASS_STATUS,
        "move": st.QR_MOVE_SERVICE_CLASS_STATUS,
        "store": st.STORAGE_SERVICE_CLASS_STATUS,
    }
    table = tables.get(service, st.GENERAL_STATUS)
    for candidate in (table, st.GENERAL_STATUS):
        if code in candidate:
            return candidate[code][1] or candidate[code][0]
    if 0xA700 <= code <= 0xA7FF:
        return "Refused: Out of resources"
    if 0xA900 <= code <= 0xA9FF:
        return "Data set does not match SOP class"
    if 0xC000 <= code <= 0xCFFF:
        return "Unable to process"
    return code_to_category(code)


def storage_contexts(
    sop_classes: Iterable[str], budget: int = MAX_CONTEXTS, compressed: bool = True
) -> list[PresentationContext]:
    """Presentation contexts to receive ``sop_classes``: uncompressed, plus each compressed encoding.

    One context per (SOP class, compressed syntax) lets the PACS send what it stores without
    transcoding; the number of compressed contexts shrinks to stay within ``budget``.
    """
    classes = list(dict.fromkeys(str(c) for c in sop_classes if c))
    if not classes:
        classes = list(DEFAULT_STORAGE_CLASSES)
    classes = classes[:budget]
    per_class = (budget - len(classes)) // len(classes) if compressed else 0
    extra = COMPRESSED_TRANSFER_SYNTAXES[: max(0, per_class)]
    contexts = [build_context(c, list(UNCOMPRESSED_TRANSFER_SYNTAXES)) for c in classes]
    contexts += [build_context(c, ts) for c in classes for ts in extra]
    return contexts


@dataclass
class _Watch:
    """What happened while opening an association (filled by event handlers)."""

    opened: threading.Event = field(default_factory=threading.Event)
    accepted: threading.Event = field(default_factory=threading.Event)
    peer_aborted: threading.Event = field(default_factory=threading.Event)


class Connector:
    """Opens associations to one node and raises a named error when that fails.

    Parameters
    ----------
    node : PacsNode
        The PACS.
    config : Config
        Our AE title and the timeouts.
    tcp_nodelay : bool
        Set TCP_NODELAY on our sockets (leave on; off only to measure its effect).
    """

    def __init__(self, node: PacsNode, config: Config, tcp_nodelay: bool = True) -> None:
        self.node = node
        self.config = config
        self.tcp_nodelay = tcp_nodelay
        self.ae = make_ae(config)
        self.tls = tls_context(node)

    def associate(
        self,
        contexts: Sequence[PresentationContext],
        purpose: str,
        ext_neg: Sequence[Any] = (),
        handlers: Sequence[tuple[Any, ...]] = (),
        fast_loop: bool = False,
    ) -> Association:
        """Open an association offering ``contexts``; ``purpose`` names it in errors.

        Raises
        ------
        PacsUnreachable, PacsTimeout, AssociationRejected, AssociationAborted, NoAcceptedContext
        """
        node = self.node
        watch = _Watch()
        evt_handlers: list[tuple[Any, ...]] = [
            (evt.EVT_CONN_OPEN, _on_open, [watch, fast_loop, self.tcp_nodelay]),
            (evt.EVT_ACCEPTED, _on_accepted, [watch]),
            (evt.EVT_ABORTED, _on_aborted, [watch]),
            *handlers,
        ]
        tls = _TlsWrapper(self.tls) if self.tls is not None else None
        started = time.monotonic()
        assoc = self.ae.associate(
            node.host,
            node.port,
            contexts=list(contexts),
            ae_title=node.ae_title,
            ext_neg=list(ext_neg),
            evt_handlers=evt_handlers,
            tls_args=(tls, node.host) if tls is not None else None,  # type: ignore[arg-type]
        )
        if assoc.is_established:
            if not fast_loop:
                assoc.dul._run_loop_delay = IDLE_LOOP_DELAY
            return assoc
        _close_leftovers(assoc, tls)
        elapsed = time.monotonic() - started
        timeouts = self.config.timeouts
        if assoc.is_rejected:
            rsp = assoc.acceptor.primitive
            raise AssociationRejected(
                node.host,
                node.port,
                self.config.ae_title,
                node.ae_title,
                result=rsp.result_str if rsp is not None else "rejected",
                source=rsp.source_str if rsp is not None else "",
                reason=rsp.reason_str if rsp is not None else "no reason given",
            )
        if not watch.opened.is_set():
            if self.tls is not None:
                _raise_tls_failure(node, self.tls, timeouts.connection)
            raise PacsUnreachable(node.host, node.port, timeouts.connection, f"no connection for {purpose}")
        if watch.accepted.is_set():
            raise NoAcceptedContext(node.host, node.port, purpose, [str(c.abstract_syntax) for c in contexts])
        if elapsed >= timeouts.acse * 0.9:
            raise PacsTimeout(node.host, node.port, "acse", timeouts.acse)
        if self.tls is not None:
            # TLS 1.3 reports a refused client certificate only once the PACS is read.
            raise TlsFailed(
                node.host,
                node.port,
                f"the PACS closed the connection during {purpose}; it may refuse our certificate",
            )
        raise AssociationAborted(node.host, node.port, f"association negotiation for {purpose}")


def _close_leftovers(assoc: Association, tls: _TlsWrapper | None) -> None:
    """Close the sockets of an association that failed to open (pynetdicom leaves some open)."""
    sock = getattr(assoc.dul.socket, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
    if tls is not None:
        tls.close()


class _TlsWrapper:
    """Wraps sockets like its SSL context, and can close the one pynetdicom leaves open.

    When the TLS handshake fails, pynetdicom's connect() calls shutdown() on the unconnected
    socket, which raises, so its close() never runs.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.sockets: list[ssl.SSLSocket] = []

    def wrap_socket(self, sock: socket.socket, **kwargs: Any) -> ssl.SSLSocket:
        wrapped = self.context.wrap_socket(sock, **kwargs)
        self.sockets.append(wrapped)
        return wrapped

    def close(self) -> None:
        for wrapped in self.sockets:
            wrapped.close()


def tls_context(node: PacsNode) -> ssl.SSLContext | None:
    """The client TLS context for ``node`` (None without ``tls_ca``): trust its CA, show our certificate.

    Raises
    ------
    TlsFailed
        A file cannot be read as a PEM certificate or key.
    """
    if not node.uses_tls:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=node.tls_ca)
        if node.tls_cert:
            context.load_cert_chain(node.tls_cert, node.tls_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsFailed(node.host, node.port, f"cannot load the certificate files: {exc}") from exc
    return context


def _raise_tls_failure(node: PacsNode, context: ssl.SSLContext, timeout: float) -> None:
    """Say why a TLS connection failed: pynetdicom only logs it, so try the handshake once more."""
    try:
        with (
            socket.create_connection((node.host, node.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=node.host),
        ):
            return  # the handshake works now: the first failure was the network's
    except ssl.SSLError as exc:
        raise TlsFailed(node.host, node.port, exc.reason or str(exc)) from exc
    except OSError:
        return


def _on_open(event: evt.Event, watch: _Watch, fast_loop: bool, tcp_nodelay: bool) -> None:
    watch.opened.set()
    lean_connection(event, fast_loop=fast_loop, tcp_nodelay=tcp_nodelay)


def _on_accepted(event: evt.Event, watch: _Watch) -> None:
    watch.accepted.set()


def _on_aborted(event: evt.Event, watch: _Watch) -> None:
    watch.peer_aborted.set()


def accepted_uid(assoc: Association, abstract_syntax: str) -> UID | None:
    """The transfer syntax accepted for ``abstract_syntax`` as SCU, or None."""
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == abstract_syntax and cx.as_scu:
            return UID(cx.transfer_syntax[0])
    return None
