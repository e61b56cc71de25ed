"""Item 8: a viewer reading a job's result file while 2,000 slices are written into it.

A writer process writes checksummed slices in batches (as a job's writer thread does), noting
when each batch was flushed; the test reads the file the way the viewer does
(:class:`~pacslab.store.results.ResultReader`, SWMR) as fast as it can, checks each slice it
shows (the newest done one, and one done earlier) against its checksum, and notes when the
done mask first showed each slice. At the end every slice is read once more.
"""

from __future__ import annotations

import threading
import time
from multiprocessing.context import ForkServerContext
from pathlib import Path

import numpy as np
import pytest

from pacslab.store.results import ResultNotFoundError, ResultReader
from tests.reliability.conftest import Figures
from tests.reliability.writers import slice_is_whole, write_checksummed

ITEM = 8
N_SLICES = 2000
BATCH = 4

pytestmark = pytest.mark.timeout(300)


def test_a_viewer_reads_while_a_job_writes(
    tmp_path: Path, forkserver: ForkServerContext, figures: Figures
) -> None:
    path = tmp_path / "job" / "result.h5"
    path.parent.mkdir()
    receiving, sending = forkserver.Pipe(duplex=False)
    writer = forkserver.Process(target=write_checksummed, args=(str(path), N_SLICES, BATCH, sending))
    acked: dict[int, float] = {}

    def collect() -> None:
        while True:
            try:
                indices, when = receiving.recv()
            except EOFError:
                return
            acked.update(dict.fromkeys(indices, when))

    collector = threading.Thread(target=collect)
    writer.start()
    sending.close()
    collector.start()

    rng = np.random.default_rng(8)
    seen: dict[int, float] = {}
    errors: list[str] = []
    torn = reads = 0
    while len(seen) < N_SLICES:
        finished = not writer.is_alive()
        try:
            reader = ResultReader(path)
            done = reader.done_mask()
        except ResultNotFoundError:  # the writer has not created the file yet
            if finished:
                break
            continue
        except Exception as exc:  # a reader error is what this test counts
            errors.append(f"{type(exc).__name__}: {exc}")
            if finished:
                break
            continue
        now = time.monotonic()
        fresh = [int(i) for i in np.flatnonzero(done) if int(i) not in seen]
        seen.update(dict.fromkeys(fresh, now))
        # As a viewer following the job: show the newest slice, and one finished earlier.
        shown = fresh[-1:] + ([int(rng.choice(list(seen)))] if seen else [])
        for index in shown:
            try:
                values = reader.read(index)
            except Exception as exc:  # counted, as above
                errors.append(f"slice {index}: {type(exc).__name__}: {exc}")
                continue
            reads += 1
            torn += not slice_is_whole(values, index)
        if finished and len(seen) < N_SLICES and done.all():
            break
    writer.join()
    collector.join()

    # Afterwards, every slice once more.
    final = ResultReader(path)
    torn_after = sum(not slice_is_whole(final.read(i), i) for i in range(N_SLICES))
    lags_ms = np.array([(seen[i] - acked[i]) * 1000 for i in seen if i in acked])
    figures("slices written while being read", N_SLICES)
    figures("reader errors", len(errors))
    figures("slices read during the writes", reads)
    figures("torn slices (checksum), during / after", f"{torn} / {torn_after}")
    figures(
        "visibility lag p50 / p99 / max (ms)",
        [round(float(np.percentile(lags_ms, q)), 1) for q in (50, 99, 100)],
    )
    assert writer.exitcode == 0
    assert errors == []
    assert torn == torn_after == 0
    assert len(seen) == N_SLICES
    assert sorted(acked) == list(range(N_SLICES))
