"""Getting files to disk: start writing a file's dirty pages early, and fsync by path.

Linux's ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` queues writeback without waiting for it;
called every few slices while a series file is written, the disk works while the next slices
are decoded. Elsewhere this does nothing and the final fsync does all the work.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["fsync_path", "start_writeback"]

_SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load()


def start_writeback(fd: int) -> None:
    """Queue the file's dirty pages for writing (errors surface at the later fsync)."""
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def fsync_path(path: Path) -> None:
    """fsync a file, or a folder (so that the names of files created in it survive a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
