"""Exclusive per-series write locks shared by threads and processes.

``flock`` locks belong to an open file description, so two threads that each open the lock
file exclude each other just as two processes do, and the kernel drops the lock when a
writer dies (even by SIGKILL), so a crash never leaves a series locked.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["series_key", "series_lock"]


def series_key(series_uid: str) -> str:
    """A file-name-safe key for a series: UIDs come from outside and never name files."""
    return hashlib.sha256(series_uid.encode("utf-8", "surrogateescape")).hexdigest()[:32]


@contextmanager
def series_lock(lock_dir: Path, key: str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the write lock of one series (by :func:`series_key`).

    Yields False if ``blocking`` is off and another writer holds it.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
