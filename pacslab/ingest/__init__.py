"""Ingest DICOM into the slice store: validate, group, sort, de-identify, write.

Sources: files, folders (recursive), ``.zip`` archives, uploaded bytes, pydicom datasets and
encoded datasets straight from a Storage SCP. See :class:`Ingest` and :func:`ingest_paths`.
"""

from pacslab.ingest.deid import PSEUDONYM_MAP_NAME, Deidentifier, PseudonymMap
from pacslab.ingest.errors import (
    BurnedInAnnotation,
    DecodeFailed,
    DecompressionBomb,
    EmptyFile,
    FileSetViolation,
    ImageTooLarge,
    InconsistentSeries,
    IngestError,
    MalformedDicom,
    MissingPreamble,
    NoPixelData,
    NotDicom,
    PixelDataMismatch,
    SequenceTooDeep,
    TruncatedFile,
    UnreadableFile,
    UnsupportedTransferSyntax,
    ZipPathEscape,
)
from pacslab.ingest.limits import IngestLimits
from pacslab.ingest.report import IngestProgress, IngestReport, Rejection
from pacslab.ingest.schema import FileSetSchema
from pacslab.ingest.session import Ingest, ingest_paths, recover_inbox

__all__ = [
    "PSEUDONYM_MAP_NAME",
    "BurnedInAnnotation",
    "DecodeFailed",
    "DecompressionBomb",
    "Deidentifier",
    "EmptyFile",
    "FileSetSchema",
    "FileSetViolation",
    "ImageTooLarge",
    "InconsistentSeries",
    "Ingest",
    "IngestError",
    "IngestLimits",
    "IngestProgress",
    "IngestReport",
    "MalformedDicom",
    "MissingPreamble",
    "NoPixelData",
    "NotDicom",
    "PixelDataMismatch",
    "PseudonymMap",
    "Rejection",
    "SequenceTooDeep",
    "TruncatedFile",
    "UnreadableFile",
    "UnsupportedTransferSyntax",
    "ZipPathEscape",
    "ingest_paths",
    "recover_inbox",
]
