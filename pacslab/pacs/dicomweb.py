"""The DICOMweb transport: QIDO-RS, WADO-RS and STOW-RS with dicomweb-client.

:class:`DicomwebClient` implements :class:`~pacslab.pacs.client.PacsClient` with the same
filters, records and errors as the DIMSE client. WADO-RS parts are handed to the callback
as they stream in, in the transfer syntax the server stores (no transcoding, no decoding).
"""

from __future__ import annotations

import fnmatch
import logging
import struct
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from requests.adapters import HTTPAdapter

from pacslab.config import Config, PacsNode
from pacslab.pacs import query
from pacslab.pacs.base import QueryRetrieveBase
from pacslab.pacs.client import (
    DateFilter,
    OnInstance,
    OnProgress,
    PatientMatch,
    QueryTable,
    ReceivedInstance,
    RetrieveMethod,
    RetrieveResult,
    StoreStatus,
)
from pacslab.pacs.errors import (
    AssociationAborted,
    PacsError,
    PacsTimeout,
    PacsUnreachable,
    QueryFailed,
    QueryFilterError,
    RetrieveFailed,
    RetrieveIncomplete,
    TlsFailed,
)
from pacslab.pacs.receiver import RetrieveSession

__all__ = ["DicomwebClient"]

LOGGER = logging.getLogger(__name__)

# "*": every instance in the transfer syntax it is stored in, so the server need not transcode.
_SOP_INSTANCE_UID = "00080018"
_TEXT_KEYS = frozenset(
    {"PatientName", "PatientID", "AccessionNumber", "StudyDescription", "SeriesDescription"}
)
# Characters sent as they are in QIDO query values (wildcards, UID lists, date ranges).
_URL_SAFE = "*?,-._"
ACCEPT_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class _WebClient(DICOMwebClient):
    """dicomweb-client with WADO-RS parts as raw bytes (its public methods decode each part)
    and QIDO-RS wildcards sent unencoded (its query strings encode ``*`` and ``?``)."""

    def _http_get(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        if params:
            pairs = []
            for key, values in params.items():
                for value in values if isinstance(values, list | tuple | set) else [values]:
                    pairs.append(f"{quote(str(key))}={quote(str(value), safe=_URL_SAFE)}")
            url = f"{url}?{'&'.join(pairs)}"
        return super()._http_get(url, None, headers, stream)

    def iter_parts(self, url: str, accept: str = ACCEPT_AS_STORED) -> Iterator[bytes]:
        """Stream the parts of a multipart WADO-RS response."""
        response = super()._http_get(url, headers={"Accept": accept}, stream=True)
        content_type = response.headers.get("Content-Type", "")
        if content_type.startswith("application/dicom"):
            # A server that sends a single instance without the multipart envelope.
            with response:
                yield response.content
            return
        yield from self._decode_multipart_message(response, stream=True)


class DicomwebClient(QueryRetrieveBase):
    """A PACS spoken to over DICOMweb (QIDO-RS, WADO-RS, STOW-RS).

    Parameters
    ----------
    node : PacsNode
        ``dicomweb_url`` is the service root (``http://host:port/dicom-web``).
    config : Config
        Timeouts (``connection`` to connect, ``network`` between bytes).
    modalities_in_study : bool, optional
        Whether the server matches ModalitiesInStudy; ``None`` finds out from its answers.
    """

    def __init__(self, node: PacsNode, config: Config, *, modalities_in_study: bool | None = None) -> None:
        if not node.dicomweb_url:
            raise QueryFilterError("dicomweb_url", "", f"node {node.name!r} has no DICOMweb URL")
        self.node = node
        self.config = config
        self.modalities_in_study = modalities_in_study
        parts = urlsplit(node.dicomweb_url)
        self._host = parts.hostname or node.host
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._session = requests.Session()
        # Kept-alive connections are closed with the client even when close() is never called.
        weakref.finalize(self, self._session.close)
        self._web = self._client(self._session)

    def _client(self, session: requests.Session) -> _WebClient:
        node = self.node
        if node.uses_tls:
            cert = (node.tls_cert, node.tls_key) if node.tls_cert else None
            session.mount("https://", _NodeTls(node.tls_ca, cert))
        web = _WebClient(
            url=self.node.dicomweb_url.rstrip("/"),
            session=session,
            timeout=(self.config.timeouts.connection, self.config.timeouts.network),
        )
        # Retries with back-off would hide a stopped server for many seconds.
        web.set_http_retry_params(retry=False)
        return web

    def __enter__(self) -> DicomwebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    # -- errors ---------------------------------------------------------------------------

    def _raise(self, exc: Exception, during: str) -> NoReturn:
        """Translate a requests/HTTP error into a named PACS error."""
        timeouts = self.config.timeouts
        if isinstance(exc, requests.exceptions.SSLError):
            raise TlsFailed(self._host, self._port, str(exc)) from exc
        if isinstance(exc, requests.ConnectTimeout):
            raise PacsUnreachable(self._host, self._port, timeouts.connection, str(exc)) from exc
        if isinstance(exc, requests.Timeout):
            raise PacsTimeout(self._host, self._port, "network", timeouts.network) from exc
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            code = exc.response.status_code
            raise QueryFailed(code, f"HTTP {code} {exc.response.reason}", during) from exc
        if isinstance(exc, requests.ConnectionError) and not _mid_transfer(exc):
            raise PacsUnreachable(self._host, self._port, timeouts.connection, str(exc)) from exc
        raise AssociationAborted(self._host, self._port, during) from exc

    # -- echo and queries -----------------------------------------------------------------

    def echo(self) -> float:
        """A one-study QIDO-RS request; return its round trip in seconds."""
        started = time.monotonic()
        try:
            self._web.search_for_studies(limit=1, fields=["StudyInstanceUID"])
        except (requests.RequestException, ValueError) as exc:
            self._raise(exc, "QIDO-RS echo")
        return time.monotonic() - started

    def _qido(
        self, level: query.Level, filters: query.QueryFilters, mis: bool, web: _WebClient | None = None
    ) -> tuple[list[query.Answer], bool]:
        params = query.qido_params(level, filters)
        if not mis:
            params.pop("ModalitiesInStudy", None)
        checks = _url_safe_params(params)
        page = None if filters.limit is None else filters.limit + 1
        answers: list[query.Answer] = []
        offset = 0
        while True:
            raw = self._search(level, dict(params), page, offset, web or self._web)
            answers += [a for a in raw if all(_matches(a, k, v) for k, v in checks.items())]
            # Checked-out answers can leave a page short: fetch the next one.
            if page is None or len(raw) < page or len(answers) >= page:
                break
            offset += len(raw)
        truncated = filters.limit is not None and len(answers) > filters.limit
        return answers[: filters.limit] if truncated else answers, truncated

    def _search(
        self, level: query.Level, params: dict[str, str], limit: int | None, offset: int, web: _WebClient
    ) -> list[Any]:
        fields = query.qido_fields(level)
        paging: dict[str, Any] = {"fields": fields, "limit": limit, "offset": offset or None}
        try:
            if level == "STUDY":
                return web.search_for_studies(search_filters=params, **paging)
            study = params.pop("StudyInstanceUID", None)
            if study is not None and "," in study:
                params["StudyInstanceUID"], study = study, None
            if level == "SERIES":
                return web.search_for_series(study_instance_uid=study, search_filters=params, **paging)
            series = params.pop("SeriesInstanceUID", None)
            return web.search_for_instances(
                study_instance_uid=study, series_instance_uid=series, search_filters=params, **paging
            )
        except (requests.RequestException, ValueError) as exc:
            self._raise(exc, f"QIDO-RS {level.lower()} query")

    def _find(self, level: query.Level, filters: query.QueryFilters) -> QueryTable[Any]:
        answers, truncated = self._qido(level, filters, True)
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
        """Patients matching the filters (QIDO-RS has no patient level: studies grouped by patient)."""
        filters = query.make_filters(
            patient_name=patient_name,
            patient_id=patient_id,
            patient_birth_date=patient_birth_date,
            limit=limit,
        )
        answers, _ = self._qido("STUDY", filters.without("limit"), True)
        patients: dict[tuple[str, str], list[query.Answer]] = {}
        for a in answers:
            match = query.patient_from(a)
            key = (match.patient_id, match.patient_name)
            patients.setdefault(key, []).append(a)
        records = [
            PatientMatch(
                patient_id=pid,
                patient_name=name,
                patient_birth_date=query.patient_from(group[0]).patient_birth_date,
                patient_sex=query.patient_from(group[0]).patient_sex,
                n_studies=len(group),
            )
            for (pid, name), group in patients.items()
        ]
        truncated = limit is not None and len(records) > limit
        return QueryTable("PATIENT", records[:limit] if limit else records, PatientMatch, truncated)

    def _find_studies(self, filters: query.QueryFilters) -> query.StudyQueryOutcome:
        return query.find_studies(self._qido, filters, self.modalities_in_study)

    def _urls(self, request: query.RetrieveRequest) -> list[str]:
        base = f"{self._web.base_url}/studies/{request.study_uid}"
        if request.level == "STUDY":
            return [base]
        base += f"/series/{request.series_uid}"
        if request.level == "SERIES":
            return [base]
        return [f"{base}/instances/{uid}" for uid in request.sop_instance_uids]

    def _expected(self, request: query.RetrieveRequest, messages: list[str]) -> list[str] | None:
        """Every SOP Instance UID of the request, on a session of its own (it runs alongside)."""
        filters = query.make_filters(study_uid=request.study_uid, series_uid=request.series_uid or None)
        params = query.qido_params("IMAGE", filters)
        with requests.Session() as session:
            try:
                raw = self._search("IMAGE", params, None, 0, self._client(session))
            except PacsError as exc:
                messages.append(f"could not list the instances ({exc})")
                return None
        # Only the UIDs are needed: read them from the JSON without building data sets.
        uids = (item.get(_SOP_INSTANCE_UID, {}).get("Value", [None])[0] for item in raw)
        return [str(u) for u in uids if u]

    def _session_for(
        self,
        request: query.RetrieveRequest,
        on_instance: OnInstance,
        on_progress: OnProgress | None,
        messages: list[str],
    ) -> RetrieveSession:
        """A session counting the request's instances now, to list them if the transfer ends short."""
        if request.level == "IMAGE":
            return RetrieveSession("wado", on_instance, on_progress, list(request.sop_instance_uids))
        filters = query.make_filters(study_uid=request.study_uid, series_uid=request.series_uid or None)
        count: int | None = None
        try:
            if request.level == "STUDY":
                answers, _ = self._qido("STUDY", filters, True)
                count = query.study_from(answers[0]).n_instances if answers else 0
            else:
                answers, _ = self._qido("SERIES", filters, True)
                count = query.series_from(answers[0]).n_instances if answers else 0
        except QueryFailed as exc:
            messages.append(f"could not count the instances beforehand ({exc})")
        session = RetrieveSession("wado", on_instance, on_progress, expected_count=count)
        session.list_when_short(lambda: self._expected(request, messages))
        return session

    def retrieve(
        self,
        request: query.RetrieveRequest,
        on_instance: OnInstance,
        method: RetrieveMethod = "auto",
        on_progress: OnProgress | None = None,
        cancel_event: threading.Event | None = None,
    ) -> RetrieveResult:
        """Run a WADO-RS retrieve, streaming each part to ``on_instance``.

        Raises
        ------
        RetrieveIncomplete
            Instances missing, refused by the callback, or the server went away midway.
        RetrieveFailed
            The server refused the request (HTTP error) before sending anything.
        """
        if method not in ("auto", "wado"):
            raise QueryFilterError("method", method, "a DICOMweb node retrieves with 'auto' or 'wado'")
        messages: list[str] = []
        session = self._session_for(request, on_instance, on_progress, messages)
        lost: PacsError | None = None
        cancelled = False
        for url in self._urls(request):
            parts = self._web.iter_parts(url)
            try:
                for part in parts:
                    session.deliver(_instance(part))
                    if cancel_event is not None and cancel_event.is_set():
                        cancelled = True
                        break
            except requests.HTTPError as exc:
                if exc.response is not None:
                    exc.response.close()  # a streamed error response holds its connection
                code = exc.response.status_code if exc.response is not None else 0
                if code == 404 and request.level == "IMAGE":
                    messages.append(f"{url.rsplit('/', 1)[-1]}: not found")
                    continue
                if not session.received_uids:
                    reason = exc.response.reason if exc.response is not None else str(exc)
                    raise RetrieveFailed(code, f"HTTP {code} {reason}", "WADO-RS") from exc
                lost = QueryFailed(code, f"HTTP {code}", "WADO-RS")
            except (requests.RequestException, InvalidDicomError, ValueError) as exc:
                try:
                    self._raise(exc, "WADO-RS retrieve")
                except PacsError as error:
                    lost = error
            finally:
                close = getattr(parts, "close", None)
                if close is not None:
                    close()
            if cancelled or lost is not None:
                break
        session.close(self.config.timeouts.network)
        session.settle(self.config.timeouts.network, clean=lost is None and not cancelled)
        if lost is None and not cancelled and not session.received_uids and session.expected == 0:
            raise RetrieveFailed(
                None,
                "no instance matches the request",
                "WADO-RS",
                "The server holds nothing under these UIDs; check them with a query first.",
            )
        level = request.level
        if cancelled:
            return session.result(level, "cancelled", None, messages)
        result = session.result(level, "incomplete", None, messages)
        reasons = []
        if lost is not None:
            reasons.append(str(lost))
        if session.rejected_uids:
            refused = len(session.rejected_uids)
            reasons.append(f"{refused} instances refused by the callback: {session.errors[0]}")
        if result.missing_uids:
            reasons.append(f"{len(result.missing_uids)} listed instances did not arrive")
        if not reasons:
            return session.result(level, "success", None, messages)
        raise RetrieveIncomplete(result, "; ".join(reasons)) from (lost or session.first_error)

    # -- store ----------------------------------------------------------------------------

    def store(self, datasets: Iterable[Dataset | Path | str]) -> list[StoreStatus]:
        """STOW-RS the data sets or files; one :class:`StoreStatus` per item, in order."""
        loaded: list[Dataset | None] = []
        statuses: list[StoreStatus | None] = []
        for item in datasets:
            try:
                decoded = item if isinstance(item, Dataset) else pydicom.dcmread(item)
                decoded.ensure_file_meta()
                loaded.append(decoded)
                statuses.append(None)
            except (OSError, InvalidDicomError, ValueError) as exc:
                loaded.append(None)
                statuses.append(StoreStatus("", "", -1, f"not sent: cannot read {item}: {exc}", "failure"))
        sendable = [ds for ds in loaded if ds is not None]
        if not sendable:
            return [s for s in statuses if s is not None]
        response = self._stow(sendable)
        outcome: dict[str, tuple[int, str, str]] = {}
        for item in response.get("ReferencedSOPSequence", []):
            uid = str(item.ReferencedSOPInstanceUID)
            warning = item.get("WarningReason")
            if warning is not None:
                outcome[uid] = (int(warning), "stored with a warning", "warning")
            else:
                outcome[uid] = (0, "stored", "success")
        for item in response.get("FailedSOPSequence", []):
            reason = int(item.get("FailureReason", 0xC000) or 0xC000)
            outcome[str(item.ReferencedSOPInstanceUID)] = (reason, "refused by the server", "failure")
        result = []
        for ds, status in zip(loaded, statuses, strict=True):
            if status is not None or ds is None:
                result.append(status)
                continue
            uid = str(ds.SOPInstanceUID)
            code, meaning, category = outcome.get(uid, (-1, "not listed in the STOW-RS response", "failure"))
            result.append(StoreStatus(uid, str(ds.SOPClassUID), code, meaning, category))  # type: ignore[arg-type]
        return [s for s in result if s is not None]

    def _stow(self, datasets: list[Dataset]) -> Dataset:
        try:
            return self._web.store_instances(datasets)
        except requests.HTTPError as exc:
            response = exc.response
            if response is not None and response.content:
                try:
                    return Dataset.from_json(response.content)
                except (ValueError, TypeError):
                    pass
            self._raise(exc, "STOW-RS")
        except (requests.RequestException, ValueError) as exc:
            self._raise(exc, "STOW-RS")


_META_SHORT_VRS = frozenset({b"AE", b"SH", b"UI", b"UL", b"CS", b"US"})
_META_UIDS = {0x0002: "sop_class_uid", 0x0003: "sop_instance_uid", 0x0010: "transfer_syntax_uid"}


def _quick_part10(part: bytes) -> ReceivedInstance | None:
    """The instance of a Part 10 file whose meta group is plain explicit VR little endian.

    Reads only the three UIDs a retrieve needs with ``struct`` (pydicom takes a millisecond
    per instance for the same); anything unusual returns None for pydicom to judge.
    """
    if part[128:132] != b"DICM" or part[132:140] != b"\x02\x00\x00\x00UL\x04\x00":
        return None
    (length,) = struct.unpack_from("<I", part, 140)
    end = 144 + length
    if end > len(part):
        return None
    found: dict[str, str] = {}
    pos = 144
    while pos + 8 <= end:
        group, element = struct.unpack_from("<HH", part, pos)
        vr = bytes(part[pos + 4 : pos + 6])
        if group != 2:
            return None
        if vr in _META_SHORT_VRS:
            (size,) = struct.unpack_from("<H", part, pos + 6)
            pos += 8
        else:
            (size,) = struct.unpack_from("<I", part, pos + 8)
            pos += 12
        key = _META_UIDS.get(element)
        if key is not None and vr == b"UI":
            found[key] = bytes(part[pos : pos + size]).rstrip(b"\x00 ").decode("ascii", "replace")
        pos += size
    if pos != end or len(found) != len(_META_UIDS):
        return None
    return ReceivedInstance(dataset_offset=end, data=part, **found)


def _instance(part: bytes) -> ReceivedInstance:
    quick = _quick_part10(part)
    if quick is not None:
        return quick
    try:
        return ReceivedInstance.from_part10(part)
    except (InvalidDicomError, AttributeError):
        # A part without file meta: decode it to learn what it is.
        ds = pydicom.dcmread(BytesIO(part), force=True)
        return ReceivedInstance.from_dataset(ds)


class _NodeTls(HTTPAdapter):
    """HTTPS trusting the node's CA and showing our certificate, whatever the environment says.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override ``Session.verify``, so the
    settings are applied to each request here instead.
    """

    def __init__(self, ca: str, cert: tuple[str, str] | None) -> None:
        super().__init__()
        self._ca = ca
        self._cert = cert

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = self._ca
        if self._cert is not None:
            kwargs["cert"] = self._cert
        return super().send(request, **kwargs)


def _mid_transfer(exc: Exception) -> bool:
    """True when the connection broke after the server had started answering."""
    return isinstance(exc, requests.exceptions.ChunkedEncodingError) or "Connection broken" in str(exc)


def _url_safe_params(params: dict[str, str]) -> dict[str, str]:
    """Make match values safe to send unencoded; return the originals that need checking.

    Orthanc 1.10 does not percent-decode query values, so ``Brain%2A`` (what an encoding
    client sends for ``Brain*``) matches nothing, nor does a value with a space or ``^``.
    Every character that would need encoding becomes the single-character wildcard ``?``,
    and the answers are checked against the value as typed. Wildcard text is checked too:
    Orthanc matches descriptions ignoring case over DICOMweb but not over DIMSE.
    """
    checks = {}
    for key, value in params.items():
        safe = "".join(c if c.isascii() and (c.isalnum() or c in _URL_SAFE) else "?" for c in value)
        if safe != value:
            params[key] = safe
        if safe != value or (key in _TEXT_KEYS and ("*" in value or "?" in value)):
            # Servers differ on case and on wildcards in text; check as DIMSE would.
            checks[key] = value
    return checks


def _matches(answer: query.Answer, keyword: str, pattern: str) -> bool:
    """DICOM matching of one answer value (person names ignore case, as most PACS do)."""
    text = query.answer_text(answer, keyword)
    if keyword == "PatientName":
        text, pattern = text.upper(), pattern.upper()
    return fnmatch.fnmatchcase(text, pattern.replace("[", "[[]"))
