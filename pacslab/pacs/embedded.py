"""The embedded PACS: a pynetdicom Query/Retrieve and Storage SCP over a SQLite index.

It answers what a study browser asks (ModalitiesInStudy, related-instance counts, date ranges,
wildcards, UID lists, any return key) at the PATIENT, STUDY, SERIES and IMAGE levels of the
Patient Root and Study Root models; sends instances by C-GET on the requestor's association
and by C-MOVE to configured destinations; and keeps what it receives by C-STORE.

Files live under ``root/files`` named by a hash of their SOP Instance UID, so no UID or
Patient ID can choose where a file lands. Each handler turns a failure into a DICOM status and
logs it; nothing raises into pynetdicom's network loop.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import signal
import socket
import socketserver
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from pydicom import Dataset, dcmread
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    build_context,
    evt,
)
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from pacslab.config import Config, PacsNode
from pacslab.pacs.embedded_index import InvalidIdentifierError, PacsIndex, StoredInstance, query_level
from pacslab.pacs.embedded_matching import response_identifier

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.events import Event

__all__ = ["EmbeddedPacs", "InstanceRejectedError", "ListenError", "check_instance", "serve"]

LOGGER = logging.getLogger(__name__)

# DIMSE statuses (PS3.4 annexes B and C).
SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900
DATASET_DOES_NOT_MATCH = 0xA900  # the same code, as the Storage service names it
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
FIND_UNABLE_TO_PROCESS = 0xC311
RETRIEVE_UNABLE_TO_PROCESS = 0xC410

VERIFICATION = UID("1.2.840.10008.1.1")
# Patient Root (…2.1.x) and Study Root (…2.2.x) Query/Retrieve: FIND (x=1), MOVE (2), GET (3).
_QUERY_RETRIEVE = tuple(
    UID(f"1.2.840.10008.5.1.4.1.2.{root}.{service}") for root in (1, 2) for service in (1, 2, 3)
)
_UNCOMPRESSED: list[str] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
# A requestor may propose at most 128 presentation contexts (PS3.8 9.3.2.2).
_MAX_CONTEXTS = 128
_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_MAX_UID = 64  # PS3.5 9.1


class ListenError(OSError):
    """The embedded PACS cannot listen on its address (often: the port is taken)."""


class InstanceRejectedError(ValueError):
    """A file or C-STORE dataset that cannot be kept; the message says what is wrong."""

    def __init__(self, status: int, problem: str) -> None:
        self.status = status
        super().__init__(problem)


def check_instance(ds: Dataset) -> None:
    """Refuse what a PACS should not keep even though pydicom reads it.

    Raises
    ------
    InstanceRejectedError
        When a UID that places the instance in the hierarchy is missing, multi-valued, longer
        than 64 characters or holds control characters (NUL...), or native pixel data
        is shorter than Rows, Columns, frames and bits say (pydicom reads truncated files
        silently).
    """
    missing = [k for k in _REQUIRED_UIDS if not str(ds.get(k, "") or "").strip()]
    if missing:
        raise InstanceRejectedError(DATASET_DOES_NOT_MATCH, f"missing {', '.join(missing)}")
    for keyword in _REQUIRED_UIDS:
        # Odd but printable UIDs are kept (files are named by hash); these cannot be a UID at all,
        # and a multi-valued one breaks the C-GET/C-MOVE responses that would list it.
        element = ds[keyword]
        value = str(element.value)
        if element.VM != 1 or len(value) > _MAX_UID or not value.isprintable():
            raise InstanceRejectedError(
                DATASET_DOES_NOT_MATCH,
                f"{keyword} is not one UID of at most {_MAX_UID} printable characters: {value[:80]!r}",
            )
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    if "PixelData" in ds and not syntax.is_compressed:
        try:
            expected = get_expected_length(ds)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InstanceRejectedError(
                DATASET_DOES_NOT_MATCH, f"pixel data without a usable image description: {exc}"
            ) from exc
        if len(ds.PixelData) < expected:
            raise InstanceRejectedError(
                DATASET_DOES_NOT_MATCH,
                f"pixel data is truncated: {len(ds.PixelData)} bytes where the header needs {expected}",
            )


def _set_nodelay(event: Event) -> None:
    """Send each DIMSE message at once: without TCP_NODELAY small PDUs wait for delayed ACKs."""
    transport = event.assoc.dul.socket
    raw = transport.socket if transport is not None else None
    if raw is not None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _remember_association(event: Event, holder: dict[str, Association]) -> None:
    _set_nodelay(event)
    holder["assoc"] = event.assoc


class _HostFilteringServer(ThreadedAssociationServer):
    """pynetdicom's server, closing connections from hosts not allowed before reading anything."""

    allowed_hosts: tuple[str, ...] = ()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if not self.allowed_hosts or client_address[0] in self.allowed_hosts:
            return True
        LOGGER.warning("refused a connection from %s (not an allowed host)", client_address[0])
        return False

    def shutdown(self) -> None:
        # The server was made with AE.make_server and runs on our own thread: stop it and close
        # its socket (AssociationServer.shutdown also expects to be in the AE's own server list).
        socketserver.TCPServer.shutdown(self)
        self.server_close()


def _walk(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def _fit_transfer_syntax(ds: Dataset, contexts: list[PresentationContext]) -> Dataset:
    """Decompress ``ds`` when the peer accepted only uncompressed syntaxes for its SOP class.

    pynetdicom converts between the uncompressed syntaxes itself; compressed pixel data needs
    decoding first, which pydicom does with the pylibjpeg plugins.
    """
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    offered = {UID(cx.transfer_syntax[0]) for cx in contexts if cx.abstract_syntax == ds.SOPClassUID}
    if not syntax.is_compressed or syntax in offered or not offered:
        return ds
    if any(not ts.is_compressed for ts in offered):
        try:
            ds.decompress()
        except Exception:
            LOGGER.exception("cannot decompress %s for sending; sending as stored", ds.SOPInstanceUID)
    return ds


def _storage_contexts(instances: list[StoredInstance]) -> list[PresentationContext]:
    """Contexts to propose to a C-MOVE destination: uncompressed per SOP class, then as stored."""
    classes = sorted({i.sop_class_uid for i in instances})
    contexts = [build_context(sop_class, _UNCOMPRESSED) for sop_class in classes]
    stored = sorted(
        {
            (i.sop_class_uid, i.transfer_syntax_uid)
            for i in instances
            if UID(i.transfer_syntax_uid).is_compressed
        }
    )
    contexts += [build_context(sop_class, syntax) for sop_class, syntax in stored]
    return contexts[:_MAX_CONTEXTS]


class EmbeddedPacs:
    """A DICOM node on loopback serving C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE.

    Parameters
    ----------
    root : Path
        Folder for the SQLite index (``index.sqlite``) and the stored files (``files/``).
    ae_title : str
        The called AE title the node answers to; other called titles are rejected.
    host, port : str, int
        Where to listen; port 0 picks a free port (read :attr:`port` after :meth:`start`).
    destinations : mapping of str to (str, int), optional
        C-MOVE destinations: AE title to (host, port).
    allowed_calling_aes : iterable of str
        Calling AE titles allowed to associate; empty allows any.
    maximum_associations : int
        Simultaneous associations served; more are rejected.
    allowed_hosts : iterable of str
        Peer IP addresses allowed to connect; empty allows any. A connection from elsewhere is
        closed before anything is read from it.
    tls : ssl.SSLContext, optional
        Serve DICOM over TLS (PS3.15 B.1) with this server context; set its ``verify_mode`` to
        ``ssl.CERT_REQUIRED`` and load a CA to accept only peers with a certificate it signed.

    Examples
    --------
    >>> with EmbeddedPacs(tmp_path, port=0) as pacs:  # doctest: +SKIP
    ...     pacs.add_files([samples_folder])
    ...     print(pacs.node.address)
    """

    def __init__(
        self,
        root: Path,
        ae_title: str = "PACSLAB_PACS",
        host: str = "127.0.0.1",
        port: int = 11112,
        destinations: Mapping[str, tuple[str, int]] | None = None,
        allowed_calling_aes: Iterable[str] = (),
        maximum_associations: int = 10,
        allowed_hosts: Iterable[str] = (),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not ae_title or len(ae_title) > 16 or "\\" in ae_title or not ae_title.isprintable():
            raise ValueError(f"an AE title is 1 to 16 printable characters without '\\', got {ae_title!r}")
        if maximum_associations < 1:
            raise ValueError(f"maximum_associations must be at least 1, got {maximum_associations}")
        self.root = Path(root)
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.destinations: dict[str, tuple[str, int]] = dict(destinations or {})
        self.allowed_calling_aes = tuple(allowed_calling_aes)
        self.maximum_associations = maximum_associations
        self.allowed_hosts = tuple(allowed_hosts)
        self.tls = tls
        self._files = self.root / "files"
        self._incoming = self.root / "incoming"
        self._files.mkdir(parents=True, exist_ok=True)
        # Leftovers of an interrupted store are never indexed; start clean.
        shutil.rmtree(self._incoming, ignore_errors=True)
        self._incoming.mkdir(parents=True)
        self.index = PacsIndex(self.root / "index.sqlite")
        self._server: _HostFilteringServer | None = None

    # -- lifetime -------------------------------------------------------------------------

    @property
    def node(self) -> PacsNode:
        """This PACS as a :class:`~pacslab.config.PacsNode` a client can connect to."""
        return PacsNode(name="embedded", ae_title=self.ae_title, host=self.host, port=self.port)

    @property
    def dicom_port(self) -> int:
        """The DICOM port (the name :class:`~pacslab.pacs.orthanc.OrthancServer` uses too)."""
        return self.port

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def server(self) -> ThreadedAssociationServer | None:
        """The running pynetdicom server, or ``None`` when stopped."""
        return self._server

    def start(self) -> None:
        """Start listening in background threads; returns at once."""
        if self._server is not None:
            return
        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = self.maximum_associations
        ae.require_called_aet = True
        ae.require_calling_aet = list(self.allowed_calling_aes)
        ae.acse_timeout = 30
        ae.dimse_timeout = 60
        ae.network_timeout = 120
        ae.add_supported_context(VERIFICATION, ALL_TRANSFER_SYNTAXES)
        for model in _QUERY_RETRIEVE:
            ae.add_supported_context(model, _UNCOMPRESSED)
        for cx in AllStoragePresentationContexts:
            assert cx.abstract_syntax is not None
            # Both roles: storescu sends to us (we are SCP); a C-GET requestor proposes the SCP
            # role for itself so that we can send on its association.
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, _set_nodelay),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_STORE, self._on_store),
        ]
        try:
            server = ae.make_server(
                (self.host, self.port),
                ssl_context=self.tls,
                evt_handlers=handlers,
                server_class=_HostFilteringServer,
            )
        except OSError as exc:
            raise ListenError(
                f"the embedded PACS cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                "stop what uses that port or choose another (embedded_pacs.port, "
                "PACSLAB_EMBEDDED_PACS_PORT; 0 picks a free one)"
            ) from exc
        assert isinstance(server, _HostFilteringServer)
        # Set before the server takes its first connection.
        server.allowed_hosts = self.allowed_hosts
        threading.Thread(target=server.serve_forever, name=f"pacs-{self.ae_title}", daemon=True).start()
        self._server = server
        self.port = int(server.server_address[1])
        LOGGER.info("embedded PACS %s listening on %s:%d", self.ae_title, self.host, self.port)

    def stop(self) -> None:
        """Stop listening and end the open associations."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            # Closing the listening socket leaves accepted associations running.
            for assoc in server.active_associations:
                assoc.abort()

    def __enter__(self) -> EmbeddedPacs:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def add_destination(self, ae: str, host: str, port: int) -> None:
        """Make ``ae`` at ``host:port`` a C-MOVE destination."""
        self.destinations[ae] = (host, port)

    def add_modality(self, ae_title: str, host: str, port: int) -> None:
        """Same as :meth:`add_destination`, under the name the Orthanc fixture uses."""
        self.add_destination(ae_title, host, port)

    # -- storage ----------------------------------------------------------------------------

    def _file_for(self, sop_instance_uid: str) -> Path:
        digest = hashlib.sha256(sop_instance_uid.encode("utf-8", "surrogateescape")).hexdigest()
        return self._files / digest[:2] / digest[2:4] / f"{digest}.dcm"

    def _keep(self, incoming: Path) -> bool:
        """Index the DICOM file ``incoming`` and move it into place; ``True`` when new.

        Raises
        ------
        InstanceRejectedError
            When the file cannot be parsed or fails :func:`check_instance`; ``incoming`` is
            removed.
        """
        try:
            try:
                ds = dcmread(incoming)
                # Converting every element exposes corrupt values now rather than at query time.
                for _ in ds:
                    pass
                syntax = str(ds.file_meta.TransferSyntaxUID)
            except Exception as exc:
                raise InstanceRejectedError(CANNOT_UNDERSTAND, f"not a readable DICOM file: {exc}") from exc
            check_instance(ds)
            target = self._file_for(str(ds.SOPInstanceUID))
            target.parent.mkdir(parents=True, exist_ok=True)
            incoming.replace(target)
        finally:
            incoming.unlink(missing_ok=True)
        return self.index.add(ds, target.relative_to(self.root).as_posix(), syntax)

    def _incoming_file(self) -> Path:
        return self._incoming / f"{uuid.uuid4().hex}.part"

    def add_files(self, paths: Iterable[Path]) -> int:
        """Copy DICOM files (folders recursively) into the PACS and index them.

        Files that are not DICOM instances (DICOMDIR, READMEs, unreadable files) are skipped
        and logged.

        Parameters
        ----------
        paths : iterable of Path
            Files and folders.

        Returns
        -------
        int
            Number of instances added that the PACS did not hold before.

        Raises
        ------
        FileNotFoundError
            When a path does not exist; nothing is added then.
        """
        given = [Path(p) for p in paths]
        missing = [str(p) for p in given if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"{', '.join(missing)} does not exist; pass DICOM files or folders holding them"
            )
        added = 0
        for path in _walk(given):
            incoming = self._incoming_file()
            shutil.copyfile(path, incoming)
            try:
                added += self._keep(incoming)
            except InstanceRejectedError as exc:
                LOGGER.warning("skipped %s: %s", path, exc)
        return added

    # -- handlers ---------------------------------------------------------------------------

    def _on_echo(self, event: Event) -> int:
        return SUCCESS

    def _on_store(self, event: Event) -> int:
        incoming = self._incoming_file()
        try:
            incoming.write_bytes(event.encoded_dataset(include_meta=True))
            self._keep(incoming)
        except InstanceRejectedError as exc:
            LOGGER.warning("rejected C-STORE from %s: %s", event.assoc.requestor.ae_title, exc)
            return exc.status
        except OSError:
            LOGGER.exception("cannot write a C-STORE dataset under %s", self.root)
            return OUT_OF_RESOURCES
        return SUCCESS

    def _on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        try:
            identifier = event.identifier
            model = str(event.request.AffectedSOPClassUID)
            level = query_level(identifier, model)
            matches = list(self.index.matches(identifier, model))
        except InvalidIdentifierError as exc:
            LOGGER.warning("C-FIND identifier rejected: %s", exc)
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        except Exception:
            LOGGER.exception("C-FIND failed")
            yield FIND_UNABLE_TO_PROCESS, None
            return
        for _, record in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            response = response_identifier(identifier, record, level)
            response.RetrieveAETitle = self.ae_title
            yield PENDING, response

    def _instances(self, event: Event) -> list[StoredInstance]:
        return self.index.instances(event.identifier, str(event.request.AffectedSOPClassUID))

    def _send(
        self,
        event: Event,
        instances: list[StoredInstance],
        contexts: Callable[[], list[PresentationContext]],
    ) -> Iterator[tuple[int, Any]]:
        """The (status, dataset) pairs of the C-STORE sub-operations; stops on C-CANCEL.

        ``contexts`` gives the presentation contexts the sub-operations may use.
        """
        for instance in instances:
            if event.is_cancelled:
                yield CANCEL, None
                return
            try:
                ds = dcmread(self.root / instance.file)
            except Exception:
                LOGGER.exception("cannot read stored instance %s", instance.sop_instance_uid)
                # pynetdicom counts a pending result without a dataset as a failed sub-operation.
                yield PENDING, instance
                continue
            yield PENDING, _fit_transfer_syntax(ds, contexts())

    def _on_get(self, event: Event) -> Iterator[Any]:
        try:
            instances = self._instances(event)
        except Exception as exc:
            invalid = isinstance(exc, InvalidIdentifierError)
            LOGGER.warning("C-GET rejected: %s", exc)
            # pynetdicom takes a status only after the count of sub-operations.
            yield 1
            yield (IDENTIFIER_DOES_NOT_MATCH if invalid else RETRIEVE_UNABLE_TO_PROCESS), None
            return
        yield len(instances)

        def accepted() -> list[PresentationContext]:
            # We send on the requestor's association, where it accepted to be the Storage SCP.
            return [cx for cx in event.assoc.accepted_contexts if cx.as_scu]

        yield from self._send(event, instances, accepted)

    def _on_move(self, event: Event) -> Iterator[Any]:
        destination = self.destinations.get(str(event.move_destination or "").strip())
        if destination is None:
            LOGGER.warning("C-MOVE to unknown destination %r", event.move_destination)
            yield None, None
            return
        try:
            instances = self._instances(event)
        except Exception as exc:
            # pynetdicom takes no status before the destination and the sub-operation count,
            # and a status after them would mean associating with the destination for
            # nothing: a handler exception fails the C-MOVE (0xC514) with nothing sent.
            LOGGER.warning("C-MOVE rejected: %s", exc)
            raise
        holder: dict[str, Association] = {}
        options = {
            "contexts": _storage_contexts(instances),
            "evt_handlers": [(evt.EVT_CONN_OPEN, _remember_association, [holder])],
        }
        yield destination[0], destination[1], options
        yield len(instances)

        def accepted() -> list[PresentationContext]:
            assoc = holder.get("assoc")
            return list(assoc.accepted_contexts) if assoc is not None else []

        yield from self._send(event, instances, accepted)


def serve(config: Config, seed: Path | None = None) -> None:
    """Run the embedded PACS of ``config`` until Ctrl-C (or SIGTERM).

    Parameters
    ----------
    config : pacslab.config.Config
        ``config.embedded_pacs`` says where to listen and store; pacslab's own receiver
        (``config.ae_title`` on ``config.receiver_port``) and the configured DIMSE nodes become
        C-MOVE destinations.
    seed : Path, optional
        Folder of DICOM files loaded when the PACS holds nothing yet.
    """
    settings = config.embedded_pacs
    destinations = {
        node.ae_title: (node.host, node.port)
        for node in config.nodes
        if node.transport == "dimse" and node.ae_title != settings.ae_title
    }
    destinations[config.ae_title] = ("127.0.0.1", config.receiver_port)
    pacs = EmbeddedPacs(
        settings.root,
        ae_title=settings.ae_title,
        host=settings.host,
        port=settings.port,
        destinations=destinations,
        allowed_calling_aes=settings.allowed_calling_aes,
    )
    if seed is not None and pacs.index.count() == 0:
        added = pacs.add_files([seed])
        print(f"loaded {added} instances from {seed}", flush=True)
    stopped = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    with pacs:
        print(
            f"embedded PACS {pacs.ae_title} on {pacs.host}:{pacs.port}: "
            f"{pacs.index.count('studies')} studies, {pacs.index.count()} instances "
            f"(root {pacs.root}); Ctrl-C stops",
            flush=True,
        )
        try:
            while not stopped.wait(timeout=1.0):
                pass
        except KeyboardInterrupt:
            pass
    print("embedded PACS stopped", flush=True)
