"""Deterministic UIDs for exported objects.

A result exported twice gets the same Series and SOP Instance UIDs, so sending it again
replaces what the PACS already holds instead of adding a copy. The UIDs are derived from
the result key (the job id) and the source UIDs with :func:`pydicom.uid.generate_uid`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
from pydicom.uid import generate_uid

__all__ = ["content_key", "result_uid"]


def result_uid(result_key: str, *parts: str) -> str:
    """Return the UID of one exported object.

    Parameters
    ----------
    result_key : str
        What identifies the result, normally the job id.
    *parts : str
        What identifies the object within the result: its role (``"seg"``,
        ``"derived-series"``...) and the UID of the source it stands for.

    Returns
    -------
    str
        A UID under pydicom's root, equal for equal arguments.
    """
    return str(generate_uid(entropy_srcs=["pacslab", result_key, *parts]))


def content_key(arrays: Iterable[np.ndarray], *parts: str) -> str:
    """Return a key that stands for a result when no job id is given: a digest of its content."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
        digest.update(contiguous.tobytes())
    return digest.hexdigest()
