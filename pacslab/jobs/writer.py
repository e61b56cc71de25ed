"""The job's one writer: a thread that owns every result file of the job and counts progress."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pacslab.jobs.progress import JobProgress, JobStatus, ProgressTracker, SliceFailure
from pacslab.jobs.spool import SpooledOutput
from pacslab.jobs.tasks import BatchResult
from pacslab.processing import Processor
from pacslab.store.results import ResultLock, ResultWriter

__all__ = ["ResultSink", "SeriesTarget"]

log = logging.getLogger("pacslab.jobs")
# Progress events are sent at most this often, and always at the end.
EVENT_INTERVAL_S = 0.1


@dataclass
class SeriesTarget:
    """One series of a job and its result file (opened lazily when the first slice succeeds)."""

    series_uid: str
    n_slices: int
    sop_instance_uids: tuple[str, ...]
    path: Path
    provenance: dict[str, Any]
    lock: ResultLock
    writer: ResultWriter | None = None


def _layout_of(kind: str, value: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    if kind == "measurements":
        return (), np.dtype([(name, "f8") for name in value])
    array = np.asarray(value)
    dtype = np.dtype(np.uint8) if array.dtype == np.bool_ else array.dtype
    return tuple(array.shape), dtype


class ResultSink:
    """Consumes :class:`BatchResult` objects on one thread and writes them to the result files.

    Parameters
    ----------
    targets
        The job's series by UID.
    processor
        Gives the output kind.
    tracker
        Counts done and failed slices.
    listeners
        Called with each :class:`JobProgress` (from the writer thread).
    """

    def __init__(
        self,
        targets: Mapping[str, SeriesTarget],
        processor: Processor,
        tracker: ProgressTracker,
        listeners: list[Callable[[JobProgress], None]],
        max_queued: int = 64,
    ) -> None:
        self.targets = targets
        self.processor = processor
        self.tracker = tracker
        self.listeners = listeners
        self.failures: dict[tuple[str, int], SliceFailure] = {}
        self.duplicates = 0
        self.error: BaseException | None = None
        self._pending_failures: dict[str, list[tuple[int, str]]] = {}
        self._queue: queue.Queue[BatchResult | None] = queue.Queue(maxsize=max_queued)
        self._last_event = -float("inf")
        self._thread = threading.Thread(target=self._run, name="pacslab-result-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, result: BatchResult) -> None:
        """Hand a batch to the writer (blocks while the writer is behind, which slows submission)."""
        while self._thread.is_alive():
            try:
                self._queue.put(result, timeout=0.5)
                return
            except queue.Full:
                continue
        if self.error is not None:
            raise self.error

    def finish(self, status: JobStatus, timeout: float | None = None) -> None:
        """Write what is queued, close every file with ``status``, stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        for target in self.targets.values():
            if target.writer is not None:
                target.writer.close(status)
            target.lock.close()

    def emit(self, status: JobStatus = "running", finished: bool = False, force: bool = False) -> JobProgress:
        """Send the current progress to the listeners (throttled unless ``force``)."""
        progress = self.tracker.snapshot(status=status, finished=finished)
        now = time.monotonic()
        if force or finished or now - self._last_event >= EVENT_INTERVAL_S:
            self._last_event = now
            for listener in list(self.listeners):
                try:
                    listener(progress)
                except Exception:  # a broken progress display must not stop the job
                    log.exception("progress listener %r failed; it is removed", listener)
                    self.listeners.remove(listener)
        return progress

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                self._write(item)
        except BaseException as exc:  # disk full, file removed...: the driver stops the job
            self.error = exc
            log.exception("the result writer stopped")

    def _open(self, target: SeriesTarget, value: Any) -> ResultWriter:
        shape, dtype = _layout_of(self.processor.output, value)
        writer = ResultWriter(
            target.path,
            self.processor.output,
            target.n_slices,
            shape,
            dtype,
            {**target.provenance, "sop_instance_uids": target.sop_instance_uids},
            lock=target.lock,
        )
        target.writer = writer
        for index, error in self._pending_failures.pop(target.series_uid, []):
            writer.write_failure(index, error)
        return writer

    def _conforming(self, writer: ResultWriter, index: int, value: Any) -> str:
        """Why ``value`` does not fit the file made from the first slice ('' when it does)."""
        layout = writer.layout
        if layout.kind == "measurements":
            names = tuple(layout.dtype.names or ())
            if tuple(value) != names:
                return f"slice {index} returned measurements {list(value)}, the first slice {list(names)}"
            return ""
        shape = np.shape(value)
        if tuple(shape) != layout.shape:
            return f"slice {index} returned shape {shape}, the first slice returned {layout.shape}"
        return ""

    def _write(self, result: BatchResult) -> None:
        spooled = [value for _, value in result.outputs if isinstance(value, SpooledOutput)]
        try:
            self._write_outputs(result)
        finally:
            for output in spooled:
                output.discard()

    def _write_outputs(self, result: BatchResult) -> None:
        target = self.targets[result.series_uid]
        failures = list(result.failures)
        good: list[tuple[int, Any]] = []
        for index, output in result.outputs:
            try:
                value = output.load() if isinstance(output, SpooledOutput) else output
            except OSError as exc:
                failures.append((index, f"the worker's output file is unreadable ({exc}); run the job again"))
                continue
            if target.writer is None:
                self._open(target, value)
            assert target.writer is not None
            problem = self._conforming(target.writer, index, value)
            if problem:
                failures.append((index, problem))
            else:
                good.append((index, value))
        written = target.writer.write_many(good) if target.writer is not None and good else 0
        self.duplicates += len(good) - written
        for index, _ in good:
            self.failures.pop((target.series_uid, index), None)
        for index, error in failures:
            if target.writer is not None:
                if target.writer.done_mask()[index]:
                    continue
                target.writer.write_failure(index, error)
            else:
                self._pending_failures.setdefault(target.series_uid, []).append((index, error))
            uid = target.sop_instance_uids[index] if index < len(target.sop_instance_uids) else ""
            self.failures[(target.series_uid, index)] = SliceFailure(target.series_uid, index, uid, error)
        self.tracker.add(written, len(failures), result.worker)
        self.emit()

    def failure_list(self) -> Sequence[SliceFailure]:
        return sorted(self.failures.values(), key=lambda f: (f.series_uid, f.index))
