"""Uploads, retrieves, jobs and exports, running and finished: counts, sizes, durations and errors.

The other widgets record their work in a shared :class:`TransferLog`; a
:class:`TransferMonitor` shows it.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import ipywidgets as w
import traitlets

from widgets.view import View, escape

__all__ = ["Transfer", "TransferKind", "TransferLog", "TransferMonitor"]

TransferKind = Literal["upload", "retrieve", "job", "export"]
TransferState = Literal["running", "done", "failed", "cancelled"]
_ids = itertools.count(1)


@dataclass
class Transfer:
    """One upload, retrieve, job or export as the monitor shows it."""

    kind: TransferKind
    name: str
    total: int | None = None
    done: int = 0
    failed: int = 0
    bytes: int = 0
    state: TransferState = "running"
    error: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    transfer_id: int = field(default_factory=lambda: next(_ids))

    @property
    def duration_s(self) -> float:
        return (self.finished or time.time()) - self.started


class TransferLog(traitlets.HasTraits):
    """Every transfer of a session, newest last; ``version`` changes on each update."""

    version = traitlets.Int(0)

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._items: list[Transfer] = []
        self._version = 0

    @property
    def transfers(self) -> list[Transfer]:
        with self._lock:
            return list(self._items)

    def _bump(self) -> None:
        # Observers read the log, so the trait is set outside the lock.
        with self._lock:
            self._version += 1
            version = self._version
        self.version = max(self.version, version)

    def start(self, kind: TransferKind, name: str, total: int | None = None) -> Transfer:
        """Record a transfer that has just begun."""
        item = Transfer(kind, name, total)
        with self._lock:
            self._items.append(item)
        self._bump()
        return item

    def update(self, item: Transfer, **changes: Any) -> None:
        """Change counts of a running transfer (``done``, ``failed``, ``bytes``, ``total``)."""
        for key, value in changes.items():
            setattr(item, key, value)
        self._bump()

    def finish(self, item: Transfer, state: TransferState = "done", error: str = "") -> None:
        """Mark a transfer ended."""
        item.state = state
        item.error = error
        item.finished = time.time()
        self._bump()


def _size(n: int) -> str:
    if n <= 0:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return ""


class TransferMonitor(View):
    """A table of the transfers in a :class:`TransferLog`, running ones first.

    Traits
    ------
    running : int
        Transfers still running.
    finished : int
        Transfers ended (done, failed or cancelled).
    failed : int
        Transfers that ended with an error.
    """

    running = traitlets.Int(0)
    finished = traitlets.Int(0)
    failed = traitlets.Int(0)

    def __init__(self, log: TransferLog | None = None, *, min_interval_s: float = 0.5) -> None:
        super().__init__()
        self.log = log if log is not None else TransferLog()
        self.min_interval_s = min_interval_s
        self.table = w.HTML()
        self.summary = w.HTML()
        self._last_draw = 0.0
        self._pending: threading.Timer | None = None
        self._draw_lock = threading.Lock()
        self.log.observe(self._on_log, "version")
        self.widget = w.VBox([self._style, self.summary, self.table, self.error_area])
        self.redraw()

    def _on_log(self, _: object) -> None:
        # Progress events come many per second; redraw at most every min_interval_s, and
        # always once after the last event so the final state shows.
        now = time.monotonic()
        with self._draw_lock:
            if now - self._last_draw >= self.min_interval_s:
                self._last_draw = now
                draw_now = True
            else:
                draw_now = False
                if self._pending is None:
                    delay = self.min_interval_s - (now - self._last_draw)
                    self._pending = threading.Timer(delay, self._deferred)
                    self._pending.daemon = True
                    self._pending.start()
        if draw_now:
            self.redraw()

    def _deferred(self) -> None:
        with self._draw_lock:
            self._pending = None
            self._last_draw = time.monotonic()
        self.redraw()

    def redraw(self) -> None:
        """Draw the table from the log now."""
        items = self.log.transfers
        running = [t for t in items if t.state == "running"]
        ended = [t for t in items if t.state != "running"]
        self.running = len(running)
        self.finished = len(ended)
        self.failed = sum(1 for t in ended if t.state == "failed")
        self.summary.value = escape(
            f"{self.running} running, {self.finished} finished ({self.failed} failed)"
        )
        rows = []
        for t in running + ended[::-1]:
            count = f"{t.done}/{t.total}" if t.total is not None else str(t.done)
            if t.failed:
                count += f" ({t.failed} failed)"
            cells = [
                t.kind,
                t.name,
                t.state,
                count,
                _size(t.bytes),
                f"{t.duration_s:.1f} s",
            ]
            style = ' style="color:#b00020"' if t.state == "failed" else ""
            row = "".join(f"<td>{escape(c)}</td>" for c in cells)
            rows.append(f"<tr{style}>{row}<td>{escape(t.error)}</td></tr>")
        head = "".join(
            f"<th>{h}</th>" for h in ("kind", "what", "state", "count", "size", "duration", "error")
        )
        self.table.value = f'<div class="pacslab-grid"><table><tr>{head}</tr>{"".join(rows)}</table></div>'
