"""The inbox: what an ingest receives as bytes is written to disk before it is acknowledged.

Each ingest session spools into its own folder under ``store.root / "inbox"`` and holds an
exclusive lock on it while alive. A folder whose lock nobody holds belongs to an ingest that
died; :func:`abandoned_spools` finds those so their files can be ingested again.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

from pacslab.store.writeback import fsync_path

__all__ = ["LOCK_NAME", "Spool", "abandoned_spools"]

LOCK_NAME = ".session.lock"


class Spool:
    """One ingest session's folder in the inbox (created on first use)."""

    def __init__(self, inbox: Path) -> None:
        self.inbox = inbox
        self.folder = inbox / f"session-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._fd: int | None = None
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._unsynced: list[Path] = []

    def _open(self) -> None:
        if self._fd is None:
            # Locked under a private name first, so no recovery can take a session being born.
            self.inbox.mkdir(parents=True, exist_ok=True)
            creating = self.inbox / ("creating-" + self.folder.name)
            creating.mkdir()
            self._fd = os.open(creating / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            creating.rename(self.folder)

    def claim(self, folder: Path) -> Path | None:
        """Move an abandoned session folder into this one (atomic, so only one claimer wins)."""
        with self._lock:
            self._open()
        target = self.folder / folder.name
        try:
            folder.rename(target)
        except OSError:
            return None
        return target

    def write(self, chunks: Iterable[bytes], *, durable: bool = True) -> Path:
        """Write one file from ``chunks``; with ``durable`` it is fsynced before returning.

        Without ``durable`` the file waits for :meth:`sync` (or for :meth:`remove`, when
        its content reached the store and it is no longer needed).
        """
        with self._lock:
            self._open()
            path = self.folder / f"{next(self._counter):08d}.dcm"
        with path.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        if not durable:
            with self._lock:
                self._unsynced.append(path)
        return path

    def sync(self) -> None:
        """fsync every file written without ``durable``, and the folder that names them."""
        with self._lock:
            pending, self._unsynced = self._unsynced, []
            if self._fd is None or not pending:
                return
        for path in pending:
            try:
                fsync_path(path)
            except FileNotFoundError:
                continue  # claimed away or removed: nothing of ours to keep
        fsync_path(self.folder)

    def new_path(self) -> Path:
        """A fresh file name in the spool (for writers that stream themselves)."""
        with self._lock:
            self._open()
            return self.folder / f"{next(self._counter):08d}.dcm"

    def remove(self) -> None:
        """Delete the session folder and release its lock."""
        with self._lock:
            self._unsynced = []
            if self._fd is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
                os.close(self._fd)
                self._fd = None

    def release(self) -> None:
        """Keep the files (fsynced) but give up the lock: the folder becomes one to recover later."""
        self.sync()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def abandoned_spools(inbox: Path) -> list[Path]:
    """Session folders whose ingest is gone (their lock can be taken)."""
    found = []
    for folder in sorted(inbox.glob("session-*")):
        lock = folder / LOCK_NAME
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.close(fd)  # closing releases the lock; the folder is claimed by renaming it below
        found.append(folder)
    return found
