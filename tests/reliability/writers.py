"""Writer processes for the tests: an ingest and a job's result writer, each reporting acks.

They run in processes forked from a forkserver (cheap to start, nothing inherited from the
test process's threads) and send over a pipe what they have acknowledged: an ingest
acknowledges an upload once ``add_bytes`` returns (its bytes are on disk), and the whole
series once ``finish`` returns; the result writer acknowledges a slice once ``write`` returns.
"""

from __future__ import annotations

import signal
import threading
import time
import zlib
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import numpy as np

from pacslab.ingest import Ingest
from pacslab.store import SliceStore
from pacslab.store.results import ResultWriter

__all__ = [
    "PROVENANCE",
    "checksummed_slice",
    "ingest_uploads",
    "result_pattern",
    "run_and_kill",
    "slice_is_whole",
    "write_checksummed",
    "write_results",
]

SHAPE = (16, 16)
PROVENANCE = {
    "job_id": "killed-writer",
    "processor": "pattern",
    "processor_version": "1",
    "params": {},
    "series_uid": "1.2.3",
}


def ingest_uploads(store_root: str, files: list[str], acks: Connection) -> None:
    """Upload ``files`` in one ingest, acknowledging each upload and then the stored series."""
    store = SliceStore(Path(store_root))
    with Ingest(store) as ingest:
        for index, name in enumerate(files):
            ingest.add_bytes(Path(name).name, Path(name).read_bytes())
            acks.send(("uploaded", index))
    acks.send(("stored", -1))


def result_pattern(index: int) -> np.ndarray:
    """What slice ``index`` of the result holds: any torn or stale write shows as a mismatch."""
    return np.full(SHAPE, float(index), dtype=np.float32) + np.arange(SHAPE[1], dtype=np.float32)


def write_results(path: str, n_slices: int, order: list[int], acks: Connection) -> None:
    """Write slices in ``order`` (resuming the file if it exists), acknowledging each."""
    target = Path(path)
    if target.exists():
        writer = ResultWriter.open_existing(target, PROVENANCE)
    else:
        writer = ResultWriter(target, "image", n_slices, SHAPE, np.float32, PROVENANCE)
    with writer:
        for index in order:
            writer.write(index, result_pattern(index))
            acks.send(("written", index))
    acks.send(("closed", -1))


def checksummed_slice(index: int) -> np.ndarray:
    """Slice ``index``: pseudo-random values whose last one is the CRC-32 of the others."""
    values = np.random.default_rng(index).integers(1, 1 << 30, size=SHAPE[0] * SHAPE[1], dtype=np.int32)
    values[-1] = zlib.crc32(values[:-1].tobytes()) & 0x7FFFFFFF
    return values.reshape(SHAPE)


def slice_is_whole(values: np.ndarray, index: int) -> bool:
    """The slice carries its own checksum and is the one written at ``index``."""
    flat = np.asarray(values, dtype=np.int32).ravel()
    return int(flat[-1]) == zlib.crc32(flat[:-1].tobytes()) & 0x7FFFFFFF and np.array_equal(
        values, checksummed_slice(index)
    )


def write_checksummed(path: str, n_slices: int, batch: int, acks: Connection) -> None:
    """Write ``n_slices`` checksummed slices in batches, as a job's writer does; ack each batch.

    Each ack carries the batch's indices and the monotonic time its ``write_many`` returned
    (the clock is the same in every process of the machine).
    """
    provenance = {**PROVENANCE, "processor": "checksummed"}
    with ResultWriter(Path(path), "image", n_slices, SHAPE, np.int32, provenance) as writer:
        for start in range(0, n_slices, batch):
            indices = list(range(start, min(start + batch, n_slices)))
            writer.write_many([(i, checksummed_slice(i)) for i in indices])
            acks.send((indices, time.monotonic()))


def run_and_kill(
    context: ForkServerContext,
    target: Callable[..., None],
    args: tuple[Any, ...],
    after_acks: int,
    delay_s: float,
) -> tuple[list[tuple[str, int]], bool, list[float]]:
    """Run ``target``; SIGKILL it ``delay_s`` after its ``after_acks``-th ack (0: after start).

    Returns the acks it sent, whether the kill came before it ended, and when each ack came.
    """
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(*args, sending))
    started = time.monotonic()
    process.start()
    sending.close()
    acks: list[tuple[str, int]] = []
    times: list[float] = []
    # The timer is the fault: it fires at a random moment whatever the writer is doing.
    timer = threading.Timer(delay_s, process.kill)
    if after_acks == 0:
        timer.start()
    while True:
        try:
            acks.append(receiving.recv())
        except EOFError:  # the writer ended or died; everything it sent has been read
            break
        times.append(time.monotonic() - started)
        if len(acks) == after_acks:
            timer.start()
    process.join()
    timer.cancel()
    receiving.close()
    return acks, process.exitcode == -signal.SIGKILL, times
