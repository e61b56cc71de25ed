"""Talking to a PACS: query, retrieve and store over DIMSE (pynetdicom) or DICOMweb.

>>> from pacslab.config import load_config
>>> from pacslab.pacs import connect_pacs
>>> config = load_config()
>>> pacs = connect_pacs(config.node(), config)          # doctest: +SKIP
>>> studies = pacs.find_studies(patient_name="Doe*", study_date="20240101-")  # doctest: +SKIP
>>> studies.to_dataframe()                              # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pacslab.pacs.batch import BatchMatch, BatchRow, batch_query, read_batch
from pacslab.pacs.client import (
    InstanceMatch,
    OnInstance,
    OnProgress,
    PacsClient,
    PatientMatch,
    QueryTable,
    ReceivedInstance,
    RetrieveMethod,
    RetrieveProgress,
    RetrieveResult,
    SeriesMatch,
    StoreStatus,
    StudyMatch,
    into_ingest,
)
from pacslab.pacs.errors import (
    AssociationAborted,
    AssociationRejected,
    BatchFileError,
    MoveDestinationUnknown,
    NoAcceptedContext,
    PacsError,
    PacsTimeout,
    PacsUnreachable,
    QueryFailed,
    QueryFilterError,
    RetrieveFailed,
    RetrieveIncomplete,
    TlsFailed,
)

if TYPE_CHECKING:
    from pacslab.config import Config, PacsNode

__all__ = [
    "AssociationAborted",
    "AssociationRejected",
    "BatchFileError",
    "BatchMatch",
    "BatchRow",
    "InstanceMatch",
    "MoveDestinationUnknown",
    "NoAcceptedContext",
    "OnInstance",
    "OnProgress",
    "PacsClient",
    "PacsError",
    "PacsTimeout",
    "PacsUnreachable",
    "PatientMatch",
    "QueryFailed",
    "QueryFilterError",
    "QueryTable",
    "ReceivedInstance",
    "RetrieveFailed",
    "RetrieveIncomplete",
    "RetrieveMethod",
    "RetrieveProgress",
    "RetrieveResult",
    "SeriesMatch",
    "StoreStatus",
    "StudyMatch",
    "TlsFailed",
    "batch_query",
    "connect_pacs",
    "into_ingest",
    "read_batch",
]


def connect_pacs(node: PacsNode, config: Config) -> PacsClient:
    """A client for ``node``, speaking the transport its settings name.

    Nothing is sent until the first call; use ``with connect_pacs(...) as pacs:`` to keep one
    association (or HTTP session) open across queries.

    Parameters
    ----------
    node : PacsNode
        ``transport="dimse"`` (pynetdicom) or ``"dicomweb"`` (dicomweb-client).
    config : Config
        Our AE title, receiver port and timeouts.
    """
    if node.transport == "dicomweb":
        from pacslab.pacs.dicomweb import DicomwebClient

        return DicomwebClient(node, config)
    from pacslab.pacs.dimse import DimseClient

    return DimseClient(node, config)
