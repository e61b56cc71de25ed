"""The DIMSE transport: C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE with pynetdicom.

:class:`DimseClient` implements :class:`~pacslab.pacs.client.PacsClient`. Queries use one
association per call, or one kept open inside ``with client:``. A retrieve counts what it
expects (one study-level C-FIND), lists the instances (C-FIND) while they transfer, and
compares: a transfer that lost instances raises
:class:`~pacslab.pacs.errors.RetrieveIncomplete` naming them.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, build_role, evt
from pynetdicom.association import Association

from pacslab.config import Config, PacsNode
from pacslab.pacs import query
from pacslab.pacs.association import (
    PATIENT_ROOT_FIND,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    VERIFICATION,
    Connector,
    accepted_uid,
    busy,
    status_category,
    status_meaning,
    storage_contexts,
)
from pacslab.pacs.base import QueryRetrieveBase
from pacslab.pacs.client import (
    DateFilter,
    OnInstance,
    OnProgress,
    PatientMatch,
    QueryTable,
    RetrieveMethod,
    RetrieveResult,
    StoreStatus,
)
from pacslab.pacs.errors import (
    AssociationAborted,
    MoveDestinationUnknown,
    NoAcceptedContext,
    PacsError,
    PacsTimeout,
    QueryFailed,
    QueryFilterError,
    RetrieveFailed,
    RetrieveIncomplete,
)
from pacslab.pacs.operations import send_request
from pacslab.pacs.receiver import Receiver, RetrieveSession, instance_from_store_event
from pacslab.pacs.upper_layer import serve_stores

__all__ = ["DimseClient"]

LOGGER = logging.getLogger(__name__)

_QUERY_CONTEXTS = [
    build_context(VERIFICATION),
    build_context(STUDY_ROOT_FIND),
    build_context(PATIENT_ROOT_FIND),
]
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Message IDs unique within the process, so the receiver can tell concurrent C-MOVEs apart.
_MESSAGE_IDS = itertools.cycle(range(1, 65536))
_CANCEL_POLL = 0.05
_NOTHING_HELD = "The PACS holds nothing under these UIDs; check them with a query first."


def _next_msg_id() -> int:
    return next(_MESSAGE_IDS)


class _CancelWatcher:
    """Sends C-CANCEL when the user's event is set; aborts if the PACS then ignores it."""

    def __init__(
        self, assoc: Association, msg_id: int, model: str, cancel_event: threading.Event | None, grace: float
    ) -> None:
        self.assoc = assoc
        self.msg_id = msg_id
        self.model = model
        self.cancel_event = cancel_event
        self.grace = grace
        self.cancel_sent = False
        self.aborted = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if cancel_event is not None:
            self._thread = threading.Thread(target=self._run, name="pacslab-cancel", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self.cancel_event is not None
        while not self._done.wait(_CANCEL_POLL):
            if self.cancel_event.is_set():
                break
        else:
            return
        try:
            self.assoc.send_c_cancel(self.msg_id, query_model=self.model)
            self.cancel_sent = True
        except (RuntimeError, ValueError):  # the association ended meanwhile
            return
        if not self._done.wait(self.grace):
            LOGGER.warning("PACS ignored C-CANCEL for %.0f s; aborting the association", self.grace)
            self.aborted = True
            self.assoc.abort()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()


class DimseClient(QueryRetrieveBase):
    """A PACS spoken to over DIMSE (pynetdicom).

    Parameters
    ----------
    node : PacsNode
        The PACS (AE title, host, port).
    config : Config
        Our AE title, receiver port and timeouts.
    receiver : Receiver, optional
        Storage SCP for C-MOVE; by default the process's shared one on ``config.receiver_port``,
        started on the first C-MOVE.
    modalities_in_study : bool, optional
        Whether the PACS matches ModalitiesInStudy; ``None`` finds out from its answers.
    tcp_nodelay : bool
        Set TCP_NODELAY on our sockets (the default; off only to measure what it is worth).
    """

    def __init__(
        self,
        node: PacsNode,
        config: Config,
        *,
        receiver: Receiver | None = None,
        modalities_in_study: bool | None = None,
        tcp_nodelay: bool = True,
    ) -> None:
        self.node = node
        self.config = config
        self.modalities_in_study = modalities_in_study
        self._connector = Connector(node, config, tcp_nodelay=tcp_nodelay)
        self._receiver = receiver
        self._query_assoc: Association | None = None
        self._keep_open = False
        self._lock = threading.RLock()

    # -- associations ---------------------------------------------------------------------

    def __enter__(self) -> DimseClient:
        """Keep one query association open until :meth:`close`."""
        self._keep_open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the open query association, if any."""
        with self._lock:
            self._keep_open = False
            assoc, self._query_assoc = self._query_assoc, None
            if assoc is not None and assoc.is_established:
                assoc.release()

    @contextmanager
    def _query_association(self) -> Iterator[Association]:
        with self._lock:
            assoc = self._query_assoc
            if assoc is None or not assoc.is_established:
                assoc = self._connector.associate(_QUERY_CONTEXTS, "C-FIND")
                if self._keep_open:
                    self._query_assoc = assoc
            with busy(assoc):  # the release too: its answer is then read at once
                try:
                    yield assoc
                finally:
                    if not self._keep_open:
                        if assoc.is_established:
                            assoc.release()
                    elif not assoc.is_established:
                        self._query_assoc = None

    def _lost(self, assoc: Association, during: str, since: float) -> PacsError:
        """The error for a missing response: a timeout, or the peer went away."""
        timeout = self.config.timeouts.dimse
        if time.monotonic() - since >= timeout * 0.9:
            return PacsTimeout(self.node.host, self.node.port, "dimse", timeout)
        return AssociationAborted(self.node.host, self.node.port, during)

    # -- echo and queries -----------------------------------------------------------------

    def echo(self) -> float:
        """C-ECHO; return the round trip in seconds (association included unless kept open)."""
        started = time.monotonic()
        with self._query_association() as assoc:
            sent = time.monotonic()
            status = assoc.send_c_echo(msg_id=_next_msg_id())
            if "Status" not in status:
                raise self._lost(assoc, "C-ECHO", sent)
            if status.Status != 0:
                raise QueryFailed(int(status.Status), status_meaning(int(status.Status)), "C-ECHO")
        return time.monotonic() - started

    def _c_find(
        self, assoc: Association, level: query.Level, identifier: Dataset, limit: int | None
    ) -> tuple[list[Dataset], bool]:
        model = PATIENT_ROOT_FIND if level == "PATIENT" else STUDY_ROOT_FIND
        if accepted_uid(assoc, model) is None:
            raise NoAcceptedContext(self.node.host, self.node.port, "C-FIND", [model])
        msg_id = _next_msg_id()
        answers: list[Dataset] = []
        truncated = cancelled = False
        last = time.monotonic()
        for status, ident in send_request(assoc, "C-FIND", identifier, model, msg_id):
            if "Status" not in status:
                raise self._lost(assoc, "C-FIND", last)
            last = time.monotonic()
            code = int(status.Status)
            category = status_category(code)
            if category == "pending":
                if ident is not None and not cancelled:
                    answers.append(ident)
                if limit is not None and len(answers) > limit and not cancelled:
                    # One more than asked tells us there is more; stop the PACS sending the rest.
                    assoc.send_c_cancel(msg_id, query_model=model)
                    cancelled = truncated = True
            elif category in ("success", "cancel"):
                break
            else:
                comment = str(status.get("ErrorComment", "") or "")
                raise QueryFailed(code, status_meaning(code, "find"), comment)
        if limit is not None and len(answers) > limit:
            answers, truncated = answers[:limit], True
        return answers, truncated

    def _runner(self, assoc: Association) -> query.QueryRunner:
        def run(
            level: query.Level, filters: query.QueryFilters, mis: bool
        ) -> tuple[list[query.Answer], bool]:
            identifier = query.find_identifier(level, filters, modalities_in_study=mis)
            answers, truncated = self._c_find(assoc, level, identifier, filters.limit)
            return list(answers), truncated

        return run

    def _find(self, level: query.Level, filters: query.QueryFilters) -> QueryTable[Any]:
        with self._query_association() as assoc:
            answers, truncated = self._runner(assoc)(level, filters, True)
        records = [query.record_from(level, a) for a in answers]
        return QueryTable(level, records, query.RECORD_TYPES[level], truncated)

    def find_patients(
        self,
        *,
        patient_name: str | None = None,
        patient_id: str | None = None,
        patient_birth_date: DateFilter = None,
        limit: int | None = None,
    ) -> QueryTable[PatientMatch]:
        """Patients matching the filters (Patient Root C-FIND)."""
        filters = query.make_filters(
            patient_name=patient_name,
            patient_id=patient_id,
            patient_birth_date=patient_birth_date,
            limit=limit,
        )
        return self._find("PATIENT", filters)

    def _find_studies(self, filters: query.QueryFilters) -> query.StudyQueryOutcome:
        with self._query_association() as assoc:
            return query.find_studies(self._runner(assoc), filters, self.modalities_in_study)

    def retrieve(
        self,
        request: query.RetrieveRequest,
        on_instance: OnInstance,
        method: RetrieveMethod = "auto",
        on_progress: OnProgress | None = None,
        cancel_event: threading.Event | None = None,
    ) -> RetrieveResult:
        """Run a retrieve by C-GET or C-MOVE (``"auto"``: C-GET, else C-MOVE).

        Returns
        -------
        RetrieveResult
            ``status == "success"`` when every expected instance reached ``on_instance``;
            ``"cancelled"`` when ``cancel_event`` was set (what arrived was delivered).

        Raises
        ------
        RetrieveIncomplete
            Instances failed, went missing, or the PACS went away midway.
        RetrieveFailed, MoveDestinationUnknown, NoAcceptedContext
            The PACS refused the request before sending anything.
        """
        if method not in ("auto", "c-get", "c-move"):
            raise QueryFilterError(
                "method", method, "a DIMSE node retrieves with 'auto', 'c-get' or 'c-move'"
            )
        messages: list[str] = []
        if method in ("auto", "c-get"):
            try:
                return self._c_get(request, on_instance, on_progress, cancel_event)
            except (NoAcceptedContext, RetrieveFailed) as exc:
                if method == "c-get":
                    raise
                LOGGER.info("C-GET not available (%s); trying C-MOVE", exc)
                messages.append(f"C-GET not available ({exc}); used C-MOVE")
        return self._c_move(request, on_instance, on_progress, cancel_event, messages)

    def _expected(
        self, request: query.RetrieveRequest, messages: list[str]
    ) -> tuple[list[str] | None, list[str]]:
        """SOP Instance UIDs and SOP classes the PACS holds for ``request`` (None if it cannot say)."""
        uids: list[str] = []
        classes: list[str] = []
        try:
            with self._query_association() as assoc:
                if request.level == "STUDY":
                    series_filters = query.make_filters(study_uid=request.study_uid)
                    ident = query.find_identifier("SERIES", series_filters)
                    series, _ = self._c_find(assoc, "SERIES", ident, None)
                    series_uids = [str(s.get("SeriesInstanceUID", "")) for s in series]
                else:
                    series_uids = [request.series_uid]
                for series_uid in series_uids:
                    filters = query.make_filters(
                        study_uid=request.study_uid,
                        series_uid=series_uid,
                        sop_instance_uid=list(request.sop_instance_uids) or None,
                    )
                    ident = query.find_identifier("IMAGE", filters)
                    answers, _ = self._c_find(assoc, "IMAGE", ident, None)
                    for a in answers:
                        uids.append(str(a.get("SOPInstanceUID", "")))
                        classes.append(str(a.get("SOPClassUID", "") or ""))
        except (QueryFailed, NoAcceptedContext) as exc:
            messages.append(f"could not list the instances beforehand ({exc}); counts come from the PACS")
            return None, []
        return [u for u in uids if u], classes

    def _summary(self, request: query.RetrieveRequest, messages: list[str]) -> tuple[int | None, list[str]]:
        """Instance count and SOP classes of the request from one study-level (and one
        series-level) answer: cheap, unlike listing every instance."""
        try:
            with self._query_association() as assoc:
                ident = Dataset()
                ident.QueryRetrieveLevel = "STUDY"
                ident.StudyInstanceUID = request.study_uid
                ident.SOPClassesInStudy = None
                ident.NumberOfStudyRelatedInstances = None
                answers, _ = self._c_find(assoc, "STUDY", ident, None)
                if not answers:
                    return 0, []
                classes = [str(c) for c in _values(answers[0].get("SOPClassesInStudy"))]
                count = _count(answers[0].get("NumberOfStudyRelatedInstances"))
                if request.level == "SERIES":
                    ident = Dataset()
                    ident.QueryRetrieveLevel = "SERIES"
                    ident.StudyInstanceUID = request.study_uid
                    ident.SeriesInstanceUID = request.series_uid
                    ident.NumberOfSeriesRelatedInstances = None
                    answers, _ = self._c_find(assoc, "SERIES", ident, None)
                    count = _count(answers[0].get("NumberOfSeriesRelatedInstances")) if answers else 0
        except (QueryFailed, NoAcceptedContext) as exc:
            messages.append(f"could not count the instances beforehand ({exc})")
            return None, []
        return count, classes

    def _prepare(
        self,
        request: query.RetrieveRequest,
        method: str,
        on_instance: OnInstance,
        on_progress: OnProgress | None,
        messages: list[str],
    ) -> tuple[query.RetrieveRequest, RetrieveSession, list[str]]:
        """The request to send, its session, and the SOP classes to offer contexts for.

        A study or series is counted first, and listed instance by instance while it transfers
        (C-MOVE) or only if it ends short of the count (C-GET).
        Asked-for instances are listed first: those the PACS does not hold are left out of the
        request (Orthanc refuses a whole C-GET when one UID is unknown) and count as missing.
        """
        if request.level != "IMAGE":
            count, classes = self._summary(request, messages)
            session = RetrieveSession(method, on_instance, on_progress, expected_count=count)

            def list_uids() -> list[str] | None:
                return self._expected(request, messages)[0]

            if method == "c-move":
                session.list_in_background(list_uids)  # tells our receiver whose an instance is
            else:
                session.list_when_short(list_uids)
            return request, session, classes
        listed, classes = self._expected(request, messages)
        if listed is None:
            return request, RetrieveSession(method, on_instance, on_progress), classes
        present = [u for u in request.sop_instance_uids if u in set(listed)]
        absent = len(request.sop_instance_uids) - len(present)
        if absent:
            messages.append(f"{absent} of the requested instances are not on the PACS")
        session = RetrieveSession(method, on_instance, on_progress, list(request.sop_instance_uids))
        narrowed = replace(request, sop_instance_uids=tuple(present))
        self._nothing_to_send(narrowed, session, messages)
        return narrowed, session, classes

    def _nothing_to_send(
        self, request: query.RetrieveRequest, session: RetrieveSession, messages: list[str]
    ) -> None:
        """Raise when an instance-level request kept no instance the PACS holds."""
        if request.level == "IMAGE" and not request.sop_instance_uids:
            result = session.result(request.level, "incomplete", None, messages)
            raise RetrieveIncomplete(result, "none of the requested instances is on the PACS")

    def _c_get(
        self,
        request: query.RetrieveRequest,
        on_instance: OnInstance,
        on_progress: OnProgress | None,
        cancel_event: threading.Event | None,
    ) -> RetrieveResult:
        messages: list[str] = []
        request, session, classes = self._prepare(request, "c-get", on_instance, on_progress, messages)
        model = STUDY_ROOT_GET
        store_contexts = storage_contexts([c for c in classes if c], budget=127)
        classes_offered = dict.fromkeys(str(cx.abstract_syntax) for cx in store_contexts)
        roles = [build_role(c, scp_role=True) for c in classes_offered]
        assoc = self._connector.associate(
            [build_context(model), *store_contexts],
            "C-GET",
            ext_neg=roles,
            handlers=[(evt.EVT_C_STORE, _on_get_store, [session])],
            fast_loop=True,
        )
        if accepted_uid(assoc, model) is None:
            assoc.release()
            raise NoAcceptedContext(self.node.host, self.node.port, "C-GET", [model])
        if not any(cx.as_scp for cx in assoc.accepted_contexts):
            assoc.release()
            raise NoAcceptedContext(
                self.node.host,
                self.node.port,
                "C-GET (storage as SCP)",
                list(classes_offered),
            )
        serve_stores(assoc, session.deliver_request)
        msg_id = _next_msg_id()
        responses = send_request(assoc, "C-GET", request.identifier(), model, msg_id)
        return self._finish(
            assoc, session, request, "C-GET", responses, msg_id, model, cancel_event, messages
        )

    def _receiver_for_move(self) -> Receiver:
        if self._receiver is not None:
            if not self._receiver.running:
                self._receiver.start()
            return self._receiver
        host = "127.0.0.1" if self.node.host in _LOOPBACK else "0.0.0.0"
        calling = [self.node.ae_title, *(n.ae_title for n in self.config.nodes)]
        return Receiver.shared(self.config, host, allowed_calling_aes=calling)

    def _c_move(
        self,
        request: query.RetrieveRequest,
        on_instance: OnInstance,
        on_progress: OnProgress | None,
        cancel_event: threading.Event | None,
        messages: list[str],
    ) -> RetrieveResult:
        receiver = self._receiver_for_move()
        request, session, _ = self._prepare(request, "c-move", on_instance, on_progress, messages)
        model = STUDY_ROOT_MOVE
        msg_id = _next_msg_id()
        receiver.register(msg_id, session)
        try:
            assoc = self._connector.associate([build_context(model)], "C-MOVE")
            if accepted_uid(assoc, model) is None:
                assoc.release()
                raise NoAcceptedContext(self.node.host, self.node.port, "C-MOVE", [model])
            responses = send_request(
                assoc, "C-MOVE", request.identifier(), model, msg_id, move_destination=self.config.ae_title
            )
            return self._finish(
                assoc, session, request, "C-MOVE", responses, msg_id, model, cancel_event, messages, receiver
            )
        finally:
            receiver.unregister(msg_id)

    def _finish(
        self,
        assoc: Association,
        session: RetrieveSession,
        request: query.RetrieveRequest,
        service: str,
        responses: Iterator[tuple[Dataset, Dataset | None]],
        msg_id: int,
        model: str,
        cancel_event: threading.Event | None,
        messages: list[str],
        receiver: Receiver | None = None,
    ) -> RetrieveResult:
        """Read the responses to the end, then decide: success, cancelled, or incomplete."""
        watcher = _CancelWatcher(assoc, msg_id, model, cancel_event, self.config.timeouts.acse)
        final: int | None = None
        failed_uids: list[str] = []
        lost: PacsError | None = None
        last = time.monotonic()
        try:
            for status, ident in responses:
                if "Status" not in status:
                    lost = self._lost(assoc, service, last)
                    break
                last = time.monotonic()
                session.update(status)
                code = int(status.Status)
                if status_category(code) == "pending":
                    continue
                final = code
                if ident is not None and "FailedSOPInstanceUIDList" in ident:
                    value = ident.FailedSOPInstanceUIDList
                    failed_uids = [value] if isinstance(value, str) else [str(v) for v in value]
                break
        finally:
            watcher.stop()
            if assoc.is_established:
                assoc.release()
        if watcher.aborted:
            lost = None
        # Every sub-operation ended before the final response, so everything sent has been
        # queued for the callback by now (also on our receiver's own associations).
        session.close(self.config.timeouts.dimse)
        clean = lost is None and final == 0 and not watcher.cancel_sent
        session.settle(self.config.timeouts.dimse, clean)
        service_key = "get" if service == "C-GET" else "move"
        nothing_moved = (
            session.completed + session.failed + session.warning == 0 and not session.received_uids
        )
        refused = (
            final is not None
            and status_category(final) == "failure"
            and nothing_moved
            and not watcher.cancel_sent
        )
        if (
            service == "C-GET"
            and isinstance(lost, AssociationAborted)
            and nothing_moved
            and not watcher.cancel_sent
        ):
            # Some PACS (Orthanc) drop the association of a C-GET they do not allow.
            raise RetrieveFailed(
                None, "the PACS aborted the association", service, "It may not allow C-GET from our AE title."
            ) from lost
        if refused:
            assert final is not None
            meaning = status_meaning(final, service_key)
            if receiver is not None and (final == 0xA801 or session.expected):
                host, port = self._receiver_address(receiver)
                raise MoveDestinationUnknown(final, meaning, self.config.ae_title, host, port)
            detail = "The PACS lists no instances for this request." if session.expected == 0 else ""
            raise RetrieveFailed(final, meaning, service, detail)
        if nothing_moved and session.expected == 0 and lost is None and not watcher.cancel_sent:
            # A "successful" retrieve of nothing is a study or series the PACS does not hold.
            raise RetrieveFailed(final, "no instance matches the request", service, _NOTHING_HELD)
        meaning = "" if final is None else status_meaning(final, service_key)
        if final is not None and final != 0:
            messages.append(f"{service} ended with status 0x{final:04X} ({meaning})")
        if watcher.cancel_sent or final == 0xFE00:
            return session.result(request.level, "cancelled", final, messages, failed_uids)
        result = session.result(request.level, "incomplete", final, messages, failed_uids)
        reasons = []
        if lost is not None:
            reasons.append(str(lost))
        elif final is None:
            reasons.append(f"{service} gave no final response")
        elif final != 0:
            reasons.append(f"{service} ended with status 0x{final:04X} ({meaning})")
        if session.rejected_uids:
            reasons.append(
                f"{len(session.rejected_uids)} instances refused by the callback: {session.errors[0]}"
            )
        if result.missing_uids:
            reasons.append(f"{len(result.missing_uids)} listed instances did not arrive")
        if not reasons and result.failed:
            reasons.append(f"the PACS reports {result.failed} failed sub-operations")
        if not reasons:
            return session.result(request.level, "success", final, messages, failed_uids)
        error = RetrieveIncomplete(result, "; ".join(reasons))
        raise error from (lost or session.first_error)

    def _receiver_address(self, receiver: Receiver | None) -> tuple[str, int]:
        if receiver is None:
            return ("?", self.config.receiver_port)
        return (receiver.host, receiver.port)

    # -- store ----------------------------------------------------------------------------

    def store(self, datasets: Iterable[Dataset | Path | str]) -> list[StoreStatus]:
        """C-STORE each data set or file; one :class:`StoreStatus` per item, in order.

        Files are sent as they are on disk (no decoding). An item the PACS cannot take in its
        transfer syntax gets a failure status; nothing is raised per instance.
        """
        items: list[_Outgoing | None] = []
        statuses: list[StoreStatus | None] = []
        for given in datasets:
            try:
                items.append(_Outgoing.of(given))
                statuses.append(None)
            except (OSError, ValueError, AttributeError, InvalidDicomError) as exc:
                items.append(None)
                statuses.append(StoreStatus("", "", -1, f"not sent: cannot read {given}: {exc}", "failure"))
        by_pair: dict[tuple[str, str], list[int]] = {}
        for i, item in enumerate(items):
            if item is not None:
                by_pair.setdefault((item.sop_class_uid, item.transfer_syntax_uid), []).append(i)
        pairs = list(by_pair)
        # At most 128 presentation contexts per association (each pair may add a fallback).
        per_assoc = 60
        for start in range(0, len(pairs), per_assoc):
            indices = [i for pair in pairs[start : start + per_assoc] for i in by_pair[pair]]
            self._store_group([items[i] for i in indices], indices, statuses)  # type: ignore[misc]
        return [s for s in statuses if s is not None]

    def _store_group(
        self, items: list[_Outgoing], indices: list[int], statuses: list[StoreStatus | None]
    ) -> None:
        # One context per (SOP class, transfer syntax) so files go out as they are, plus an
        # uncompressed fallback for classes sent compressed, for a PACS that takes only that.
        contexts = []
        pairs = dict.fromkeys((item.sop_class_uid, item.transfer_syntax_uid) for item in items)
        for sop_class, syntax in pairs:
            contexts.append(build_context(sop_class, syntax))
        for sop_class in dict.fromkeys(c for c, ts in pairs if ts not in UNCOMPRESSED_TRANSFER_SYNTAXES):
            if (sop_class, ExplicitVRLittleEndian) not in pairs:
                contexts.append(build_context(sop_class, list(UNCOMPRESSED_TRANSFER_SYNTAXES)))
        assoc = self._connector.associate(contexts, "C-STORE", fast_loop=True)
        accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
        try:
            for item, index in zip(items, indices, strict=True):
                if not assoc.is_established:
                    statuses[index] = item.status(None, "not sent: the association ended")
                    continue
                payload, problem = _sendable(item, accepted)
                if payload is None:
                    statuses[index] = item.status(0x0122, problem)
                    continue
                sent = time.monotonic()
                rsp = assoc.send_c_store(payload, msg_id=_next_msg_id())
                if "Status" not in rsp:
                    error = self._lost(assoc, "C-STORE", sent)
                    statuses[index] = item.status(None, f"not stored: {error}")
                    continue
                code = int(rsp.Status)
                statuses[index] = item.status(code, status_meaning(code, "store"))
        finally:
            if assoc.is_established:
                assoc.release()


def _values(value: object) -> list[object]:
    """A multi-valued element's values as a list (empty for None or "")."""
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes):
        return [value]
    return list(value)  # type: ignore[call-overload]


def _count(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _sendable(item: _Outgoing, accepted: set[tuple[str, str]]) -> tuple[Dataset | Path | None, str]:
    """What to send for ``item`` on this association, or None and why not."""
    if (item.sop_class_uid, item.transfer_syntax_uid) in accepted:
        return item.payload, ""
    if not any((item.sop_class_uid, ts) in accepted for ts in UNCOMPRESSED_TRANSFER_SYNTAXES):
        return None, f"the PACS accepts this SOP class in neither {item.transfer_syntax_uid} nor uncompressed"
    # pynetdicom re-encodes a decoded data set between the uncompressed syntaxes; compressed
    # pixel data is decoded first.
    ds = item.payload if isinstance(item.payload, Dataset) else dcmread(item.payload)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        if ds is item.payload:
            ds = copy.deepcopy(ds)  # leave the caller's data set as it was
        try:
            ds.decompress()
        except Exception as exc:  # pydicom raises several types for undecodable pixel data
            return None, f"the PACS takes it only uncompressed, and decoding failed: {exc}"
    return ds, ""


@dataclass
class _Outgoing:
    """An instance to C-STORE, described without decoding files."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    payload: Dataset | Path

    @classmethod
    def of(cls, item: Dataset | Path | str) -> _Outgoing:
        if isinstance(item, Dataset):
            meta = getattr(item, "file_meta", None)
            ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
            if not ts:
                ts = (
                    ImplicitVRLittleEndian
                    if item.original_encoding == (True, True)
                    else ExplicitVRLittleEndian
                )
                item.ensure_file_meta()
                item.file_meta.TransferSyntaxUID = ts
            return cls(str(item.SOPClassUID), str(item.SOPInstanceUID), ts, item)
        path = Path(item)
        try:
            meta = read_file_meta_info(path)
        except InvalidDicomError:
            meta = None
        keys = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
        if meta is not None and all(k in meta for k in keys):
            return cls(
                str(meta.MediaStorageSOPClassUID),
                str(meta.MediaStorageSOPInstanceUID),
                str(meta.TransferSyntaxUID),
                path,
            )
        # No file meta (a bare data set): decode it and send that.
        ds = dcmread(path, force=True)
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            raise InvalidDicomError("not a DICOM instance (no SOP Class/Instance UID)")
        return cls.of(ds)

    def status(self, code: int | None, meaning: str) -> StoreStatus:
        category = "failure" if code is None else status_category(code)
        if category not in ("success", "warning"):
            category = "failure"
        return StoreStatus(
            sop_instance_uid=self.sop_instance_uid,
            sop_class_uid=self.sop_class_uid,
            status=-1 if code is None else code,
            meaning=meaning,
            category=category,  # type: ignore[arg-type]
        )


def _on_get_store(event: evt.Event, session: RetrieveSession) -> int:
    """``EVT_C_STORE`` on a C-GET association: hand the encoded instance over undecoded."""
    return session.deliver(instance_from_store_event(event))
