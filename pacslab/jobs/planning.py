"""Pure decisions of a job: its identity, and how many slices go in one Dask task."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "MAX_BATCH_BYTES",
    "MIN_BATCH_SECONDS",
    "TARGET_BATCH_SECONDS",
    "job_id_for",
    "needed_indices",
    "plan_batch_size",
]

# A task of about this long keeps Dask's per-task cost (a few ms) to a few percent.
TARGET_BATCH_SECONDS = 0.5
# Each batch takes this share of what is left per worker thread, so batches shrink towards
# the end and the last ones end close together. A larger share would only add batches: each
# costs the scheduler, the client and the worker several milliseconds of CPU, taken from the
# processor on a small machine.
BATCHES_PER_THREAD = 2
# ...but never a batch shorter than this: below it the round trip costs more than the work.
MIN_BATCH_SECONDS = 0.1
# Upper bound on the pixels of one batch in flight.
MAX_BATCH_BYTES = 64 * 2**20


def job_id_for(processor: str, version: str, params: Mapping[str, Any], series_uids: Sequence[str]) -> str:
    """A stable id: the same processor, version, parameters and series give the same job.

    Re-running a job with the same id resumes it from its result files.
    """
    key = json.dumps(
        {"processor": processor, "version": version, "params": dict(params), "series": sorted(series_uids)},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{processor}-{digest}"


def plan_batch_size(
    seconds_per_slice: float | None,
    remaining: int,
    threads: int,
    bytes_per_slice: int,
    *,
    target_seconds: float = TARGET_BATCH_SECONDS,
    batches_per_thread: int = BATCHES_PER_THREAD,
    max_bytes: int = MAX_BATCH_BYTES,
) -> int:
    """Slices per task: long enough to amortise the scheduler, short enough to balance.

    Parameters
    ----------
    seconds_per_slice
        Measured processing time of one slice on a worker; ``None`` before the first
        batch returns: then the batch is a share of what is left (such batches carry a
        time budget, see :data:`TARGET_BATCH_SECONDS`, so a slow processor returns early).
    remaining
        Slices not yet submitted, over all series of the job.
    threads
        Worker threads in the cluster.
    bytes_per_slice
        Input plus output bytes of one slice.

    Returns
    -------
    int
        At least 1.
    """
    if remaining <= 0:
        return 1
    by_balance = math.ceil(remaining / (max(threads, 1) * batches_per_thread))
    by_bytes = max(1, max_bytes // max(bytes_per_slice, 1))
    if seconds_per_slice is None:
        return max(1, min(by_balance, by_bytes, remaining))
    per_slice = max(seconds_per_slice, 1e-6)
    by_time = math.ceil(target_seconds / per_slice)
    floor = min(math.ceil(MIN_BATCH_SECONDS / per_slice), by_bytes)
    return max(1, min(max(min(by_time, by_balance), floor), by_bytes, remaining))


def needed_indices(indices: Iterable[int], neighbours: int, n_slices: int) -> list[int]:
    """Sorted slice indices to read for ``indices`` and ``neighbours`` on each side, clamped."""
    wanted: set[int] = set()
    for index in indices:
        for offset in range(-neighbours, neighbours + 1):
            wanted.add(min(max(index + offset, 0), n_slices - 1))
    return sorted(wanted)
