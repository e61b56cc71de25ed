"""Run pydicom on untrusted input: its warnings kept as notes, its many exception types named.

pydicom reports odd-but-readable files with ``warnings.warn`` (collected by
:func:`quiet_pydicom`) and broken ones with at least six exception types (named here).
"""

from __future__ import annotations

import struct
import zlib

from pydicom.errors import InvalidDicomError

from pacslab.ingest.errors import (
    ImageTooLarge,
    IngestError,
    MalformedDicom,
    NotDicom,
    SequenceTooDeep,
    TruncatedFile,
)
from pacslab.store.quiet import quiet_pydicom

__all__ = ["classify", "quiet_pydicom"]


def classify(name: str, error: BaseException) -> IngestError:
    """Turn whatever pydicom or a decoder raised into a named ingest error."""
    if isinstance(error, IngestError):
        return error
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, RecursionError):
        return SequenceTooDeep(name, "sequences are nested too deeply to read")
    if isinstance(error, MemoryError):
        return ImageTooLarge(name, "reading it needs more memory than is available")
    if isinstance(error, EOFError) or "end of file" in str(error).lower() or "truncat" in str(error).lower():
        return TruncatedFile(name, f"the file ends early ({text})")
    if isinstance(error, InvalidDicomError):
        return NotDicom(name, str(error))
    if isinstance(error, (struct.error, zlib.error)):
        return MalformedDicom(name, f"broken encoding ({text})")
    return MalformedDicom(name, text)
