"""Writers that a test kills with SIGKILL: an ingest and a job's result writer, each reporting acks.

They run in processes forked from a forkserver (cheap to start, nothing inherited from the
test process's threads) and send over a pipe what they have acknowledged: an ingest
acknowledges an upload once ``add_bytes`` returns (its bytes are on disk), and the whole
series once ``finish`` returns; the result writer acknowledges a slice once ``write`` returns.
"""

from __future__ import annotations

from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from pacslab.ingest import Ingest
from pacslab.store import SliceStore
from pacslab.store.results import ResultWriter

__all__ = ["PROVENANCE", "ingest_uploads", "result_pattern", "write_results"]

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
