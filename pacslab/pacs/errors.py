"""Named errors of the PACS layer; each message says what happened and what to do.

Every exception derives from :class:`PacsError`, so a widget can catch one class and show
``str(exc)``; the attributes carry the details for code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pacslab.pacs.client import RetrieveResult

__all__ = [
    "AssociationAborted",
    "AssociationRejected",
    "BatchFileError",
    "MoveDestinationUnknown",
    "NoAcceptedContext",
    "PacsError",
    "PacsTimeout",
    "PacsUnreachable",
    "QueryFailed",
    "QueryFilterError",
    "RetrieveFailed",
    "RetrieveIncomplete",
    "TlsFailed",
]


class PacsError(Exception):
    """Base class of every error raised by :mod:`pacslab.pacs`."""


class QueryFilterError(PacsError, ValueError):
    """A filter typed by the user cannot be turned into a DICOM query.

    Parameters
    ----------
    name : str
        The filter (``"study_date"``, ``"limit"`` ...).
    value : object
        What was given.
    problem : str
        What is wrong and what would be accepted.
    """

    def __init__(self, name: str, value: object, problem: str) -> None:
        self.name = name
        self.value = value
        self.problem = problem
        super().__init__(f"filter {name}={value!r}: {problem}")


class PacsUnreachable(PacsError):
    """No TCP connection could be made to the PACS (or the web server)."""

    def __init__(self, host: str, port: int, timeout: float, detail: str = "") -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.detail = detail
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"PACS at {host}:{port} is unreachable within {timeout:g} s{extra}. "
            "Check that it is running, that host and port in the node settings are right, "
            "and that no firewall is in the way."
        )


class PacsTimeout(PacsError):
    """The PACS accepted the connection but did not answer in time."""

    def __init__(self, host: str, port: int, stage: str, timeout: float) -> None:
        self.host = host
        self.port = port
        self.stage = stage
        self.timeout = timeout
        super().__init__(
            f"PACS at {host}:{port} did not answer within {timeout:g} s ({stage}). "
            f"It may be overloaded; try again, or raise timeouts.{stage} in the settings."
        )


class AssociationRejected(PacsError):
    """The PACS refused our association request (A-ASSOCIATE-RJ)."""

    def __init__(
        self,
        host: str,
        port: int,
        calling_ae: str,
        called_ae: str,
        result: str,
        source: str,
        reason: str,
    ) -> None:
        self.host = host
        self.port = port
        self.calling_ae = calling_ae
        self.called_ae = called_ae
        self.result = result
        self.source = source
        self.reason = reason
        hint = "Ask the PACS administrator why it refuses us."
        lowered = reason.lower()
        if "calling ae" in lowered:
            hint = (
                f"The PACS does not know our AE title {calling_ae!r}: register it on the PACS "
                "or set ae_title in the settings to one it knows."
            )
        elif "called ae" in lowered:
            hint = f"The PACS is not called {called_ae!r}: correct the node's ae_title."
        elif "congestion" in lowered or "limit" in lowered:
            hint = "The PACS is busy; try again in a moment."
        super().__init__(
            f"PACS {called_ae!r} at {host}:{port} rejected the association from {calling_ae!r}: "
            f"{reason} ({result}, {source}). {hint}"
        )


class AssociationAborted(PacsError):
    """The PACS dropped or aborted the association while we were talking to it."""

    def __init__(self, host: str, port: int, during: str) -> None:
        self.host = host
        self.port = port
        self.during = during
        super().__init__(
            f"The connection to the PACS at {host}:{port} was lost during {during}. "
            "The PACS may have been stopped or restarted; check it and try again."
        )


class TlsFailed(PacsError):
    """DICOM TLS to the PACS failed: our certificate files, or the handshake."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        self.reason = reason
        super().__init__(
            f"TLS with the PACS at {host}:{port} failed: {reason}. Check the node's tls_ca (the "
            "authority that signed the PACS certificate), and tls_cert/tls_key (ours, which the "
            "PACS must trust)."
        )


class NoAcceptedContext(PacsError):
    """The PACS accepted the association but none of the services we need."""

    def __init__(self, host: str, port: int, service: str, abstract_syntaxes: Sequence[str]) -> None:
        self.host = host
        self.port = port
        self.service = service
        self.abstract_syntaxes = tuple(abstract_syntaxes)
        names = ", ".join(_uid_name(uid) for uid in self.abstract_syntaxes)
        super().__init__(
            f"PACS at {host}:{port} does not offer {service} (no accepted presentation context "
            f"for {names}). Use another retrieve method, or ask the PACS administrator to enable it."
        )


class QueryFailed(PacsError):
    """A C-FIND / QIDO-RS query ended with a failure status."""

    def __init__(self, status: int, meaning: str, detail: str = "") -> None:
        self.status = status
        self.meaning = meaning
        self.detail = detail
        extra = f": {detail}" if detail else ""
        super().__init__(
            f"query failed with status 0x{status:04X} ({meaning}){extra}. "
            "Simplify the filters or check them against what the PACS supports."
        )


class RetrieveFailed(PacsError):
    """A retrieve request was refused as a whole, before anything was sent.

    ``status`` is the DIMSE or HTTP status, or None when the PACS dropped the association
    instead of answering.
    """

    def __init__(self, status: int | None, meaning: str, method: str, detail: str = "") -> None:
        self.status = status
        self.meaning = meaning
        self.method = method
        self.detail = detail
        extra = f" {detail}" if detail else ""
        code = "without a status" if status is None else f"with status 0x{status:04X}"
        super().__init__(f"{method} failed {code} ({meaning}).{extra}")


class MoveDestinationUnknown(RetrieveFailed):
    """C-MOVE refused because the PACS does not know our receiver's AE title.

    Raised for status 0xA801, and for a C-MOVE the PACS refuses outright (no sub-operation, no
    connection to our receiver) although it lists the instances: some PACS (Orthanc) answer an
    unknown destination with a generic 0xC000.
    """

    def __init__(self, status: int, meaning: str, ae_title: str, host: str, port: int) -> None:
        self.ae_title = ae_title
        self.host = host
        self.port = port
        super().__init__(
            status,
            meaning,
            "C-MOVE",
            f"The PACS does not seem to know our AE title {ae_title!r} as a destination: register it "
            f"at {host}:{port} as a DICOM modality on the PACS (Orthanc: DicomModalities), "
            "or use method='c-get'.",
        )


class RetrieveIncomplete(PacsError):
    """A retrieve ended without every expected instance; what arrived was delivered and kept.

    Attributes
    ----------
    result : RetrieveResult
        Counts, received and missing SOP Instance UIDs.
    reason : str
        Why it stopped (a failure status, a lost connection, a timeout ...).
    """

    def __init__(self, result: RetrieveResult, reason: str) -> None:
        self.result = result
        self.reason = reason
        self.missing_uids = result.missing_uids
        self.completed = result.completed
        self.failed = result.failed
        self.warning = result.warning
        self.expected = result.expected
        expected = "?" if result.expected is None else str(result.expected)
        if result.missing_known:
            missing = f"{len(result.missing_uids)} missing"
        else:
            missing = "which ones are missing is unknown: the PACS could not list them"
        super().__init__(
            f"retrieve incomplete: {result.received} of {expected} instances received "
            f"({result.failed} failed, {missing}): {reason}. "
            "What arrived has been kept; retry to fetch the rest."
        )


class BatchFileError(PacsError, ValueError):
    """A batch query file cannot be read (format, missing columns)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"batch file {path}: {problem}")


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name and name != uid else uid
