"""What runs on a Dask worker: read a batch of slices, run the processor on each, return results.

A batch never raises for a bad slice: each slice is tried ``1 + retries`` times and then
reported with its traceback, so one bad slice cannot fail the job. A worker process that
dies (a poison slice) is Dask's business: the client splits that batch into single slices.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pacslab.jobs.planning import needed_indices
from pacslab.jobs.spool import spool_output
from pacslab.processing import ProcessorError, SliceContext, registry

__all__ = ["BatchResult", "BatchSpec", "SeriesInput", "mark_cancelled", "process_batch"]

# Cancel marks of jobs, set in each worker process by the client when a job is cancelled.
# Looking here before each slice costs nothing; asking the scheduler cost a round trip per batch
# (a tenth of a 512x512 job's time on a busy machine).
_cancelled: set[str] = set()


@dataclass(frozen=True)
class SeriesInput:
    """Where and how to read one series: the store file and the rescale of each channel read."""

    series_uid: str
    path: str
    n_slices: int
    channels: tuple[int, ...] = (0,)
    pixel_spacing: tuple[float, float] = (1.0, 1.0)


@dataclass(frozen=True)
class BatchSpec:
    """One Dask task: some slices of one series and the processor to run on them."""

    series: SeriesInput
    indices: tuple[int, ...]
    sop_instance_uids: tuple[str, ...]
    processor: str
    version: str
    params: Mapping[str, Any]
    retries: int = 2
    cancel_mark: str = ""
    spool: str = ""
    # Stop starting slices after this many seconds (at least one slice runs); 0: no limit.
    # Batches planned before the processor has been timed carry one.
    seconds_budget: float = 0.0


@dataclass
class BatchResult:
    """What a batch sends back to the writer."""

    series_uid: str
    indices: tuple[int, ...]
    worker: str = ""
    outputs: list[tuple[int, Any]] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    cancelled: bool = False
    needs_pixels: bool = False
    # Slices left unstarted when the batch's time budget ran out; the client plans them again.
    unprocessed: tuple[int, ...] = ()

    @property
    def processed(self) -> int:
        """Slices of the batch that ran (done or failed)."""
        return len(self.indices) - len(self.unprocessed)


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # called outside a worker (a direct call in a test or a notebook)
        return "local"


def mark_cancelled(cancel_mark: str) -> None:
    """Run on every worker by a cancelled job: its batches not yet started do not start."""
    _cancelled.add(cancel_mark)


def _cancel_requested(name: str) -> bool:
    return bool(name) and name in _cancelled


Pixels = Mapping[int, np.ndarray]

# Slices read at a time by a batch with a time budget.
BUDGETED_READ_SLICES = 8


def _read(spec: BatchSpec, wanted: list[int], pixels: Pixels | None) -> np.ndarray:
    """Slices ``wanted`` as (n, channels, rows, cols) float32 in physical units (HU for CT)."""
    if pixels is not None:
        return np.stack([np.asarray(pixels[i], dtype=np.float32) for i in wanted])
    from pacslab.store.series_file import SeriesFile

    series = spec.series
    series_file = SeriesFile(Path(series.path))
    try:
        out: np.ndarray | None = None
        for k, index in enumerate(wanted):
            for c, channel in enumerate(series.channels):
                plane = series_file.read(index, channel).astype(np.float32)
                # Rescale is per plane: each slice and channel may carry its own.
                slope, intercept = series_file.rescale(index, channel)
                if slope != 1.0:
                    plane *= np.float32(slope)
                if intercept != 0.0:
                    plane += np.float32(intercept)
                if out is None:
                    out = np.empty((len(wanted), len(series.channels), *plane.shape), dtype=np.float32)
                out[k, c] = plane
        assert out is not None
        return out
    finally:
        series_file.close()


def _input_for(
    index: int, stack: np.ndarray, position: Mapping[int, int], kind: str, n: int, nb: int
) -> np.ndarray:
    if kind == "channels":
        return stack[position[index]]
    if kind == "neighbours":
        picks = [position[min(max(index + k, 0), n - 1)] for k in range(-nb, nb + 1)]
        return stack[picks, 0]
    return stack[position[index], 0]


def process_batch(spec: BatchSpec, pixels: Pixels | None = None) -> BatchResult:
    """Run the processor over ``spec.indices`` and collect outputs and per-slice failures.

    Parameters
    ----------
    spec
        The slices, where to read them and the processor with its checked parameters.
    pixels
        Stored values by slice index, each (channels, rows, cols), when the client ships
        them because this worker cannot see the store; ``None`` reads the store file.
    """
    result = BatchResult(series_uid=spec.series.series_uid, indices=spec.indices, worker=_worker_address())
    if _cancel_requested(spec.cancel_mark):
        result.cancelled = True
        return result
    # Timed from here: reading and processing, what grows with the number of slices.
    start, cpu = time.perf_counter(), time.process_time()
    if pixels is None and not Path(spec.series.path).exists():
        # This worker cannot see the store (another machine): the client ships the pixels.
        result.needs_pixels = True
        return result
    proc = registry.get(spec.processor)
    if proc.version != spec.version:
        raise ProcessorError(
            f"worker {result.worker} has {proc.name!r} version {proc.version}, the job needs {spec.version}; "
            "install the same version on every worker"
        )
    started = (start, cpu)
    pairs = list(zip(spec.indices, spec.sop_instance_uids, strict=True))
    # A batch with a time budget may stop early: it reads its slices a few at a time, so the
    # slices it hands back were not read for nothing.
    step = BUDGETED_READ_SLICES if spec.seconds_budget > 0 else max(1, len(pairs))
    for first in range(0, len(pairs), step):
        if first and _over_budget(spec, first, started):
            result.unprocessed = spec.indices[first:]
            break
        if not _run_part(spec, proc, pairs[first : first + step], first, started, pixels, result):
            break
    _timed(result, started)
    return result


def _run_part(
    spec: BatchSpec,
    proc: Any,
    part: list[tuple[int, str]],
    first: int,
    started: tuple[float, float],
    pixels: Pixels | None,
    result: BatchResult,
) -> bool:
    """Read and run ``part``, the batch's (index, uid) pairs from position ``first`` on.

    Returns False when the batch stops here (cancelled, or its time budget is used up).
    """
    n = spec.series.n_slices
    nb = proc.neighbours if proc.input == "neighbours" else 0
    wanted = needed_indices([index for index, _ in part], nb, n)
    stack: np.ndarray | None
    try:
        stack = _read(spec, wanted, pixels)
    except Exception:
        # Reading them together failed: read slice by slice so only the bad ones fail.
        stack = None
    position = {index: k for k, index in enumerate(wanted)}
    for k, (index, uid) in enumerate(part, start=first):
        if _cancel_requested(spec.cancel_mark):
            result.cancelled = True
            return False
        if _over_budget(spec, k, started):
            result.unprocessed = spec.indices[k:]
            return False
        if stack is not None:
            _run_one(spec, proc, index, uid, _input_for(index, stack, position, proc.input, n, nb), result)
            continue
        alone = needed_indices([index], nb, n)
        try:
            one = _read(spec, alone, pixels)
        except Exception:
            result.failures.append((index, "reading the slice failed:\n" + traceback.format_exc()))
            continue
        own = {i: j for j, i in enumerate(alone)}
        _run_one(spec, proc, index, uid, _input_for(index, one, own, proc.input, n, nb), result)
    return True


def _over_budget(spec: BatchSpec, started_slices: int, started: tuple[float, float]) -> bool:
    """True when the batch has run one slice or more and used up its time budget.

    Spent time is the smaller of wall and CPU time, as the client plans: on a machine busy
    with other work the wall clock alone would cut batches short and add tasks.
    """
    if spec.seconds_budget <= 0 or started_slices == 0:
        return False
    spent = min(time.perf_counter() - started[0], time.process_time() - started[1])
    return spent >= spec.seconds_budget


def _timed(result: BatchResult, started: tuple[float, float]) -> None:
    """Record the batch's wall time and its worker process's CPU time since ``started``."""
    result.seconds = time.perf_counter() - started[0]
    result.cpu_seconds = time.process_time() - started[1]


def _run_one(
    spec: BatchSpec, proc: Any, index: int, uid: str, pixels: np.ndarray, result: BatchResult
) -> None:
    context = SliceContext(
        index=index,
        pixel_spacing=spec.series.pixel_spacing,
        series_uid=spec.series.series_uid,
        sop_instance_uid=uid,
    )
    error = ""
    for _attempt in range(1 + max(spec.retries, 0)):
        try:
            output = proc.apply(pixels, spec.params, context)
        except Exception:
            error = traceback.format_exc()
            continue
        result.outputs.append((index, spool_output(spec.spool, output)))
        return
    result.failures.append((index, error))
