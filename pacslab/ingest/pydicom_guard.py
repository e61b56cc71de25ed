"""Run pydicom on untrusted input: its warnings kept as notes, its many exception types named.

pydicom reports odd-but-readable files with ``warnings.warn`` and broken ones with at least
six exception types. ``catch_warnings`` changes process-wide state, so calls are serialised
with one lock (pydicom parsing holds the GIL anyway).
"""

from __future__ import annotations

import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from pydicom.errors import InvalidDicomError

from pacslab.ingest.errors import (
    ImageTooLarge,
    IngestError,
    MalformedDicom,
    NotDicom,
    SequenceTooDeep,
    TruncatedFile,
)

__all__ = ["classify", "quiet_pydicom"]

_LOCK = threading.RLock()


@contextmanager
def quiet_pydicom() -> Iterator[list[warnings.WarningMessage]]:
    """Collect pydicom's warnings instead of showing (or, under pytest, raising) them."""
    with _LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


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
