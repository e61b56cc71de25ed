"""Run a processor over series on Dask: plan batches, submit, stream results to the one writer.

``run_job`` checks everything it can before submitting (processor, parameters, series,
processor present on the workers, result files free), then returns a :class:`Job` whose
driver thread keeps a few batches per worker thread in flight, takes results as they
complete (``distributed.as_completed``) and hands them to the writer thread. Workers on the
client's machine leave large outputs in the job's spool folder (see :mod:`pacslab.jobs.spool`)
and send back only their names.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pacslab.jobs.errors import (
    JobError,
    NoWorkersError,
    ProcessorNotOnWorkersError,
    SchedulerLostError,
    StoreNotReadableError,
)
from pacslab.jobs.planning import (
    MIN_BATCH_SECONDS,
    TARGET_BATCH_SECONDS,
    job_id_for,
    needed_indices,
    plan_batch_size,
)
from pacslab.jobs.progress import JobProgress, JobStatus, JobSummary, ProgressTracker, TextProgressBar
from pacslab.jobs.spool import create_spool, remove_spool
from pacslab.jobs.tasks import (
    BUDGETED_READ_SLICES,
    BatchResult,
    BatchSpec,
    SeriesInput,
    mark_cancelled,
    process_batch,
)
from pacslab.jobs.writer import ResultSink, SeriesTarget
from pacslab.processing import Processor, registry
from pacslab.store.results import ResultLock, ResultWriter

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["DEFAULT_NO_WORKERS_TIMEOUT_S", "Job", "run_job"]

log = logging.getLogger("pacslab.jobs")

# A job with no workers for this long stops with NoWorkersError instead of waiting forever.
DEFAULT_NO_WORKERS_TIMEOUT_S = 60.0
# How often the driver looks at the cluster (workers, threads, connection).
WATCH_INTERVAL_S = 1.0
# How long the driver waits for a result before it looks at its flags again.
POLL_S = 0.05
# Below this many shortest batches of work left per worker thread, batches go only to free threads.
TAIL_BATCHES = 1
# How long cancel() waits for the workers to take the cancel mark.
CANCEL_TIMEOUT_S = 10.0


class _Store(Protocol):
    @property
    def jobs_dir(self) -> Path: ...

    def series(self, series_uid: str) -> Any: ...

    def series_path(self, series_uid: str) -> Path: ...

    def read_slice(
        self, series_uid: str, index: int, channel: int = 0, rescaled: bool = False
    ) -> np.ndarray: ...

    def record_job(self, job: Any) -> None: ...


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _worker_view(name: str, paths: list[str]) -> tuple[str | None, list[bool]]:
    """Runs on each worker: the version of processor ``name`` it has (or None), and which
    of ``paths`` (the series files) it can see."""
    from pacslab.processing import registry as worker_registry

    version = worker_registry.get(name).version if name in worker_registry else None
    return version, [Path(path).exists() for path in paths]


def _ask_workers(client: Client, proc: Processor, paths: list[str]) -> dict[str, list[bool]]:
    """Check every worker has ``proc``; return, by worker, which of ``paths`` it sees.

    One call to the workers for both: each call is a round trip before the first batch starts.
    """
    try:
        found: dict[str, tuple[str | None, list[bool]]] = client.run(_worker_view, proc.name, paths)
    except ModuleNotFoundError as exc:
        raise ProcessorNotOnWorkersError(
            f"the workers cannot import pacslab ({exc}); install pacslab in the workers' environment"
        ) from exc
    wrong = {w: v for w, (v, _seen) in found.items() if v != proc.version}
    if wrong:
        listing = ", ".join(f"{w} has {v or 'nothing'}" for w, v in sorted(wrong.items()))
        raise ProcessorNotOnWorkersError(
            f"processor {proc.name!r} version {proc.version} is missing on workers ({listing}); "
            "register it with dask_cluster.register_processors(client) (dask_cluster.connect does this)"
        )
    return {w: seen for w, (_v, seen) in found.items()}


@dataclass(frozen=True)
class _Flight:
    """A submitted batch; ``isolated`` when it ran with nothing else of the job beside it."""

    spec: BatchSpec
    isolated: bool = False


@dataclass
class _SeriesWork:
    """One series of the job: what the workers need to read it, and what is left to do."""

    info: Any
    source: SeriesInput
    pending: deque[int]
    ship: bool = False
    bytes_per_slice: int = 0


class Job:
    """A running (or finished) processing job; made by :func:`run_job`.

    Attributes
    ----------
    job_id
        Stable id: the same processor, version, parameters and series give the same id,
        and running it again resumes from the result files.
    result_paths
        Result file of each series (it exists once a first slice has been written).
    """

    def __init__(
        self,
        *,
        client: Client,
        store: _Store,
        processor: Processor,
        params: dict[str, Any],
        job_id: str,
        work: list[_SeriesWork],
        targets: dict[str, SeriesTarget],
        tracker: ProgressTracker,
        listeners: list[Callable[[JobProgress], None]],
        retries: int,
        batch_size: int | None,
        no_workers_timeout: float,
        created: str,
    ) -> None:
        self.job_id = job_id
        self.client = client
        self.store = store
        self.processor = processor
        self.params = params
        self.result_paths: dict[str, Path] = {uid: t.path for uid, t in targets.items()}
        self._work = work
        self._targets = targets
        self._tracker = tracker
        self._resumed = tracker.done
        self._retries = retries
        self._fixed_batch_size = batch_size
        self._no_workers_timeout = no_workers_timeout
        self._created = created
        self._sink = ResultSink(targets, processor, tracker, listeners)
        self._lock = threading.Lock()
        self._cancel_requested = threading.Event()
        self._wake = threading.Event()
        # The driver sleeps on this (as_completed's own condition) until a result or cancel().
        self._arrivals: threading.Condition | None = None
        self._finished = threading.Event()
        self._status: JobStatus = "queued"
        self._error: JobError | None = None
        self._summary: JobSummary | None = None
        self._in_flight: dict[Future, _Flight] = {}
        # Slices whose worker died while they were assigned to it. Dask blames every task the
        # dead worker held, so each suspect runs alone to find the one that really kills it.
        self._suspects: deque[BatchSpec] = deque()
        # Batches to send before new ones: (spec, ship its pixels from the client).
        self._priority: deque[tuple[BatchSpec, bool]] = deque()
        self._cancel_mark = f"pacslab-cancel-{job_id}-{uuid.uuid4().hex[:8]}"
        self._spool = create_spool()
        self._seconds_per_slice: float | None = None
        self._threads = max(1, sum(client.nthreads().values()))
        self._planned_sizes: list[int] = [batch_size] if batch_size else []
        self._batches = 0
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._drive, name=f"pacslab-job-{job_id}", daemon=True)

    # -- public ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        p = self.progress
        return f"<Job {self.job_id}: {p.status}, {p.done}/{p.total} done, {p.failed} failed>"

    @property
    def status(self) -> JobStatus:
        return self._status

    @property
    def progress(self) -> JobProgress:
        """The latest counts, rate and ETA."""
        return self._tracker.snapshot(status=self._status, finished=self._finished.is_set())

    def add_listener(self, listener: Callable[[JobProgress], None]) -> None:
        """Also send progress events to ``listener`` (e.g. a widget); it gets the current state now."""
        self._sink.listeners.append(listener)
        listener(self.progress)

    def done(self) -> bool:
        """True once the job has ended (done, cancelled or failed)."""
        return self._finished.is_set()

    def cancel(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop the job: once this returns no further batch starts; written slices stay.

        Running batches are abandoned; the result files and the catalog record the job as
        ``cancelled``. With ``wait`` this returns after the files are closed.
        """
        if self._finished.is_set():
            return
        with self._lock:
            self._cancel_requested.set()
            flights = list(self._in_flight)
        try:
            # Workers look at this mark before each slice, so a batch already handed to a
            # worker but not started yet does not start either.
            self._mark_cancelled_on_workers()
            self.client.cancel(flights)
        except Exception as exc:  # the scheduler may be gone; local state still stops the job
            log.warning("could not tell the scheduler to cancel job %s: %s", self.job_id, exc)
        self._wake.set()
        arrivals = self._arrivals
        if arrivals is not None:
            with arrivals:
                arrivals.notify_all()
        if wait:
            self._finished.wait(timeout)

    def _mark_cancelled_on_workers(self) -> None:
        """Set the job's cancel mark in every worker process, waiting at most ``CANCEL_TIMEOUT_S``."""
        failure: list[BaseException] = []

        def mark() -> None:
            try:
                self.client.run(mark_cancelled, self._cancel_mark, on_error="ignore")
            except BaseException as exc:
                failure.append(exc)

        # A worker stuck in a processor that holds the GIL cannot answer; cancel must still return.
        thread = threading.Thread(target=mark, name=f"pacslab-cancel-{self.job_id}", daemon=True)
        thread.start()
        thread.join(CANCEL_TIMEOUT_S)
        if thread.is_alive():
            raise TimeoutError(f"workers did not take the cancel within {CANCEL_TIMEOUT_S:.0f} s")
        if failure:
            raise failure[0]

    def wait(self, timeout: float | None = None) -> JobSummary:
        """Block until the job ends and return its summary.

        Raises
        ------
        TimeoutError
            The job did not end within ``timeout`` seconds (it keeps running).
        JobError
            The job stopped early (scheduler lost, no workers, writing failed); its
            ``summary`` attribute has the counts.
        """
        if not self._finished.wait(timeout):
            raise TimeoutError(
                f"job {self.job_id} still running after {timeout} s; call wait() again or cancel()"
            )
        if self._error is not None:
            raise self._error
        assert self._summary is not None
        return self._summary

    @property
    def summary(self) -> JobSummary | None:
        """The summary once the job has ended, else ``None``."""
        return self._summary

    # -- driver ----------------------------------------------------------------------------

    def _start_thread(self) -> None:
        self._thread.start()

    def _remaining(self) -> int:
        return sum(len(w.pending) for w in self._work)

    def _next_spec(self) -> tuple[BatchSpec, bool] | None:
        if self._priority:
            return self._priority.popleft()
        for work in self._work:
            if not work.pending:
                continue
            if self._fixed_batch_size:
                size = self._fixed_batch_size
            else:
                size = plan_batch_size(
                    self._seconds_per_slice, self._remaining(), self._threads, work.bytes_per_slice
                )
                if self._seconds_per_slice is not None:
                    self._planned_sizes.append(size)
            # Until a batch has timed the processor, batches stop at the target duration and
            # hand back the slices they did not start: no probe tasks of a few slices, which
            # cost the scheduler as much as full ones, and no long first batch of a slow one.
            untimed = self._seconds_per_slice is None and not self._fixed_batch_size
            if untimed and work.ship:
                # Pixels shipped from here are read and sent whole, used or not.
                size = min(size, BUDGETED_READ_SLICES)
            indices = tuple(work.pending.popleft() for _ in range(min(size, len(work.pending))))
            return self._spec(work, indices, TARGET_BATCH_SECONDS if untimed else 0.0), work.ship
        return None

    def _spec(self, work: _SeriesWork, indices: tuple[int, ...], seconds_budget: float = 0.0) -> BatchSpec:
        uids = work.info.sop_instance_uids
        return BatchSpec(
            series=work.source,
            indices=indices,
            sop_instance_uids=tuple(uids[i] for i in indices),
            processor=self.processor.name,
            version=self.processor.version,
            params=self.params,
            retries=self._retries,
            cancel_mark=self._cancel_mark,
            spool=str(self._spool),
            seconds_budget=seconds_budget,
        )

    def _shipped_pixels(self, spec: BatchSpec) -> Future:
        """Read the batch's slices on the client and scatter them for a worker that cannot see the store."""
        nb = self.processor.neighbours if self.processor.input == "neighbours" else 0
        wanted = needed_indices(spec.indices, nb, spec.series.n_slices)
        uid = spec.series.series_uid
        try:
            pixels = {
                index: np.stack(
                    [
                        self.store.read_slice(uid, index, channel=c, rescaled=True)
                        for c in spec.series.channels
                    ]
                )
                for index in wanted
            }
        except Exception as exc:
            raise StoreNotReadableError(f"cannot read series {uid} to send it to the workers: {exc}") from exc
        future: Future = self.client.scatter(pixels, hash=False)
        return future

    def _in_tail(self) -> bool:
        """True when what is left makes fewer than ``TAIL_BATCHES`` shortest batches per thread."""
        left = self._remaining()
        if self._fixed_batch_size:
            return left < TAIL_BATCHES * self._threads * self._fixed_batch_size
        if self._seconds_per_slice is None:
            return False
        return left * self._seconds_per_slice < TAIL_BATCHES * self._threads * MIN_BATCH_SECONDS

    def _submit(self, ac: Any) -> None:
        # Two batches per worker thread keep each busy while the next result travels: with
        # one, a worker waits a round trip for its next batch, 60 ms and more on a busy machine.
        # But Dask hands a batch to a worker when it is submitted, so a last batch can wait
        # behind another on one worker while the other worker has nothing left: once the
        # remaining slices make only a few batches, one batch per thread, sent as one frees.
        window = max(2, 2 * self._threads) if not self._in_tail() else max(1, self._threads)
        while len(self._in_flight) < window:
            with self._lock:
                if self._cancel_requested.is_set():
                    return
                if self._suspects:
                    # Isolation: wait for the cluster to hold nothing else of this job.
                    if self._in_flight:
                        return
                    spec = self._suspects.popleft()
                    planned: tuple[BatchSpec, bool] | None = (spec, self._work_of(spec).ship)
                    isolated = True
                else:
                    planned = self._next_spec()
                    isolated = False
                if planned is None:
                    return
                spec, ship = planned
                args: tuple[Any, ...] = (spec, self._shipped_pixels(spec)) if ship else (spec,)
                future = self.client.submit(
                    process_batch,
                    *args,
                    key=f"{self.processor.name}-batch-{uuid.uuid4().hex}",
                    pure=False,
                )
                self._in_flight[future] = _Flight(spec, isolated)
                self._batches += 1
            ac.add(future)
            if isolated:
                return

    def _handle(self, future: Future, outcome: Any) -> None:
        with self._lock:
            flight = self._in_flight.pop(future, None)
        if flight is None:
            return
        spec = flight.spec
        if future.status == "finished":
            result: BatchResult = outcome
            if result.cancelled:
                return
            if result.needs_pixels:
                self._priority.appendleft((spec, True))
                return
            if result.unprocessed:
                # Back to the front of the queue, in order, for batches planned from the timing.
                self._work_of(spec).pending.extendleft(reversed(result.unprocessed))
            if result.processed:
                # The smaller of wall and CPU time: on a machine busy with other work the wall
                # time grows, and planning from it would make more, smaller batches, each of
                # which costs the scheduler the same. A processor that waits (I/O) or uses
                # several threads is timed by the wall clock.
                busy = min(result.seconds, result.cpu_seconds) if result.cpu_seconds > 0 else result.seconds
                per_slice = busy / result.processed
                old = self._seconds_per_slice
                # Follow faster batches at once and slower ones slowly: a worker's first batch
                # pays for imports, and a too-small estimate only makes batches longer.
                if old is None or per_slice < old:
                    self._seconds_per_slice = per_slice
                else:
                    self._seconds_per_slice = 0.8 * old + 0.2 * per_slice
            self._sink.put(result)
            return
        if future.status == "error":
            from distributed.scheduler import KilledWorker

            _, exc, tb = outcome
            if isinstance(exc, KilledWorker):
                if not flight.isolated:
                    for index, uid in zip(spec.indices, spec.sop_instance_uids, strict=True):
                        single = dataclasses.replace(spec, indices=(index,), sop_instance_uids=(uid,))
                        self._suspects.append(single)
                    return
                message = (
                    "the worker process died each time it processed this slice, also alone on the "
                    f"cluster ({exc}); the processor crashes on it (memory, a segfault, os._exit)"
                )
            else:
                message = "the batch failed on the worker:\n" + "".join(
                    traceback.format_exception(type(exc), exc, tb)
                )
            self._sink.put(
                BatchResult(
                    series_uid=spec.series.series_uid,
                    indices=spec.indices,
                    failures=[(i, message) for i in spec.indices],
                )
            )
            return
        # Cancelled although we did not cancel: the scheduler dropped it.
        if self._cancel_requested.is_set():
            return
        if self.client.status != "running":
            raise SchedulerLostError(
                f"lost the connection to the Dask scheduler ({self.client.scheduler.address}); "
                "written slices are kept: restart the scheduler and run the same job again to resume"
            )
        self._priority.appendleft((spec, self._work_of(spec).ship))

    def _work_of(self, spec: BatchSpec) -> _SeriesWork:
        return next(w for w in self._work if w.source.series_uid == spec.series.series_uid)

    def _watch(self, state: dict[str, float | None]) -> None:
        if self.client.status != "running":
            raise SchedulerLostError(
                f"lost the connection to the Dask scheduler ({self.client.scheduler.address}); "
                "written slices are kept: restart the scheduler and run the same job again to resume"
            )
        threads = sum(self.client.nthreads().values())
        now = time.monotonic()
        if threads == 0:
            since = state.get("no_workers_since")
            if since is None:
                state["no_workers_since"] = now
            elif now - since > self._no_workers_timeout:
                raise NoWorkersError(
                    f"the Dask cluster has had no workers for {self._no_workers_timeout:.0f} s; "
                    "start workers (dask worker <scheduler address>) and run the same job again to resume"
                )
        else:
            state["no_workers_since"] = None
            self._threads = threads

    def _drive(self) -> None:
        from distributed import as_completed

        status: JobStatus = "running"
        self._status = "running"
        self._sink.start()
        self._sink.emit(force=True)
        watch: dict[str, float | None] = {"no_workers_since": None}
        last_watch = time.monotonic()
        ac = as_completed([], loop=self.client.loop, with_results=True, raise_errors=False)
        self._arrivals = ac.thread_condition
        try:
            # The catalog learns the job runs once the first batches are on their way.
            self._submit(ac)
            self._record("running")
            while True:
                if self._sink.error is not None:
                    raise JobError(f"writing results failed: {self._sink.error!r}") from self._sink.error
                if self._cancel_requested.is_set():
                    status = "cancelled"
                    break
                self._submit(ac)
                if not (self._in_flight or self._priority or self._suspects or self._remaining()):
                    break
                if ac.has_ready():
                    for future, outcome in ac.next_batch(block=False):
                        self._handle(future, outcome)
                    continue
                # Woken by the next result at once: a worker's next batch is planned from it,
                # and the job ends as soon as its last result is in.
                with ac.thread_condition:
                    if not ac.has_ready() and not self._wake.is_set():
                        ac.thread_condition.wait(POLL_S)
                self._wake.clear()
                if time.monotonic() - last_watch > WATCH_INTERVAL_S:
                    last_watch = time.monotonic()
                    self._watch(watch)
        except JobError as exc:
            status = "failed"
            self._error = exc
        except Exception as exc:
            status = "failed"
            self._error = JobError(f"job {self.job_id} stopped: {exc!r}")
            self._error.__cause__ = exc
        finally:
            self._finish(status)

    def _finish(self, status: JobStatus) -> None:
        with self._lock:
            abandoned = list(self._in_flight)
            self._in_flight.clear()
        if abandoned and self.client.status == "running":
            try:
                self.client.cancel(abandoned)
            except Exception as exc:
                log.warning("could not cancel the remaining batches of job %s: %s", self.job_id, exc)
        tracker = self._tracker
        if status == "running":
            status = "done"
        if status == "done" and tracker.done == 0 and tracker.failed > 0:
            status = "failed"
        try:
            self._sink.finish(status)
        except Exception as exc:
            if self._error is None:
                self._error = JobError(f"closing the result files failed: {exc!r}")
            status = "failed"
        # Outputs of abandoned or cancelled batches are still there; the writer is done with the rest.
        remove_spool(self._spool)
        self._status = status
        self._summary = JobSummary(
            job_id=self.job_id,
            status=status,
            total=tracker.total,
            done=tracker.done,
            failed=tracker.failed,
            resumed=self._resumed,
            elapsed_s=time.monotonic() - self._start,
            batch_size=int(np.median(self._planned_sizes)) if self._planned_sizes else 0,
            batches=self._batches,
            duplicates=self._sink.duplicates,
            failures=tuple(self._sink.failure_list()),
            result_paths=dict(self.result_paths),
            error=str(self._error) if self._error else "",
        )
        if self._error is not None:
            self._error.summary = self._summary
        self._record(status)
        self._finished.set()
        self._sink.emit(status=status, finished=True, force=True)

    def _record(self, status: JobStatus) -> None:
        """Write the job's state to the store's catalog, one record per series."""
        record_job = getattr(self.store, "record_job", None)
        if record_job is None:
            return
        try:
            from pacslab.store import JobRecord
        except ImportError:
            return
        finished = _now() if status in ("done", "cancelled", "failed") else ""
        for work in self._work:
            uid = work.info.series_uid
            target = self._targets[uid]
            writer = target.writer
            done = int(writer.done_mask().sum()) if writer is not None else 0
            failed = sum(1 for (s, _i) in self._sink.failures if s == uid)
            try:
                record_job(
                    JobRecord(
                        job_id=_record_id(self.job_id, uid, len(self._work)),
                        processor=self.processor.name,
                        version=self.processor.version,
                        params_json=json.dumps(self.params, sort_keys=True),
                        series_uid=uid,
                        result_path=str(target.path),
                        status=status,
                        total=work.info.n_slices,
                        done=done,
                        failed=failed,
                        created=self._created,
                        finished=finished,
                    )
                )
            except Exception as exc:  # the catalog is a record; the result files are the truth
                log.warning("could not record job %s in the catalog: %s", self.job_id, exc)


def _record_id(job_id: str, series_uid: str, n_series: int) -> str:
    return job_id if n_series == 1 else f"{job_id}/{series_uid}"


def run_job(
    client: Client,
    store: _Store,
    processor_name: str,
    params: Mapping[str, Any] | None = None,
    series_uids: Sequence[str] = (),
    on_progress: Callable[[JobProgress], None] | None = None,
    retries: int = 2,
    batch_size: int | None = None,
    *,
    channel: int = 0,
    no_workers_timeout: float = DEFAULT_NO_WORKERS_TIMEOUT_S,
    progress_bar: bool = False,
) -> Job:
    """Start a processor over every slice of ``series_uids`` on the Dask cluster of ``client``.

    Everything that can be checked is checked before any task is submitted. Running the
    same processor, version, parameters and series again resumes: slices already done in
    the result files are skipped.

    Parameters
    ----------
    client
        A ``distributed.Client`` (see ``dask_cluster.connect``).
    store
        The :class:`~pacslab.store.SliceStore` holding the series; results go to its
        ``jobs_dir``.
    processor_name
        A name in :data:`pacslab.processing.registry`.
    params
        Parameter values; missing ones take their defaults.
    series_uids
        Series Instance UIDs in the store.
    on_progress
        Called with a :class:`JobProgress` after each written batch (from the writer thread).
    retries
        Extra attempts for a slice whose processor raised, before it is recorded as failed.
    batch_size
        Slices per task; ``None`` plans it from the measured time per slice.
    channel
        Channel read by processors whose input is one slice.
    no_workers_timeout
        Seconds without any worker after which the job stops with :class:`NoWorkersError`.
    progress_bar
        Also draw a :class:`TextProgressBar` on stderr (terminals, papermill logs).

    Returns
    -------
    Job
        Already running; call :meth:`Job.wait` for its summary.

    Raises
    ------
    UnknownProcessorError, ParameterError
        Before anything runs.
    ProcessorNotOnWorkersError
        A worker lacks the processor.
    ResultBusyError
        The same job is already running.
    """
    proc = registry.get(processor_name)
    checked = proc.validate(params)
    if not series_uids:
        raise ValueError("run_job needs at least one series UID")
    if len(set(series_uids)) != len(series_uids):
        raise ValueError("a series UID is listed twice in series_uids")
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    infos = [store.series(uid) for uid in series_uids]
    paths = [str(store.series_path(info.series_uid)) for info in infos]
    seen_by = _ask_workers(client, proc, paths)
    job_id = job_id_for(proc.name, proc.version, checked, list(series_uids))
    job_dir = Path(store.jobs_dir) / job_id
    created = _now()
    targets: dict[str, SeriesTarget] = {}
    work: list[_SeriesWork] = []
    already_done = 0
    try:
        for k, info in enumerate(infos):
            uid = info.series_uid
            path = job_dir / f"{uid}.h5"
            lock = ResultLock(path)
            provenance = {
                "job_id": job_id,
                "processor": proc.name,
                "processor_version": proc.version,
                "params": checked,
                "series_uid": uid,
            }
            target = SeriesTarget(uid, info.n_slices, tuple(info.sop_instance_uids), path, provenance, lock)
            targets[uid] = target
            if path.exists():
                target.writer = ResultWriter.open_existing(
                    path, {**provenance, "sop_instance_uids": target.sop_instance_uids}, lock=lock
                )
                done = target.writer.done_mask()
            else:
                done = np.zeros(info.n_slices, dtype=bool)
            already_done += int(done.sum())
            # Ship pixels only when no worker sees the store (workers elsewhere).
            ship = bool(seen_by) and not any(seen[k] for seen in seen_by.values())
            work.append(_series_work(info, paths[k], proc, channel, done, ship))
    except BaseException:
        for target in targets.values():
            if target.writer is not None:
                target.writer.close("failed")
            target.lock.close()
        raise
    listeners: list[Callable[[JobProgress], None]] = []
    if on_progress is not None:
        listeners.append(on_progress)
    if progress_bar:
        listeners.append(TextProgressBar())
    total = sum(i.n_slices for i in infos)
    job = Job(
        client=client,
        store=store,
        processor=proc,
        params=checked,
        job_id=job_id,
        work=work,
        targets=targets,
        tracker=ProgressTracker(job_id, total, already_done),
        listeners=listeners,
        retries=retries,
        batch_size=batch_size,
        no_workers_timeout=no_workers_timeout,
        created=created,
    )
    job._start_thread()
    return job


def _series_work(
    info: Any, path: str, proc: Processor, channel: int, done: np.ndarray, ship: bool
) -> _SeriesWork:
    n_channels = max(1, len(getattr(info, "channels", ("",)) or ("",)))
    channels = tuple(range(n_channels)) if proc.input == "channels" else (channel,)
    if proc.input != "channels" and not 0 <= channel < n_channels:
        raise ValueError(
            f"series {info.series_uid} has {n_channels} channel(s); channel {channel} does not exist"
        )
    source = SeriesInput(
        series_uid=info.series_uid,
        path=path,
        n_slices=info.n_slices,
        channels=channels,
        pixel_spacing=(float(info.pixel_spacing[0]), float(info.pixel_spacing[1])),
    )
    pending = deque(int(i) for i in np.flatnonzero(~done))
    bytes_per_slice = (
        4
        * info.rows
        * info.cols
        * (len(channels) + 1 + 2 * (proc.neighbours if proc.input == "neighbours" else 0))
    )
    return _SeriesWork(info=info, source=source, pending=pending, ship=ship, bytes_per_slice=bytes_per_slice)
