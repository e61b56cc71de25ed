"""Progress events of a job, its final summary, and a text bar for terminals and papermill logs."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

__all__ = [
    "JobProgress",
    "JobStatus",
    "JobSummary",
    "ProgressTracker",
    "SliceFailure",
    "TextProgressBar",
    "format_progress",
]

JobStatus = Literal["queued", "running", "done", "cancelled", "failed"]
# Rate is measured over this many recent seconds, so it follows a cluster that grows or shrinks.
RATE_WINDOW_S = 10.0


@dataclass(frozen=True)
class SliceFailure:
    """A slice that could not be processed, with the end of its traceback."""

    series_uid: str
    index: int
    sop_instance_uid: str
    error: str


@dataclass(frozen=True)
class JobProgress:
    """One progress event.

    ``done`` counts slices written, including those found done when a job resumed;
    ``rate`` is slices per second over the last few seconds; ``eta_s`` is ``None`` until a
    rate is known; ``per_worker`` counts the slices each worker processed in this run.
    """

    job_id: str
    done: int
    failed: int
    total: int
    rate: float = 0.0
    eta_s: float | None = None
    per_worker: Mapping[str, int] = field(default_factory=dict)
    finished: bool = False
    status: JobStatus = "running"

    @property
    def remaining(self) -> int:
        return max(self.total - self.done - self.failed, 0)

    @property
    def fraction(self) -> float:
        return (self.done + self.failed) / self.total if self.total else 1.0


@dataclass(frozen=True)
class JobSummary:
    """How a job ended.

    ``batch_size`` is the median size of the batches planned from measured times (probes of
    2 slices excluded); ``duplicates``
    counts results that arrived for slices already written (dropped, never written twice).
    """

    job_id: str
    status: JobStatus
    total: int
    done: int
    failed: int
    resumed: int
    elapsed_s: float
    batch_size: int
    batches: int
    duplicates: int
    failures: tuple[SliceFailure, ...]
    result_paths: Mapping[str, Path]
    error: str = ""


class ProgressTracker:
    """Counts and rate for one job (thread-safe); :meth:`snapshot` makes a :class:`JobProgress`."""

    def __init__(self, job_id: str, total: int, already_done: int = 0) -> None:
        self.job_id = job_id
        self.total = total
        self.done = already_done
        self.failed = 0
        self.per_worker: dict[str, int] = {}
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def add(self, done: int, failed: int, worker: str | None = None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.done += done
            self.failed += failed
            if worker and done + failed:
                self.per_worker[worker] = self.per_worker.get(worker, 0) + done + failed
            self._events.append((now, done + failed))
            while self._events and now - self._events[0][0] > RATE_WINDOW_S:
                self._events.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._events:
                return 0.0
            since = max(min(now - self._start, RATE_WINDOW_S), 1e-3)
            recent = sum(n for t, n in self._events if now - t <= RATE_WINDOW_S)
            return recent / since

    def snapshot(self, status: JobStatus = "running", finished: bool = False) -> JobProgress:
        rate = self.rate()
        with self._lock:
            remaining = max(self.total - self.done - self.failed, 0)
            eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else None)
            return JobProgress(
                job_id=self.job_id,
                done=self.done,
                failed=self.failed,
                total=self.total,
                rate=rate,
                eta_s=eta,
                per_worker=dict(self.per_worker),
                finished=finished,
                status=status,
            )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_progress(progress: JobProgress, width: int = 30) -> str:
    """One line: ``[#####.....] 50/100 done, 2 failed, 12.5 slices/s, ETA 4s``."""
    filled = round(width * progress.fraction)
    bar = "#" * filled + "." * (width - filled)
    text = f"[{bar}] {progress.done}/{progress.total} done"
    if progress.failed:
        text += f", {progress.failed} failed"
    if progress.finished:
        return f"{text} - {progress.status}"
    return f"{text}, {progress.rate:.1f} slices/s, ETA {_duration(progress.eta_s)}"


class TextProgressBar:
    """A progress callback that draws a text bar.

    On a terminal the bar is redrawn in place; elsewhere (papermill, CI logs) a new line is
    written at most every ``interval`` seconds, and always for the final event.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30, interval: float = 2.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.interval = interval
        self._last = -float("inf")
        self._lock = threading.Lock()

    def __call__(self, progress: JobProgress) -> None:
        line = format_progress(progress, self.width)
        tty = getattr(self.stream, "isatty", lambda: False)()
        now = time.monotonic()
        with self._lock:
            if not progress.finished and not tty and now - self._last < self.interval:
                return
            self._last = now
            if tty:
                self.stream.write("\r" + line + ("\n" if progress.finished else ""))
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
